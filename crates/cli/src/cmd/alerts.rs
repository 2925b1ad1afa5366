//! `blackbox alerts list|ack|resolve`: alerts (`anomaly_detected` entries) and their triage, on a
//! data directory or through a running service (`--server URL --token T`).

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow};
use blackbox_client::{AlertQuery, Client};
use blackbox_core::alert::{Action, AlertState, Resolution, TriageRequest};
use blackbox_ledger::alerts::{AlertFilter, TriageRefusal};
use blackbox_ledger::datadir::{DEFAULT_DATA_DIR, DataDir};
use blackbox_ledger::open::{open_reader, open_writer};
use serde_json::Value;

use crate::Outcome;
use crate::cli::{RemoteArgs, TextOrJson};
use blackbox_ledger::clock::now_ms;

/// Filters of `alerts list`.
pub struct ListArgs {
    pub data_dir: Option<PathBuf>,
    pub remote: RemoteArgs,
    pub tenant_id: Option<String>,
    pub state: Option<String>,
    pub rule: Option<String>,
    pub agent_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: u64,
    pub cursor: Option<String>,
    pub format: TextOrJson,
}

/// `alerts ack` / `alerts resolve`.
pub struct TriageArgs {
    pub alert_id: String,
    /// `None`: acknowledge.
    pub resolution: Option<String>,
    pub ticket: Option<String>,
    pub note: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub remote: RemoteArgs,
    pub format: TextOrJson,
}

fn data_dir(d: Option<&PathBuf>) -> DataDir {
    DataDir::new(
        d.cloned()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
    )
}

fn client(r: &RemoteArgs, server: &str, scope: &str) -> Result<(Client, tokio::runtime::Runtime)> {
    let token = r.token.clone().ok_or_else(|| {
        anyhow!("--server needs --token T (or BLACKBOX_TOKEN): a token with {scope} scope")
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client")?;
    let c = Client::new(server, token).map_err(|e| anyhow!("--server {server}: {e}"))?;
    Ok((c, rt))
}

/// The local actor: `cli:<os user>` (`$USER`, else `$LOGNAME`, else `uid:<n>`). Whoever can
/// write the data directory can write anything in it; the name says who ran the command.
fn os_user() -> String {
    let from_env = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|u| !u.is_empty() && !u.chars().any(char::is_control));
    let user = from_env.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next().map(|u| format!("uid:{u}")))
            })
            .unwrap_or_else(|| "unknown".to_owned())
    });
    format!("cli:{user}")
}

pub fn list(a: &ListArgs) -> Result<Outcome> {
    // Checked before anything is opened: a usage error (exit 2).
    let state = a
        .state
        .as_deref()
        .map(AlertState::parse)
        .transpose()
        .map_err(|e| anyhow!("--{}", e))?;
    let page: Value = if let Some(server) = a.remote.server.as_deref() {
        let (c, rt) = client(&a.remote, server, "read")?;
        let q = AlertQuery {
            tenant_id: a.tenant_id.clone(),
            state: a.state.clone(),
            rule: a.rule.clone(),
            agent_id: a.agent_id.clone(),
            since: a.since.clone(),
            until: a.until.clone(),
            limit: Some(a.limit),
            cursor: a.cursor.clone(),
        };
        rt.block_on(c.alerts(&q))?
    } else {
        if a.cursor.is_some() {
            return Err(anyhow!(
                "--cursor continues a listing of the service (--server); on a data directory, narrow the listing with --since/--until instead"
            ));
        }
        let bound = |name: &str, v: Option<&str>, end: bool| {
            v.map(|s| {
                blackbox_core::entry::parse_time_bound(s, end)
                    .map_err(|e| anyhow!("--{name} {s:?}: {e}"))
            })
            .transpose()
        };
        let filter = AlertFilter {
            tenant_id: a.tenant_id.clone(),
            state,
            rule: a.rule.clone(),
            agent_id: a.agent_id.clone(),
            since_ms: bound("since", a.since.as_deref(), false)?,
            until_ms: bound("until", a.until.as_deref(), true)?,
            limit: Some(usize::try_from(a.limit).unwrap_or(usize::MAX)),
            after: None,
        };
        let store = open_reader(&data_dir(a.data_dir.as_ref()))?;
        let page = blackbox_ledger::alerts::list(&store, &filter)?;
        let alerts: Vec<Value> = page.alerts.iter().map(|x| x.to_json()).collect();
        serde_json::json!({
            "alerts": alerts,
            "more": page.next.is_some(),
            "next_cursor": Value::Null,
        })
    };
    match a.format {
        TextOrJson::Json => println!("{}", serde_json::to_string_pretty(&page)?),
        TextOrJson::Text => print_table(&page),
    }
    Ok(Outcome::Ok)
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn print_table(page: &Value) {
    let empty = Vec::new();
    let alerts = page
        .get("alerts")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let head = [
        "ALERT", "FIRED", "TENANT", "AGENT", "RULE", "SEVERITY", "STATE",
    ];
    let rows: Vec<[String; 7]> = alerts
        .iter()
        .map(|a| {
            let state = match a.get("resolution").and_then(Value::as_str) {
                Some(r) => format!("resolved ({r})"),
                None => s(a, "state"),
            };
            [
                s(a, "alert_id"),
                s(a, "fired_at"),
                s(a, "tenant_id"),
                s(a, "agent_id"),
                s(a, "rule"),
                s(a, "severity"),
                state,
            ]
        })
        .collect();
    let mut w = head.map(str::len);
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(cell.chars().count());
            }
        }
    }
    let line = |cells: [&str; 7]| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let width = w.get(i).copied().unwrap_or(0);
            out.push_str(&format!("{c:<width$}  "));
        }
        out.trim_end().to_owned()
    };
    println!("{}", line(head));
    for row in &rows {
        println!("{}", line(row.each_ref().map(String::as_str)));
    }
    eprintln!(
        "{} alert{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    match page.get("next_cursor").and_then(Value::as_str) {
        Some(c) => eprintln!("more alerts follow: add --cursor {c}"),
        None if page.get("more").and_then(Value::as_bool) == Some(true) => {
            eprintln!("more alerts follow: raise --limit or narrow the listing with --since");
        }
        None => {}
    }
}

pub fn triage(a: &TriageArgs) -> Result<Outcome> {
    // Checked before anything is opened: a usage error (exit 2).
    let action = match a.resolution.as_deref() {
        None => Action::Acknowledge,
        Some(r) => Action::Resolve(Resolution::parse(r).map_err(|e| anyhow!("--{e}"))?),
    };
    let id = blackbox_core::entry::parse_entry_id(&a.alert_id).map_err(|_| {
        anyhow!(
            "{:?} is not an alert id: give the alert_id (an entry id, a UUID) that `blackbox alerts list` shows",
            a.alert_id
        )
    })?;
    let v = if let Some(server) = a.remote.server.as_deref() {
        // The service names the token as the actor and hashes the note itself.
        TriageRequest::new(
            action,
            "operator:check",
            a.ticket.as_deref(),
            a.note.as_deref(),
        )
        .map_err(|e| anyhow!("--{e}"))?;
        let (c, rt) = client(&a.remote, server, "admin")?;
        rt.block_on(async {
            match action {
                Action::Acknowledge => {
                    c.acknowledge_alert(&a.alert_id, a.ticket.as_deref(), a.note.as_deref())
                        .await
                }
                Action::Resolve(r) => {
                    c.resolve_alert(
                        &a.alert_id,
                        r.as_str(),
                        a.ticket.as_deref(),
                        a.note.as_deref(),
                    )
                    .await
                }
            }
        })?
    } else {
        let req = TriageRequest::new(action, &os_user(), a.ticket.as_deref(), a.note.as_deref())
            .map_err(|e| anyhow!("--{e}"))?;
        local_triage(&data_dir(a.data_dir.as_ref()), id, &req)?
    };
    match a.format {
        TextOrJson::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        TextOrJson::Text => {
            let alert = v.get("alert").cloned().unwrap_or(Value::Null);
            let what = match action {
                Action::Acknowledge => "Acknowledged".to_owned(),
                Action::Resolve(r) => format!("Resolved ({})", r.as_str()),
            };
            println!(
                "{what} alert {} (rule {}, agent {}, tenant {}); recorded as entry {} (seq {}).",
                a.alert_id,
                s(&alert, "rule"),
                s(&alert, "agent_id"),
                s(&alert, "tenant_id"),
                s(&v, "entry_id"),
                s(&v, "seq"),
            );
        }
    }
    Ok(Outcome::Ok)
}

/// Triage on a data directory, through the ledger writer (which holds the directory's writer
/// lock: a running service on it refuses this; use `--server` then).
fn local_triage(
    dir: &DataDir,
    id: blackbox_ledger::alerts::AlertId,
    req: &TriageRequest,
) -> Result<Value> {
    let (mut store, mut writer, _) = open_writer(dir)?;
    let alert = match blackbox_ledger::alerts::check(&store, id, req, &|_| true)? {
        Ok(a) => a,
        Err(TriageRefusal::UnknownAlert(m) | TriageRefusal::Conflict(m)) => {
            return Err(anyhow!("alert {id}: {m}"));
        }
    };
    let now = now_ms();
    let entry = writer.stream(&mut store, |sink| {
        let e = blackbox_ledger::alerts::append(sink, &alert, req, now)?;
        sink.commit(now, true)?;
        Ok(e)
    })?;
    let after = blackbox_ledger::alerts::find(&store, id, &|_| true)?;
    Ok(serde_json::json!({
        "alert": after.map(|x| x.to_json()),
        "entry_id": entry.entry_id.to_string(),
        "seq": entry.seq,
        "entry_hash": entry.entry_hash.to_prefixed(),
    }))
}
