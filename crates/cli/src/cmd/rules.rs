//! `blackbox rules check FILE` and `blackbox rules test FILE --log-file audit.jsonl` (the
//! backtest itself is [`blackbox_detect::backtest`]).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use blackbox_core::entry::format_timestamp;
use blackbox_detect::backtest::Backtest;
use blackbox_detect::rules::{Kind, RuleSet};
use blackbox_ledger::datadir::DataDir;
use blackbox_ledger::jsonl::{RecordKind, record_kind};
use blackbox_store::{Query, Store as _};
use serde_json::json;

use crate::Outcome;
use crate::cli::TextOrJson;
use crate::output::n;

fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

pub fn check(file: &Path, format: TextOrJson) -> Result<Outcome> {
    let text = read(file)?;
    match RuleSet::parse(&text) {
        Ok(set) => {
            let enabled = set.rules.iter().filter(|r| r.enabled).count();
            match format {
                TextOrJson::Json => println!(
                    "{}",
                    json!({
                        "valid": true, "file": file, "rules": set.rules.len(), "enabled": enabled,
                        "webhooks": set.webhooks.len(), "time_zone": set.time_zone_name,
                        "sha256": set.source_sha256,
                        "rule_names": set.rules.iter().map(|r| &r.name).collect::<Vec<_>>(),
                    })
                ),
                TextOrJson::Text => {
                    println!(
                        "OK — {} rule{} ({enabled} enabled), {} webhook{}, time zone {}",
                        set.rules.len(),
                        if set.rules.len() == 1 { "" } else { "s" },
                        set.webhooks.len(),
                        if set.webhooks.len() == 1 { "" } else { "s" },
                        set.time_zone_name
                    );
                    for r in &set.rules {
                        println!(
                            "  {:<32} {:<12} {:<20} {}{}",
                            r.name,
                            r.kind.name(),
                            r.action.as_str(),
                            r.severity.as_str(),
                            if r.enabled { "" } else { " (disabled)" }
                        );
                    }
                }
            }
            Ok(Outcome::Ok)
        }
        Err(e) => {
            let where_ = e.render(&file.display().to_string());
            match format {
                TextOrJson::Json => println!(
                    "{}",
                    json!({"valid": false, "file": file, "line": e.line, "column": e.column, "error": e.message})
                ),
                TextOrJson::Text => println!("INVALID — {where_}"),
            }
            Ok(Outcome::CheckFailed)
        }
    }
}

pub fn test(
    file: &Path,
    logs: &[PathBuf],
    data_dir: Option<&Path>,
    examples: usize,
    format: TextOrJson,
) -> Result<Outcome> {
    let text = read(file)?;
    let set =
        RuleSet::parse(&text).map_err(|e| anyhow!("{}", e.render(&file.display().to_string())))?;
    let rules = Arc::new(set);
    let mut bt = Backtest::new(Arc::clone(&rules), examples);
    let source = if let Some(dir) = data_dir {
        let dir = DataDir::new(dir.to_path_buf());
        let store = blackbox_ledger::open::open_reader(&dir)?;
        store.query(&Query::default(), &mut |e| {
            if record_kind(&e.line) == RecordKind::Entry {
                bt.line(&e.line);
            }
            Ok(true)
        })?;
        dir.root().display().to_string()
    } else {
        for log in logs {
            let f = std::fs::File::open(log)
                .with_context(|| format!("cannot open --log-file {}", log.display()))?;
            let mut r = std::io::BufReader::new(f);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let k = r
                    .read_until(b'\n', &mut buf)
                    .with_context(|| format!("reading {}", log.display()))?;
                if k == 0 {
                    break;
                }
                let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
                if !line.is_empty() && record_kind(line) == RecordKind::Entry {
                    bt.line(line);
                }
            }
        }
        logs.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let time = |ms: Option<i64>| ms.and_then(|m| format_timestamp(m).ok());
    let has_patterns = rules
        .rules
        .iter()
        .any(|r| matches!(r.kind, Kind::Pattern { .. }));
    match format {
        TextOrJson::Json => {
            let per_rule: Vec<_> = rules
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let rep = bt.reports.get(&i);
                    json!({
                        "rule": r.name, "kind": r.kind.name(), "action": r.action.as_str(),
                        "enabled": r.enabled,
                        "fired": rep.map_or(0, |x| x.fired),
                        "suppressed": rep.map_or(0, |x| x.suppressed),
                        "agents": rep.map(|x| x.agents.iter().cloned().collect::<Vec<_>>()).unwrap_or_default(),
                        "first": time(rep.and_then(|x| x.first)),
                        "last": time(rep.and_then(|x| x.last)),
                        "examples": rep.map(|x| x.examples.clone()).unwrap_or_default(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "source": source, "rules_file": file, "rules_sha256": rules.source_sha256,
                    "entries": bt.entries, "unreadable_lines": bt.skipped,
                    "from": time(bt.from), "to": time(bt.to), "rules": per_rule,
                }))?
            );
        }
        TextOrJson::Text => {
            println!(
                "Backtest of {} over {source}: {} entries{}",
                file.display(),
                n(bt.entries),
                match (time(bt.from), time(bt.to)) {
                    (Some(a), Some(b)) => format!(", {a} to {b}"),
                    _ => String::new(),
                }
            );
            let w = rules
                .rules
                .iter()
                .map(|r| r.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            println!(
                "{:<w$}  {:<11}  {:<18}  {:>7}  {:>10}  {:>6}  FIRST",
                "RULE", "KIND", "ACTION", "FIRED", "SUPPRESSED", "AGENTS"
            );
            for (i, r) in rules.rules.iter().enumerate() {
                let rep = bt.reports.get(&i);
                println!(
                    "{:<w$}  {:<11}  {:<18}  {:>7}  {:>10}  {:>6}  {}",
                    r.name,
                    r.kind.name(),
                    if r.enabled {
                        r.action.as_str()
                    } else {
                        "(disabled)"
                    },
                    n(rep.map_or(0, |x| x.fired)),
                    n(rep.map_or(0, |x| x.suppressed)),
                    rep.map_or(0, |x| x.agents.len()),
                    time(rep.and_then(|x| x.first)).unwrap_or_else(|| "-".into()),
                );
                if let Some(rep) = rep
                    && !rep.examples.is_empty()
                {
                    println!("{:<w$}  e.g. {}", "", rep.examples.join(" "));
                }
            }
            if bt.skipped > 0 {
                println!(
                    "{} line(s) could not be read as entries and were skipped",
                    n(bt.skipped)
                );
            }
            if has_patterns {
                println!(
                    "Note: pattern rules see only what the log holds. Raw content is hashed before it is stored, so in a backtest they match only fields kept in clear."
                );
            }
        }
    }
    Ok(Outcome::Ok)
}
