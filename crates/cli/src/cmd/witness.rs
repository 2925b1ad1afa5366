//! `blackbox witness`: make a witness key, run a witness, show what it cosigned.

use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use blackbox_witness::serve::{WitnessService, router};
use blackbox_witness::state::WitnessState;

use crate::Outcome;
use crate::cli::{TextOrJson, WitnessCmd};
use crate::output::n;

pub fn run(cmd: WitnessCmd) -> Result<Outcome> {
    match cmd {
        WitnessCmd::Keygen { name, key_file } => {
            let key = blackbox_witness::keys::generate(&name, &key_file)?;
            let public = blackbox_witness::keys::public_path(&key_file);
            eprintln!(
                "witness key written to {} (secret, mode 0600); public key to {}",
                key_file.display(),
                public.display()
            );
            println!("{}", key.to_vkey());
            Ok(Outcome::Ok)
        }
        WitnessCmd::Serve {
            key_file,
            log_key,
            state_dir,
            listen,
        } => {
            let cosigner = blackbox_witness::keys::load_cosigner(&key_file)?;
            let mut logs = Vec::new();
            for k in &log_key {
                logs.push(blackbox_witness::keys::load_log_key(k)?);
            }
            super::serve::init_logging(blackbox_server::config::LogFormat::Text);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("blackbox-witness")
                .build()
                .map_err(|e| anyhow!("cannot start the runtime: {e}"))?;
            rt.block_on(async move {
                let state = WitnessState::open(&state_dir)?;
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| {
                        format!("cannot listen on {listen}; choose another address with --listen")
                    })?;
                let addr = listener.local_addr()?;
                let names: Vec<String> = logs.iter().map(|l| l.name().to_owned()).collect();
                tracing::info!(
                    address = %addr,
                    witness = cosigner.key().name(),
                    public_key = %cosigner.key().to_vkey(),
                    logs = ?names,
                    state = %state.path().display(),
                    "witness listening"
                );
                let svc = Arc::new(WitnessService::new(cosigner, logs, state));
                // The service's listener: a client that never finishes its headers is dropped
                // after 10 s (a witness faces the network).
                blackbox_server::serve_http(
                    listener,
                    router(svc),
                    std::time::Duration::from_secs(10),
                    shutdown(),
                )
                .await;
                Ok::<_, anyhow::Error>(())
            })?;
            Ok(Outcome::Ok)
        }
        WitnessCmd::Status { state_dir, format } => {
            if !state_dir.join("witness.db").exists() {
                anyhow::bail!(
                    "no witness state in {}: give the --state-dir of a `blackbox witness serve`",
                    state_dir.display()
                );
            }
            let records = WitnessState::records(&state_dir)?;
            match format {
                TextOrJson::Json => {
                    let rows: Vec<serde_json::Value> = records
                        .iter()
                        .map(|r| {
                            serde_json::json!({
                                "origin": r.origin,
                                "size": r.size,
                                "root_hash": r.root.to_base64(),
                                "updated_ms": r.updated_ms,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::json!({ "logs": rows }));
                }
                TextOrJson::Text => {
                    if records.is_empty() {
                        println!("no checkpoint cosigned yet");
                    }
                    for r in &records {
                        println!(
                            "{}  size {}  root {}",
                            r.origin,
                            n(r.size),
                            r.root.to_base64()
                        );
                    }
                }
            }
            Ok(Outcome::Ok)
        }
    }
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
