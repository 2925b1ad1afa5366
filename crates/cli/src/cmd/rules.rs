//! `blackbox rules check FILE`, `blackbox rules test FILE --log-file audit.jsonl` (the
//! backtest itself is [`blackbox_detect::backtest`]) and `blackbox rules test FILE --corpus
//! DIR | --text FILE` (measured by [`blackbox_detect::evaluate`]).

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

/// What `rules test --corpus` must reach, or exit 1.
#[derive(Debug, Clone, Copy, Default)]
pub struct Targets {
    /// Least percentage of attacks refused.
    pub require_refused: Option<f64>,
    /// Most percentage of benign samples refused.
    pub max_benign_refused: Option<f64>,
}

fn parse_rules(file: &Path) -> Result<Arc<RuleSet>> {
    let text = read(file)?;
    let set =
        RuleSet::parse(&text).map_err(|e| anyhow!("{}", e.render(&file.display().to_string())))?;
    Ok(Arc::new(set))
}

/// The `.jsonl` files of a corpus: the file itself, or those under the directory, in path
/// order.
fn corpus_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read --corpus {}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(anyhow!(
            "--corpus {}: no .jsonl file in it (one JSON object per line: {{\"label\": \"attack\"|\"benign\", \"text\": …}})",
            path.display()
        ));
    }
    Ok(out)
}

#[allow(clippy::too_many_lines)]
pub fn corpus(
    file: &Path,
    path: &Path,
    obfuscate: bool,
    targets: Targets,
    examples: usize,
    format: TextOrJson,
) -> Result<Outcome> {
    use blackbox_detect::evaluate::{Evaluator, Label, Report, Sample};
    let rules = parse_rules(file)?;
    let mut ev = Evaluator::new(Arc::clone(&rules));
    let mut report = Report {
        examples,
        ..Report::default()
    };
    let files = corpus_files(path)?;
    let base = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    for f in &files {
        let name = f.strip_prefix(base).unwrap_or(f).display().to_string();
        let text = read(f)?;
        for (i, line) in text.lines().enumerate() {
            let at = format!("{name}:{}", i + 1);
            let sample = Sample::parse(line, at.clone())
                .map_err(|e| anyhow!("{}:{}: {e}", f.display(), i + 1))?;
            let Some(sample) = sample else { continue };
            let o = ev.decide(&sample.tool, &sample.arguments);
            report.add(&name, &sample, &o);
            if obfuscate && sample.label == Label::Attack && o.refused() {
                report.add_tricks(&mut ev, &sample);
            }
        }
    }
    let attack = report
        .labels
        .get(&Label::Attack)
        .cloned()
        .unwrap_or_default();
    let benign = report
        .labels
        .get(&Label::Benign)
        .cloned()
        .unwrap_or_default();
    let mut failed = Vec::new();
    if let Some(t) = targets.require_refused
        && attack.refused_pct() < t
    {
        failed.push(format!(
            "{}% of attacks refused, below --require-refused {t}",
            attack.refused_pct()
        ));
    }
    if let Some(t) = targets.max_benign_refused
        && benign.refused_pct() > t
    {
        failed.push(format!(
            "{}% of benign samples refused, above --max-benign-refused {t}",
            benign.refused_pct()
        ));
    }
    match format {
        TextOrJson::Json => {
            let groups: Vec<_> = report
                .groups
                .iter()
                .map(|((src, label, group), c)| {
                    json!({"source": src, "label": label.as_str(), "group": group,
                        "samples": c.samples, "refused": c.refused, "alerted": c.alerted,
                        "shadow": c.shadow, "refused_pct": c.refused_pct()})
                })
                .collect();
            let per_rule: Vec<_> = rules
                .rules
                .iter()
                .map(|r| {
                    let get = |l| report.rules.get(&(r.name.clone(), l)).copied().unwrap_or(0);
                    json!({"rule": r.name, "action": r.action.as_str(), "kind": r.kind.name(),
                        "attack": get(Label::Attack), "benign": get(Label::Benign)})
                })
                .collect();
            let tricks: Vec<_> = report
                .tricks
                .iter()
                .map(|(t, c)| json!({"trick": t, "samples": c.samples, "refused": c.refused, "refused_pct": c.refused_pct()}))
                .collect();
            let mistakes: Vec<_> = report
                .mistakes
                .iter()
                .map(|(l, id, why)| json!({"label": l.as_str(), "id": id, "fired": why}))
                .collect();
            let total = |c: &blackbox_detect::evaluate::Counts| {
                json!({"samples": c.samples, "refused": c.refused, "alerted": c.alerted,
                    "shadow": c.shadow, "refused_pct": c.refused_pct()})
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "rules_file": file, "rules_sha256": rules.source_sha256, "corpus": path,
                    "files": files.len(), "attack": total(&attack), "benign": total(&benign),
                    "groups": groups, "rules": per_rule, "tricks": tricks,
                    "mistakes": mistakes, "targets_failed": failed,
                }))?
            );
        }
        TextOrJson::Text => {
            println!(
                "Rules {} on {} ({} file{}): attacks refused {}% ({} of {}), benign refused {}% ({} of {})",
                file.display(),
                path.display(),
                files.len(),
                if files.len() == 1 { "" } else { "s" },
                attack.refused_pct(),
                n(attack.refused),
                n(attack.samples),
                benign.refused_pct(),
                n(benign.refused),
                n(benign.samples),
            );
            let w = report
                .groups
                .keys()
                .map(|(s, _, g)| s.len() + g.len() + 3)
                .max()
                .unwrap_or(10)
                .max(10);
            println!(
                "{:<w$}  {:<7}  {:>7}  {:>8}  {:>7}  {:>7}",
                "SOURCE / GROUP", "LABEL", "SAMPLES", "REFUSED", "%", "ALERTED"
            );
            for ((src, label, group), c) in &report.groups {
                println!(
                    "{:<w$}  {:<7}  {:>7}  {:>8}  {:>7}  {:>7}",
                    format!("{src} / {group}"),
                    label.as_str(),
                    n(c.samples),
                    n(c.refused),
                    c.refused_pct(),
                    n(c.alerted),
                );
            }
            if !report.tricks.is_empty() {
                println!("Evasion tricks on the attacks refused in plain form:");
                for (t, c) in &report.tricks {
                    println!(
                        "  {t:<20} {:>6}% refused ({} of {})",
                        c.refused_pct(),
                        n(c.refused),
                        n(c.samples)
                    );
                }
            }
            println!("Rules that fired (samples): attack / benign");
            for r in &rules.rules {
                let get = |l| report.rules.get(&(r.name.clone(), l)).copied().unwrap_or(0);
                let (a, b) = (get(Label::Attack), get(Label::Benign));
                if a + b > 0 {
                    println!(
                        "  {:<32} {:<16} {:>6} / {}",
                        r.name,
                        r.action.as_str(),
                        n(a),
                        n(b)
                    );
                }
            }
            for (label, id, why) in &report.mistakes {
                let what = if *label == Label::Attack {
                    "missed"
                } else {
                    "refused benign"
                };
                let why = if why.is_empty() {
                    "-".to_owned()
                } else {
                    why.join(", ")
                };
                println!("  {what}: {id} ({why})");
            }
            for f in &failed {
                println!("TARGET MISSED — {f}");
            }
        }
    }
    Ok(if failed.is_empty() {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

pub fn text(file: &Path, path: &Path, format: TextOrJson) -> Result<Outcome> {
    use blackbox_detect::evaluate::Evaluator;
    let rules = parse_rules(file)?;
    let input = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading stdin")?;
        s
    } else {
        read(path)?
    };
    let mut ev = Evaluator::new(rules);
    let mut refused = 0u64;
    let mut lines = 0u64;
    for (i, line) in input.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        let o = ev.decide("tool", &json!({ "text": line }));
        if o.refused() {
            refused += 1;
        }
        match format {
            TextOrJson::Json => println!(
                "{}",
                json!({"line": i + 1, "decision": o.verdict.as_str(), "rules": o.named.acting,
                    "shadow_rules": o.named.shadow, "signals": o.named.signals,
                    "score": (o.named.score * 1000.0).round() / 1000.0})
            ),
            TextOrJson::Text => {
                let mut why: Vec<String> = o.named.acting.clone();
                why.extend(o.named.shadow.iter().map(|s| format!("shadow:{s}")));
                why.extend(o.named.signals.iter().map(|s| format!("signal:{s}")));
                println!(
                    "{:>5}  {:<8}  {}",
                    i + 1,
                    o.verdict.as_str(),
                    if why.is_empty() {
                        "-".to_owned()
                    } else {
                        why.join(", ")
                    }
                );
            }
        }
    }
    if format == TextOrJson::Text {
        println!("{} of {} line(s) refused", n(refused), n(lines));
    }
    Ok(Outcome::Ok)
}
