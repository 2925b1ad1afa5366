//! One function per command.

use anyhow::{Context as _, Result};
use blackbox_ledger::datadir::DataDir;

use crate::Outcome;
use crate::cli::{AgentsCmd, AlertsCmd, RetentionCmd, RulesCmd, TokensCmd, WebhooksCmd};
use crate::cli::{Cli, Cmd, ForwardSecureArgs, KeysCmd, TextOrJson};
use crate::output::{aligned, n};
use blackbox_core::keys::FssParams;

mod agents;
mod alerts;
mod append;
mod erase;
mod export;
mod mcp;
mod migrate;
mod proofs;
mod query;
mod remote;
mod retention;
mod rules;
mod serve;
mod tokens;
mod verify;
mod webhooks;
mod witness;

pub fn run(cli: Cli) -> Result<Outcome> {
    match cli.cmd {
        Cmd::Init {
            dir,
            log_name,
            fss,
            format,
        } => init(&DataDir::new(dir.data_dir), log_name, &fss, format),
        Cmd::Serve(args) => serve::run(args),
        Cmd::Mcp { cmd } => mcp::run(cmd),
        Cmd::Witness { cmd } => witness::run(cmd),
        Cmd::Export(args) => export::run(args),
        Cmd::Migrate { from, to, format } => migrate::run(&from, &to, format),
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
            witness,
            ..
        } if remote.server.is_some() => {
            if !witness.witness_key.is_empty() {
                anyhow::bail!(
                    "--witness-key is checked here, on the log itself: verify a data directory or --log-file (a service applies its own [witnessing] policy in /v1/verify)"
                );
            }
            remote::verify(&remote, tenant_id.as_deref(), all, format)
        }
        Cmd::Verify {
            data_dir,
            log_file,
            key_file,
            public_key,
            checkpoint,
            tenant_id,
            all,
            include_archive,
            witness,
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
            witness,
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
            trace_id,
            start,
            end,
            time,
            origin,
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
                trace_id,
                start,
                end,
                limit,
                origin,
                time,
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
            remote::checkpoint(&remote, tenant_id.as_deref(), sign_now, format)
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
            agent_id,
            session_id,
            trace_id,
            start,
            end,
            limit,
            remote,
            dir,
            tenant_id,
            output,
            format,
            ..
        } if agent_id.is_some() || session_id.is_some() || trace_id.is_some() => {
            if format != crate::cli::ProofFormat::Json {
                anyhow::bail!(
                    "--format tlog-proof proves one entry (--entry-id); a slice is written as blackbox.log_slice.v1 JSON"
                );
            }
            if !(1..=10_000).contains(&limit) {
                anyhow::bail!("--limit must be between 1 and 10,000");
            }
            let selection = blackbox_core::proof::SliceSelection::resolved(
                agent_id,
                session_id,
                trace_id,
                start.as_deref(),
                end.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!("--{}", e))?;
            if remote.server.is_some() {
                remote::prove_slice(
                    &remote,
                    tenant_id.as_deref(),
                    &selection,
                    limit,
                    output.as_deref(),
                )
            } else {
                proofs::prove_slice(
                    &DataDir::new(dir.data_dir),
                    tenant_id.as_deref(),
                    &selection,
                    limit,
                    output.as_deref(),
                )
            }
        }
        Cmd::Prove {
            remote,
            tenant_id,
            entry_id,
            consistency,
            output,
            format,
            ..
        } if remote.server.is_some() => remote::prove(
            &remote,
            tenant_id.as_deref(),
            entry_id.as_deref(),
            consistency.as_deref(),
            output.as_deref(),
            format,
        ),
        Cmd::Prove {
            dir,
            entry_id,
            consistency,
            no_entry,
            output,
            format,
            ..
        } => proofs::prove(
            &DataDir::new(dir.data_dir),
            entry_id.as_deref(),
            consistency.as_deref(),
            !no_entry,
            output.as_deref(),
            format,
        ),
        Cmd::VerifyProof {
            public_key,
            proof,
            witness,
            format,
        } => proofs::verify_proof(&public_key, &proof, &witness, format),
        Cmd::ExportLog {
            dir,
            tenant_id,
            output,
        } => proofs::export_log(&DataDir::new(dir.data_dir), tenant_id.as_deref(), &output),
        Cmd::Keys {
            cmd: KeysCmd::Rotate { dir, fss },
        } => rotate(&DataDir::new(dir.data_dir), &fss),
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
                (tenant_id.as_deref(), reason.as_deref(), None),
                format,
            ),
            AgentsCmd::Resume {
                remote,
                agent_id,
                tenant_id,
                reason,
                alert_id,
                format,
            } => agents::set_paused(
                &remote,
                &agent_id,
                false,
                (tenant_id.as_deref(), reason.as_deref(), alert_id.as_deref()),
                format,
            ),
        },
        Cmd::Alerts { cmd } => match cmd {
            AlertsCmd::List {
                data_dir,
                remote,
                tenant_id,
                state,
                rule,
                agent_id,
                since,
                until,
                limit,
                cursor,
                format,
            } => alerts::list(&alerts::ListArgs {
                data_dir,
                remote,
                tenant_id,
                state,
                rule,
                agent_id,
                since,
                until,
                limit,
                cursor,
                format,
            }),
            AlertsCmd::Ack {
                alert_id,
                ticket,
                note,
                data_dir,
                remote,
                format,
            } => alerts::triage(&alerts::TriageArgs {
                alert_id,
                resolution: None,
                ticket,
                note,
                data_dir,
                remote,
                format,
            }),
            AlertsCmd::Resolve {
                alert_id,
                resolution,
                ticket,
                note,
                data_dir,
                remote,
                format,
            } => alerts::triage(&alerts::TriageArgs {
                alert_id,
                resolution: Some(resolution),
                ticket,
                note,
                data_dir,
                remote,
                format,
            }),
        },
        Cmd::Rules { cmd } => match cmd {
            RulesCmd::Check { file, format } => rules::check(&file, format),
            RulesCmd::Test {
                file,
                log_file,
                data_dir,
                text,
                corpus,
                obfuscate,
                require_refused,
                max_benign_refused,
                examples,
                format,
            } => {
                if let Some(corpus) = corpus {
                    let targets = rules::Targets {
                        require_refused,
                        max_benign_refused,
                    };
                    rules::corpus(&file, &corpus, obfuscate, targets, examples, format)
                } else if let Some(text) = text {
                    rules::text(&file, &text, format)
                } else {
                    rules::test(&file, &log_file, data_dir.as_deref(), examples, format)
                }
            }
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
            RetentionCmd::Run { remote, format, .. } if remote.server.is_some() => {
                retention::run_remote(&remote, format)
            }
            RetentionCmd::Run {
                dir,
                tenant_id,
                dry_run,
                now,
                format,
                remote: _,
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

/// The forward-secure parameters asked for, starting now.
fn fss_params(a: &ForwardSecureArgs) -> Result<Option<FssParams>> {
    if !a.forward_secure {
        return Ok(None);
    }
    let secs = parse_epoch(&a.epoch)?;
    let now = blackbox_ledger::clock::now_ms();
    Ok(Some(
        FssParams::starting_at(secs, now).with_context(|| format!("--epoch {}", a.epoch))?,
    ))
}

/// `90s`, `30m`, `1h`, `1d`, `1w` (Blackbox's one duration grammar) as seconds.
fn parse_epoch(text: &str) -> Result<u64> {
    let d = blackbox_core::duration::parse(text).with_context(|| format!("--epoch {text}"))?;
    Ok(d.as_secs())
}

/// Tells the operator where the auditor's initial key is and what to do with it (never the
/// key itself).
fn initial_file_notice(generation: &str, path: &std::path::Path, fss: &FssParams) {
    eprintln!(
        "Forward-secure HMAC generation {generation}: epochs of {} s; its key evolves every epoch and the previous one is erased from the keyring.",
        fss.epoch_secs()
    );
    eprintln!(
        "IMPORTANT: {} holds its initial key. Move it offline to your auditor and delete it from this server: anyone who can read it can forge entries of every epoch. The auditor verifies with `blackbox verify --key-file {}`.",
        path.display(),
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    );
}

fn init(
    dir: &DataDir,
    log_name: Option<String>,
    fss: &ForwardSecureArgs,
    format: TextOrJson,
) -> Result<Outcome> {
    let name = match log_name {
        Some(n) => n,
        None => blackbox_ledger::open::default_log_name()?,
    };
    let params = fss_params(fss)?;
    let out = blackbox_ledger::open::init_with(dir, &name, params)?;
    let vkey = out.verifier.to_vkey();
    let fp = out.verifier.fingerprint();
    let hmac_desc = match &params {
        Some(p) => format!(
            "{} in {} (mode 0600, secret; forward-secure, epochs of {} s)",
            out.hmac_key_id,
            dir.hmac_keys_path().display(),
            p.epoch_secs()
        ),
        None => format!(
            "{} in {} (mode 0600, secret)",
            out.hmac_key_id,
            dir.hmac_keys_path().display()
        ),
    };
    match format {
        TextOrJson::Json => println!(
            "{}",
            serde_json::json!({
                "data_dir": dir.root(), "log_name": out.log_name, "hmac_key_id": out.hmac_key_id,
                "public_key": vkey, "public_key_fingerprint": fp,
                "public_key_file": dir.public_key_path(),
                "forward_secure": params.map(|p| serde_json::json!({
                    "epoch_seconds": p.epoch_secs(), "origin": p.origin(),
                    "initial_key_file": out.fss_initial_file,
                })),
            })
        ),
        TextOrJson::Text => {
            println!("Initialised a Blackbox store in {}", dir.root().display());
            print!(
                "{}",
                aligned(&[
                    ("log name", out.log_name.clone()),
                    ("HMAC key", hmac_desc),
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
    if let (Some(p), Some(path)) = (&params, &out.fss_initial_file) {
        initial_file_notice(&out.hmac_key_id, path, p);
    }
    Ok(Outcome::Ok)
}

fn rotate(dir: &DataDir, fss: &ForwardSecureArgs) -> Result<Outcome> {
    if !dir.is_initialised() {
        anyhow::bail!(
            "no Blackbox store in {}: run `blackbox init` first",
            dir.root().display()
        );
    }
    let params = fss_params(fss)?;
    let new =
        blackbox_ledger::datadir::rotate_hmac_key(dir, params).context("rotating the HMAC key")?;
    println!(
        "New HMAC key generation {} is now current{}; entries signed with older keys still verify. A running service keeps signing with the previous generation until it restarts.",
        new.id,
        if params.is_some() {
            " (forward-secure)"
        } else {
            ""
        }
    );
    if let (Some(p), Some(path)) = (&params, &new.initial_file) {
        initial_file_notice(&new.id, path, p);
    }
    Ok(Outcome::Ok)
}

fn show_keys(dir: &DataDir) -> Result<Outcome> {
    let ring = blackbox_ledger::datadir::load_keyring(&dir.hmac_keys_path())?;
    let v = blackbox_ledger::open::public_key(dir)?;
    let ids: Vec<String> = ring
        .ids()
        .iter()
        .map(|id| match ring.forward_secure(id.as_str()) {
            Some(info) => format!(
                "{id} (forward-secure, epochs of {} s, holds epoch {})",
                info.params.epoch_secs(),
                info.epoch
            ),
            None => id.to_string(),
        })
        .collect();
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
