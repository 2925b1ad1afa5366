//! `blackbox verify`: the verdict in the seed's words.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use blackbox_core::keys::Keyring;
use blackbox_core::verify::Report;
use blackbox_ledger::datadir::{DEFAULT_DATA_DIR, DataDir, load_keyring, load_verifier};
use blackbox_ledger::report::{headline, report_json};
use blackbox_ledger::verify::{StoreVerifyOptions, prescan_log, verify_log_files_with};

use crate::Outcome;
use crate::cli::{TextOrJson, WitnessPolicyArgs};
use crate::output::{n, progress};

pub struct Args {
    pub data_dir: Option<PathBuf>,
    /// JSONL files verified in this order as one log (empty: verify the store).
    pub log_file: Vec<PathBuf>,
    /// Keyring files, merged (empty: the data directory's own keyring).
    pub key_file: Vec<PathBuf>,
    pub public_key: Option<PathBuf>,
    pub checkpoints: Vec<PathBuf>,
    pub tenant_id: Option<String>,
    pub all: bool,
    pub include_archive: bool,
    pub witness: WitnessPolicyArgs,
    pub format: TextOrJson,
}

/// The witness policy of `--witness-key` / `--witness-quorum` (`None` without keys).
pub(crate) fn witness_policy(
    a: &WitnessPolicyArgs,
) -> Result<Option<blackbox_core::cosignature::WitnessPolicy>> {
    if a.witness_key.is_empty() {
        return Ok(None);
    }
    let mut keys = Vec::new();
    for k in &a.witness_key {
        keys.push(blackbox_witness::keys::load_witness_key(k).context("loading --witness-key")?);
    }
    let quorum = a.witness_quorum.unwrap_or(keys.len());
    let policy = blackbox_core::cosignature::WitnessPolicy::new(keys, quorum)
        .context("--witness-key / --witness-quorum")?;
    Ok(Some(policy))
}

/// The keyrings of `paths` merged into one (`None` when there is none).
pub(crate) fn load_keyrings(paths: &[PathBuf]) -> Result<Option<Keyring>> {
    let mut merged: Option<Keyring> = None;
    for p in paths {
        let ring = load_keyring(p)?;
        match &mut merged {
            None => merged = Some(ring),
            Some(m) => m
                .merge(&ring)
                .with_context(|| format!("combining --key-file {}", p.display()))?,
        }
    }
    Ok(merged)
}

pub fn run(a: &Args) -> Result<Outcome> {
    let policy = witness_policy(&a.witness)?;
    if policy.is_some() && a.public_key.is_none() && !a.log_file.is_empty() {
        bail!(
            "a witness policy checks cosignatures on signed checkpoints: give --public-key (checkpoint.pub) too"
        );
    }
    let mut trusted = Vec::new();
    for p in &a.checkpoints {
        trusted.push(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read --checkpoint {}", p.display()))?,
        );
    }
    let verifier_from = |p: &PathBuf| load_verifier(p).with_context(|| "loading --public-key");
    let report = if !a.log_file.is_empty() {
        if a.key_file.is_empty() && a.public_key.is_none() {
            bail!(
                "verifying a log file needs --key-file (the HMAC keyring) or --public-key (checkpoint.pub), or both"
            );
        }
        if a.tenant_id.is_some() {
            bail!("--tenant-id applies to a store; a log file is verified whole");
        }
        let keys = load_keyrings(&a.key_file)?;
        let verifier = a.public_key.as_ref().map(verifier_from).transpose()?;
        // Counting entries for the progress bar costs a read of the files: only on a terminal.
        let mut total = 0;
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            for log in &a.log_file {
                total += prescan_log(log)?.0;
            }
        }
        let pb = progress(total, "verifying");
        let r = verify_log_files_with(
            &a.log_file,
            keys.as_ref(),
            verifier,
            &trusted,
            policy,
            &|done| pb.set_position(done),
        )?;
        pb.finish_and_clear();
        r
    } else {
        let dir = DataDir::new(a.data_dir.clone().unwrap_or_else(|| {
            std::env::var_os("BLACKBOX_DATA_DIR")
                .map_or_else(|| DEFAULT_DATA_DIR.into(), PathBuf::from)
        }));
        let store = blackbox_ledger::open::open_reader(&dir)?;
        let total: u64 = blackbox_store::Store::chains(&store)?
            .iter()
            .filter(|c| a.tenant_id.as_ref().is_none_or(|t| *t == c.tenant_id))
            .map(|c| c.size)
            .sum();
        let archive = if a.include_archive {
            let config = blackbox_archive::settings::RetentionConfig::load(&dir.config_path())?;
            Some(blackbox_archive::Archive::open(
                &config.archive_url,
                dir.root(),
            )?)
        } else {
            None
        };
        let reader = archive
            .as_ref()
            .map(|ar| blackbox_archive::run::ArchiveReader::new(ar, &store))
            .transpose()?;
        drop(store);
        // With only --public-key, check what the public key can check (no HMACs).
        let keys = if a.public_key.is_some() && a.key_file.is_empty() {
            None
        } else if a.key_file.is_empty() {
            let path = dir.hmac_keys_path();
            if !path.exists() {
                bail!(
                    "no HMAC keyring at {}: pass --key-file KEYRING to check HMACs, or --public-key checkpoint.pub to check what the public key can (links, Merkle roots, signed checkpoints)",
                    path.display()
                );
            }
            Some(load_keyring(&path)?)
        } else {
            load_keyrings(&a.key_file)?
        };
        let verifier = match &a.public_key {
            Some(p) => verifier_from(p)?,
            None => blackbox_ledger::open::public_key(&dir)?,
        };
        if let Some(t) = &a.tenant_id {
            let store = blackbox_ledger::open::open_reader(&dir)?;
            if !blackbox_store::Store::chains(&store)?
                .iter()
                .any(|c| &c.tenant_id == t)
            {
                bail!("the store has no chain for tenant `{t}`");
            }
        }
        let pb = progress(total, "verifying");
        let opts = StoreVerifyOptions {
            tenant: a.tenant_id.clone(),
            trusted_checkpoints: trusted,
            witness_policy: policy,
        };
        let r = blackbox_ledger::verify::verify_store_and_archive(
            &dir.store_location(),
            reader
                .as_ref()
                .map(|r| r as &dyn blackbox_ledger::verify::ArchiveSource),
            keys.as_ref(),
            Some(verifier),
            &opts,
            &|done| pb.set_position(done),
        )?;
        pb.finish_and_clear();
        journal_note(&dir);
        r
    };
    match a.format {
        TextOrJson::Json => println!("{}", report_json(&report)),
        TextOrJson::Text => print!("{}", report_text(&report, a.all)),
    }
    Ok(if report.ok() {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

/// Says (on stderr) how many entries the commit journal holds that the store has not committed
/// (answered as durable before a crash; docs/FORMAT.md §19): verification reads the store only,
/// and the next writing open of the data directory appends them.
fn journal_note(dir: &DataDir) {
    let path = dir.commit_journal_path();
    if !path.exists() {
        return;
    }
    let n = blackbox_ledger::open::open_reader(dir)
        .map_err(|e| e.to_string())
        .and_then(|s| {
            blackbox_ledger::journal::unapplied_entries(&path, s.as_ref())
                .map_err(|e| e.to_string())
        });
    match n {
        Ok(0) => {}
        Ok(n) => eprintln!(
            "note: {} holds {} entr{} answered as durable that the store has not committed yet \
             (the service stopped first); not verified here: the next writing open of the data \
             directory (blackbox serve, append…) appends them to the store",
            path.display(),
            n,
            if n == 1 { "y" } else { "ies" }
        ),
        Err(e) => eprintln!("note: cannot read {}: {e}", path.display()),
    }
}

pub fn report_text(r: &Report, all: bool) -> String {
    let mut out = headline(r);
    out.push('\n');
    if !r.ok() {
        if all {
            for f in &r.findings {
                let tenant = if f.tenant_id.is_empty() {
                    "-".to_owned()
                } else {
                    f.tenant_id.clone()
                };
                let seq = if f.seq == 0 { "-".to_owned() } else { n(f.seq) };
                let pos = match (&f.source, f.position) {
                    (Some(s), _) => format!(" [{} line {}]", s.file, n(s.line)),
                    (None, 0) => String::new(),
                    (None, p) => format!(" [position {}]", n(p)),
                };
                out.push_str(&format!(
                    "  {tenant:<16} entry {seq:>11}  {:<24} {}{pos}\n",
                    f.kind.as_str(),
                    f.message
                ));
                if let (Some(e), Some(a)) = (f.expected, f.actual) {
                    out.push_str(&format!("  {:<16}       {:>11}  expected {e}\n  {:<16}       {:>11}  found    {a}\n", "", "", "", ""));
                }
            }
            if r.findings_total > r.findings.len() as u64 {
                out.push_str(&format!(
                    "  … and {} more\n",
                    n(r.findings_total - r.findings.len() as u64)
                ));
            }
        } else if r.findings_total > 1 {
            out.push_str(&format!(
                "{} problems found in all; run with --all to list them.\n",
                n(r.findings_total)
            ));
        }
        if let Some(f) = r.first()
            && let (Some(s), false) = (&f.source, all)
        {
            out.push_str(&format!("  at {} line {}\n", s.file, n(s.line)));
        }
        if let Some(f) = r.first()
            && let (Some(e), Some(a), false) = (f.expected, f.actual, all)
        {
            out.push_str(&format!("  expected {e}\n  found    {a}\n"));
        }
    }
    for c in &r.chains {
        out.push_str(&format!(
            "  chain {:<16} {:>11} entries, {} checkpoint{} verified (largest: {}), head {}\n",
            c.tenant_id,
            n(c.entries),
            n(c.checkpoints_verified),
            if c.checkpoints_verified == 1 { "" } else { "s" },
            n(c.largest_checkpoint),
            c.head
        ));
        if let Some(w) = &c.witnessed {
            let by: Vec<String> = w
                .cosigners
                .iter()
                .map(|(name, t)| format!("{name} ({})", witness_time(*t)))
                .collect();
            out.push_str(&format!(
                "  {:<22} witnessed up to {}: cosigned by {}{}\n",
                "",
                n(w.size),
                by.join(", "),
                if w.missing.is_empty() {
                    String::new()
                } else {
                    format!("; not by {}", w.missing.join(", "))
                }
            ));
            if w.size < c.size {
                out.push_str(&format!(
                    "  {:<22} entries after {} are not yet cosigned by the witness quorum\n",
                    "",
                    n(w.size)
                ));
            }
        }
        if c.start > 0 {
            out.push_str(&format!(
                "  {:<22} entries {} to {}: the log picks the chain up at an anchor of size {}\n",
                "",
                n(c.start + 1),
                n(c.size),
                n(c.start)
            ));
        }
        if r.ok() && c.largest_checkpoint < c.size {
            out.push_str(&format!(
                "  {:<22} entries after {} are covered by hash links{}, not yet by a signed checkpoint\n",
                "",
                n(c.largest_checkpoint),
                if r.hmac_checked { " and HMACs" } else { "" }
            ));
        }
    }
    if !r.entries_by_origin.is_empty() {
        let by: Vec<String> = r
            .entries_by_origin
            .iter()
            .map(|(k, c)| format!("{k} {}", n(*c)))
            .collect();
        out.push_str(&format!(
            "  entries by origin: {} (FORMAT.md §2; none = format v1)\n",
            by.join(", ")
        ));
    }
    if !r.hmac_valid_by_key.is_empty() {
        let keys: Vec<String> = r
            .hmac_valid_by_key
            .iter()
            .map(|(k, c)| format!("{k}: {}", n(*c)))
            .collect();
        out.push_str(&format!(
            "  HMACs verified by key id: {}\n",
            keys.join(", ")
        ));
    }
    if let Some((q, ws)) = &r.witness_policy {
        out.push_str(&format!(
            "  witness policy: {q} of {} ({})\n",
            ws.len(),
            ws.join(", ")
        ));
    }
    for nc in &r.not_checked {
        out.push_str(&format!("  not checked: {nc}\n"));
    }
    out
}

/// A cosignature time (seconds since the epoch) as RFC 3339.
pub(crate) fn witness_time(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| secs.to_string(), |t| t.to_string())
}
