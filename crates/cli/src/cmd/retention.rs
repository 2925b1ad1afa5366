//! `blackbox retention status|run`.

use anyhow::{Context as _, Result};
use blackbox_archive::run::{Committer, RunOptions, Staged};
use blackbox_archive::settings::RetentionConfig;
use blackbox_archive::{Archive, ArchiveError};
use blackbox_ledger::datadir::{DataDir, load_keyring};
use blackbox_ledger::writer::Writer;
use blackbox_store::Store;

use crate::Outcome;
use crate::cli::{RemoteArgs, TextOrJson};
use crate::output::{aligned, n};
use blackbox_ledger::clock::now_ms;

/// Commits retention steps through a writer of its own (the CLI holds the store).
pub(crate) struct Local {
    pub(crate) store: Box<dyn Store>,
    pub(crate) writer: Writer,
}

impl Committer for Local {
    fn store(&mut self) -> &mut dyn Store {
        self.store.as_mut()
    }

    fn commit(&mut self, staged: Staged, now_ms: i64) -> Result<(), ArchiveError> {
        self.writer.stream(self.store.as_mut(), |sink| {
            staged.apply(sink, now_ms)?;
            sink.commit(now_ms, false)
        })?;
        Ok(())
    }
}

fn need_init(dir: &DataDir) -> Result<()> {
    if !dir.is_initialised() {
        anyhow::bail!(
            "no Blackbox store in {}: run `blackbox init` first (or pass --data-dir)",
            dir.root().display()
        );
    }
    Ok(())
}

pub fn status(dir: &DataDir, format: TextOrJson) -> Result<Outcome> {
    need_init(dir)?;
    let config = RetentionConfig::load(&dir.config_path())?;
    let store = blackbox_ledger::open::open_reader(dir)?;
    let list = blackbox_archive::status::status(&store, &config, now_ms())?;
    let all_met = list.iter().all(|t| t.requirements.iter().all(|r| r.met));
    match format {
        TextOrJson::Json => println!(
            "{}",
            serde_json::json!({
                "archive": config.archive_url,
                "tenants": list,
                "all_requirements_met": all_met,
            })
        ),
        TextOrJson::Text => {
            if list.is_empty() {
                println!("No chains yet.");
            }
            for t in &list {
                println!("tenant {}", t.tenant_id);
                let keep = if t.policy_archive_days == 0 {
                    "forever".to_owned()
                } else {
                    format!("{} days", n(t.policy_archive_days))
                };
                let hot = match (&t.oldest_hot_seq, &t.oldest_hot) {
                    (Some(s), Some(ts)) => format!("entry {} at {ts}", n(*s)),
                    _ => "none (every entry is archived)".to_owned(),
                };
                let archived = match (&t.oldest_archived_seq, &t.oldest_archived) {
                    (Some(s), Some(ts)) => format!("entry {} at {ts}", n(*s)),
                    _ => "none".to_owned(),
                };
                let mut rows = vec![
                    (
                        "policy",
                        format!(
                            "{} days hot, then {keep} in the archive",
                            n(t.policy_hot_days)
                        ),
                    ),
                    ("entries", n(t.chain_size)),
                    ("hot", format!("{} entries; oldest {hot}", n(t.hot_entries))),
                    (
                        "archived",
                        format!(
                            "{} entries in {} segments; oldest {archived}",
                            n(t.archived_entries),
                            n(t.archive_segments)
                        ),
                    ),
                    (
                        "deleted",
                        format!("{} entries past retention", n(t.deleted_entries)),
                    ),
                ];
                for r in &t.requirements {
                    let mut verdict = if r.met {
                        format!(
                            "met ({} days kept, {} queryable)",
                            n(r.keep_days),
                            n(r.hot_days)
                        )
                    } else {
                        format!("NOT MET: {}", r.problems.join("; "))
                    };
                    if !r.set_by_standard {
                        verdict.push_str(" — organisation-defined: the standard sets no period, the preset is Blackbox's default");
                    }
                    rows.push((r.standard.as_str(), verdict));
                }
                print!("{}", aligned(&rows));
            }
        }
    }
    Ok(if all_met {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

pub fn run(
    dir: &DataDir,
    tenant: Option<&str>,
    dry_run: bool,
    now: Option<&str>,
    format: TextOrJson,
) -> Result<Outcome> {
    need_init(dir)?;
    let now_ms = match now {
        Some(t) => blackbox_core::entry::parse_time_bound(t, false)
            .map_err(|e| anyhow::anyhow!("--now {t:?}: {e}"))?,
        None => now_ms(),
    };
    if now.is_some() && !dry_run {
        anyhow::bail!(
            "--now is only for --dry-run: a real run records its steps at the clock's time"
        );
    }
    let (store, writer, _) = blackbox_ledger::open::open_writer(dir)?;
    let config = RetentionConfig::load(&dir.config_path())?;
    let archive = Archive::open(&config.archive_url, dir.root())?;
    let keys = load_keyring(&dir.hmac_keys_path())?;
    let verifier = blackbox_ledger::open::public_key(dir)?;
    if let Some(t) = tenant
        && !store.chains()?.iter().any(|c| c.tenant_id == t)
    {
        anyhow::bail!("the store has no chain for tenant `{t}`");
    }
    let mut local = Local {
        store: Box::new(store),
        writer,
    };
    let report = blackbox_archive::run::run(
        &archive,
        &config,
        &mut local,
        &RunOptions {
            now_ms,
            tenant,
            dry_run,
            keys: Some(&keys),
            verifier: &verifier,
        },
    )
    .context("retention run stopped (what it finished is committed; run it again to go on)")?;
    match format {
        TextOrJson::Json => println!(
            "{}",
            serde_json::json!({ "archive": archive.url(), "report": report })
        ),
        TextOrJson::Text => {
            print_report(&serde_json::to_value(&report)?, dry_run);
            println!("archive: {}", archive.url());
        }
    }
    Ok(Outcome::Ok)
}

/// `retention run --server URL --token T`: the service runs retention now (`POST
/// /v1/retention/run`, admin), as its schedule does, and answers what it did.
pub fn run_remote(r: &RemoteArgs, format: TextOrJson) -> Result<Outcome> {
    let server = r
        .server
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--server is required"))?;
    let token = r.token.clone().ok_or_else(|| {
        anyhow::anyhow!("--server needs --token T (or BLACKBOX_TOKEN): a token with admin scope")
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client")?;
    let c = blackbox_client::Client::new(server, token)
        .map_err(|e| anyhow::anyhow!("--server {server}: {e}"))?;
    let answer = rt.block_on(c.run_retention())?;
    match format {
        TextOrJson::Json => println!("{answer}"),
        TextOrJson::Text => {
            print_report(&answer["report"], false);
            println!("run by the service at {server}");
        }
    }
    Ok(Outcome::Ok)
}

/// A run's report (`RunReport` as JSON, local or from the service) as text; the archive's
/// address is printed by the caller.
fn print_report(report: &serde_json::Value, dry_run: bool) {
    let list = |k: &str| report[k].as_array().cloned().unwrap_or_default();
    let u = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let t = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("?").to_owned();
    let (archived, deleted) = (list("archived"), list("deleted"));
    let verb = if dry_run { "would archive" } else { "archived" };
    for s in &archived {
        println!(
            "{verb} tenant {} entries {}..{} -> {}{}",
            t(s, "tenant_id"),
            n(u(s, "first_seq")),
            n(u(s, "last_seq")),
            t(s, "object"),
            if dry_run {
                String::new()
            } else {
                format!(" ({} bytes, read back and verified)", n(u(s, "bytes")))
            }
        );
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    for s in &deleted {
        println!(
            "{verb} tenant {} entries {}..{} ({}): past the archive retention",
            t(s, "tenant_id"),
            n(u(s, "first_seq")),
            n(u(s, "last_seq")),
            t(s, "object")
        );
    }
    if archived.is_empty() && deleted.is_empty() {
        println!("Nothing to archive or delete: every entry is within its retention policy.");
    }
    if u(report, "reclaimed_bytes") > 0 {
        println!(
            "freed {} bytes of entry lines in the store",
            n(u(report, "reclaimed_bytes"))
        );
    }
}
