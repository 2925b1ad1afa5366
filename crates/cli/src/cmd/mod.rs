//! One function per command.

use anyhow::{Context as _, Result};
use blackbox_ledger::datadir::DataDir;

use crate::Outcome;
use crate::cli::{AgentsCmd, RetentionCmd, RulesCmd, TokensCmd, WebhooksCmd};
use crate::cli::{Cli, Cmd, KeysCmd, TextOrJson};
use crate::output::{aligned, n};

mod agents;
mod append;
mod erase;
mod export;
mod proofs;
mod query;
mod remote;
mod retention;
mod rules;
mod serve;
mod tokens;
mod verify;
mod webhooks;

pub fn run(cli: Cli) -> Result<Outcome> {
    match cli.cmd {
        Cmd::Init {
            dir,
            log_name,
            format,
        } => init(&DataDir::new(dir.data_dir), log_name, format),
        Cmd::Serve(args) => serve::run(args),
        Cmd::Export(args) => export::run(args),
        Cmd::Tokens { cmd } => match cmd {
            TokensCmd::Create {
                dir,
                tenant,
                scope,
                label,
                format,
            } => tokens::create(
                &DataDir::new(dir.data_dir),
                tenant.as_deref(),
                &scope,
                &label,
                format,
            ),
            TokensCmd::List { dir, format } => tokens::list(&DataDir::new(dir.data_dir), format),
            TokensCmd::Revoke { dir, id } => tokens::revoke(&DataDir::new(dir.data_dir), &id),
        },
        Cmd::Append {
            dir,
            file,
            tenant_id,
            batch_size,
            format,
        } => append::run(
            &DataDir::new(dir.data_dir),
            file.as_deref(),
            tenant_id.as_deref(),
            batch_size,
            format,
        ),
        Cmd::Verify {
            tenant_id,
            all,
            format,
            remote,
            ..
        } if remote.server.is_some() => remote::verify(&remote, tenant_id.as_deref(), all, format),
        Cmd::Verify {
            data_dir,
            log_file,
            key_file,
            public_key,
            checkpoint,
            tenant_id,
            all,
            include_archive,
            format,
            remote: _,
        } => verify::run(&verify::Args {
            data_dir,
            log_file,
            key_file,
            public_key,
            checkpoints: checkpoint,
            tenant_id,
            all,
            include_archive,
            format,
        }),
        Cmd::Erase {
            data_subject,
            reason,
            ticket,
            data_dir,
            log_file,
            dry_run,
            format,
            remote,
        } => erase::run(&erase::Args {
            subject: data_subject,
            reason,
            ticket,
            data_dir,
            log_files: log_file,
            dry_run,
            format,
            remote,
        }),
        Cmd::Query {
            dir,
            remote,
            agent_id,
            session_id,
            tenant_id,
            tool,
            event_type,
            start,
            end,
            limit,
            include_archive,
            format,
        } => {
            if include_archive && remote.server.is_some() {
                anyhow::bail!(
                    "--include-archive reads the archive from the data directory; it cannot be combined with --server"
                );
            }
            let filters = query::Filters {
                agent_id,
                session_id,
                tenant_id,
                tool,
                event_type,
                start,
                end,
                limit,
            };
            if remote.server.is_some() {
                remote::query(&remote, &filters, format)
            } else {
                query::run(
                    &DataDir::new(dir.data_dir),
                    filters,
                    include_archive,
                    format,
                )
            }
        }
        Cmd::Checkpoint {
            remote,
            tenant_id,
            sign_now,
            format,
            ..
        } if remote.server.is_some() => {
            if sign_now {
                anyhow::bail!(
                    "--sign-now needs the data directory (the service signs on its own schedule)"
                );
            }
            remote::checkpoint(&remote, tenant_id.as_deref(), format)
        }
        Cmd::Checkpoint {
            dir,
            tenant_id,
            sign_now,
            format,
            remote: _,
        } => proofs::checkpoint(
            &DataDir::new(dir.data_dir),
            tenant_id.as_deref(),
            sign_now,
            format,
        ),
        Cmd::Prove {
            remote,
            tenant_id,
            entry_id,
            consistency,
            output,
            ..
        } if remote.server.is_some() => remote::prove(
            &remote,
            tenant_id.as_deref(),
            entry_id.as_deref(),
            consistency.as_deref(),
            output.as_deref(),
        ),
        Cmd::Prove {
            dir,
            entry_id,
            consistency,
            no_entry,
            output,
            ..
        } => proofs::prove(
            &DataDir::new(dir.data_dir),
            entry_id.as_deref(),
            consistency.as_deref(),
            !no_entry,
            output.as_deref(),
        ),
        Cmd::VerifyProof {
            public_key,
            proof,
            format,
        } => proofs::verify_proof(&public_key, &proof, format),
        Cmd::ExportLog {
            dir,
            tenant_id,
            output,
        } => proofs::export_log(&DataDir::new(dir.data_dir), tenant_id.as_deref(), &output),
        Cmd::Keys {
            cmd: KeysCmd::Rotate { dir },
        } => rotate(&DataDir::new(dir.data_dir)),
        Cmd::Keys {
            cmd: KeysCmd::Show { dir },
        } => show_keys(&DataDir::new(dir.data_dir)),
        Cmd::Agents { cmd } => match cmd {
            AgentsCmd::List {
                remote,
                tenant_id,
                format,
            } => agents::list(&remote, tenant_id.as_deref(), format),
            AgentsCmd::Pause {
                remote,
                agent_id,
                tenant_id,
                reason,
                format,
            } => agents::set_paused(
                &remote,
                &agent_id,
                true,
                tenant_id.as_deref(),
                reason.as_deref(),
                format,
            ),
            AgentsCmd::Resume {
                remote,
                agent_id,
                tenant_id,
                reason,
                format,
            } => agents::set_paused(
                &remote,
                &agent_id,
                false,
                tenant_id.as_deref(),
                reason.as_deref(),
                format,
            ),
        },
        Cmd::Rules { cmd } => match cmd {
            RulesCmd::Check { file, format } => rules::check(&file, format),
            RulesCmd::Test {
                file,
                log_file,
                data_dir,
                examples,
                format,
            } => rules::test(&file, &log_file, data_dir.as_deref(), examples, format),
        },
        Cmd::Webhooks { cmd } => match cmd {
            WebhooksCmd::List {
                dir,
                status,
                limit,
                format,
            } => webhooks::list(
                &DataDir::new(dir.data_dir),
                status.as_deref(),
                limit,
                format,
            ),
            WebhooksCmd::Retry {
                dir,
                id,
                dead,
                format,
            } => webhooks::retry(&DataDir::new(dir.data_dir), id, dead, format),
        },
        Cmd::Retention { cmd } => match cmd {
            RetentionCmd::Status { dir, format } => {
                retention::status(&DataDir::new(dir.data_dir), format)
            }
            RetentionCmd::Run {
                dir,
                tenant_id,
                dry_run,
                now,
                format,
            } => retention::run(
                &DataDir::new(dir.data_dir),
                tenant_id.as_deref(),
                dry_run,
                now.as_deref(),
                format,
            ),
        },
    }
}

fn init(dir: &DataDir, log_name: Option<String>, format: TextOrJson) -> Result<Outcome> {
    let name = match log_name {
        Some(n) => n,
        None => blackbox_ledger::open::default_log_name()?,
    };
    let out = blackbox_ledger::open::init(dir, &name)?;
    let vkey = out.verifier.to_vkey();
    let fp = out.verifier.fingerprint();
    match format {
        TextOrJson::Json => println!(
            "{}",
            serde_json::json!({
                "data_dir": dir.root(), "log_name": out.log_name, "hmac_key_id": "k1",
                "public_key": vkey, "public_key_fingerprint": fp,
                "public_key_file": dir.public_key_path(),
            })
        ),
        TextOrJson::Text => {
            println!("Initialised a Blackbox store in {}", dir.root().display());
            print!(
                "{}",
                aligned(&[
                    ("log name", out.log_name.clone()),
                    (
                        "HMAC key",
                        format!(
                            "k1 in {} (mode 0600, secret)",
                            dir.hmac_keys_path().display()
                        )
                    ),
                    (
                        "signing key",
                        format!("{} (mode 0600, secret)", dir.signing_key_path().display())
                    ),
                    ("public key", vkey),
                    ("fingerprint", fp),
                    (
                        "public key file",
                        dir.public_key_path().display().to_string()
                    ),
                ])
            );
            println!(
                "Give the public key file to your auditors: `blackbox verify --public-key` needs nothing else."
            );
        }
    }
    Ok(Outcome::Ok)
}

fn rotate(dir: &DataDir) -> Result<Outcome> {
    if !dir.is_initialised() {
        anyhow::bail!(
            "no Blackbox store in {}: run `blackbox init` first",
            dir.root().display()
        );
    }
    let id = blackbox_ledger::datadir::rotate_hmac_key(dir).context("rotating the HMAC key")?;
    println!(
        "New HMAC key generation {id} is now current; entries signed with older keys still verify."
    );
    Ok(Outcome::Ok)
}

fn show_keys(dir: &DataDir) -> Result<Outcome> {
    let ring = blackbox_ledger::datadir::load_keyring(&dir.hmac_keys_path())?;
    let v = blackbox_ledger::open::public_key(dir)?;
    let ids: Vec<String> = ring.ids().iter().map(ToString::to_string).collect();
    let current = ring
        .current()
        .map(|(id, _)| id.to_string())
        .unwrap_or_default();
    print!(
        "{}",
        aligned(&[
            ("HMAC key ids", ids.join(", ")),
            ("current", current),
            ("key generations", n(ids.len() as u64)),
            ("public key", v.to_vkey()),
            ("fingerprint", v.fingerprint()),
        ])
    );
    Ok(Outcome::Ok)
}
