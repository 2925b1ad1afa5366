//! `blackbox agents list|pause|resume`: against a running service (`--server URL --token T`).

use anyhow::{Context as _, Result, anyhow};
use blackbox_client::Client;
use serde_json::Value;

use crate::Outcome;
use crate::cli::{RemoteArgs, TextOrJson};

fn client(r: &RemoteArgs, scope: &str) -> Result<(Client, tokio::runtime::Runtime)> {
    let server = r.server.as_deref().ok_or_else(|| {
        anyhow!(
            "agents are tracked by the running service: give --server URL --token T (or BLACKBOX_SERVER and BLACKBOX_TOKEN)"
        )
    })?;
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

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

pub fn list(r: &RemoteArgs, tenant: Option<&str>, format: TextOrJson) -> Result<Outcome> {
    let (c, rt) = client(r, "read")?;
    let agents = rt.block_on(c.agents(tenant))?;
    match format {
        TextOrJson::Json => println!("{}", serde_json::to_string_pretty(&agents)?),
        TextOrJson::Text => {
            let rows: Vec<[String; 6]> = agents
                .iter()
                .map(|a| {
                    let detail = match a.get("state").and_then(Value::as_str) {
                        Some("paused") => {
                            format!("since {} by {}", s(a, "paused_since"), s(a, "paused_by"))
                        }
                        Some("throttled") => format!(
                            "{}/min until {} by {}",
                            s(a, "throttle_per_minute"),
                            s(a, "throttled_until"),
                            s(a, "throttled_by")
                        ),
                        _ => String::new(),
                    };
                    // Tool calls through an MCP gateway (`blackbox mcp`): when it last wrote.
                    let detail = match a.get("mcp_last_seen").and_then(Value::as_str) {
                        Some(t) if detail.is_empty() => format!("MCP gateway, last {t}"),
                        Some(t) => format!("{detail}; MCP gateway, last {t}"),
                        None => detail,
                    };
                    [
                        s(a, "tenant_id"),
                        s(a, "agent_id"),
                        s(a, "state"),
                        s(a, "events"),
                        s(a, "last_seen"),
                        detail,
                    ]
                })
                .collect();
            let head = ["TENANT", "AGENT", "STATE", "EVENTS", "LAST SEEN", "DETAIL"];
            let mut w = head.map(str::len);
            for row in &rows {
                for (i, cell) in row.iter().enumerate() {
                    if let Some(x) = w.get_mut(i) {
                        *x = (*x).max(cell.chars().count());
                    }
                }
            }
            let line = |cells: [&str; 6]| {
                format!(
                    "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:<w4$}  {}",
                    cells[0],
                    cells[1],
                    cells[2],
                    cells[3],
                    cells[4],
                    cells[5],
                    w0 = w[0],
                    w1 = w[1],
                    w2 = w[2],
                    w3 = w[3],
                    w4 = w[4]
                )
                .trim_end()
                .to_owned()
            };
            println!("{}", line(head));
            for row in &rows {
                println!("{}", line(row.each_ref().map(String::as_str)));
            }
            eprintln!(
                "{} agent{}",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            );
        }
    }
    Ok(Outcome::Ok)
}

pub fn set_paused(
    r: &RemoteArgs,
    agent: &str,
    pause: bool,
    (tenant, reason, alert_id): (Option<&str>, Option<&str>, Option<&str>),
    format: TextOrJson,
) -> Result<Outcome> {
    let (c, rt) = client(r, "admin")?;
    let v = rt.block_on(c.set_agent_paused(agent, pause, tenant, reason, alert_id))?;
    match format {
        TextOrJson::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        TextOrJson::Text => {
            let changed = v.get("changed").and_then(Value::as_bool).unwrap_or(false);
            let who = format!("{} (tenant {})", s(&v, "agent_id"), s(&v, "tenant_id"));
            match (pause, changed) {
                (true, true) => println!(
                    "Paused {who}; recorded as entry {} (seq {}).",
                    s(&v, "entry_id"),
                    s(&v, "seq")
                ),
                (true, false) => println!("{who} was already paused; nothing recorded."),
                (false, true) => println!(
                    "Resumed {who}; recorded as entry {} (seq {}).",
                    s(&v, "entry_id"),
                    s(&v, "seq")
                ),
                (false, false) => {
                    println!("{who} was neither paused nor throttled; nothing recorded.")
                }
            }
        }
    }
    Ok(Outcome::Ok)
}
