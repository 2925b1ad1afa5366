//! `blackbox tokens create|list|revoke`: the service's API tokens, on the host.

use anyhow::{Result, anyhow};
use blackbox_core::ids::TenantId;
use blackbox_ledger::datadir::DataDir;
use blackbox_server::tokens::{Scopes, Tokens};

use crate::Outcome;
use crate::cli::TextOrJson;

fn open(dir: &DataDir) -> Result<Tokens> {
    if !dir.is_data_dir() {
        anyhow::bail!(
            "{} is not a Blackbox data directory; run `blackbox init` or start `blackbox serve` first",
            dir.root().display()
        );
    }
    Ok(Tokens::open_for(dir)?)
}

fn time(ms: i64) -> String {
    blackbox_core::entry::format_timestamp(ms).unwrap_or_else(|_| ms.to_string())
}

pub fn create(
    dir: &DataDir,
    tenant: Option<&str>,
    scope: &str,
    label: &str,
    format: TextOrJson,
) -> Result<Outcome> {
    let scopes = Scopes::parse(scope).map_err(|e| anyhow!("--scope: {e}"))?;
    let tenant = tenant
        .map(TenantId::parse)
        .transpose()
        .map_err(|e| anyhow!("--tenant: {e}"))?;
    let store = open(dir)?;
    let (info, token) = store.create(tenant.as_ref(), scopes, label)?;
    match format {
        TextOrJson::Json => println!(
            "{}",
            serde_json::json!({"id": info.id, "tenant_id": info.tenant_id, "scopes": info.scopes.names(), "label": info.label, "token": token})
        ),
        TextOrJson::Text => {
            println!(
                "Created token {} ({} for {}). It is shown once; keep it secret:",
                info.id,
                info.scopes,
                info.tenant_id.as_deref().unwrap_or("every tenant")
            );
            println!("{token}");
        }
    }
    Ok(Outcome::Ok)
}

pub fn list(dir: &DataDir, format: TextOrJson) -> Result<Outcome> {
    let tokens = open(dir)?.list()?;
    match format {
        TextOrJson::Json => println!("{}", serde_json::to_string_pretty(&tokens)?),
        TextOrJson::Text => {
            println!(
                "{:<16}  {:<16}  {:<18}  {:<24}  {:<8}  LABEL",
                "ID", "TENANT", "SCOPES", "CREATED", "STATUS"
            );
            for t in tokens {
                println!(
                    "{:<16}  {:<16}  {:<18}  {:<24}  {:<8}  {}",
                    t.id,
                    t.tenant_id.as_deref().unwrap_or("*"),
                    t.scopes.to_string(),
                    time(t.created_ms),
                    if t.revoked_ms.is_some() {
                        "revoked"
                    } else {
                        "active"
                    },
                    t.label
                );
            }
        }
    }
    Ok(Outcome::Ok)
}

pub fn revoke(dir: &DataDir, id: &str) -> Result<Outcome> {
    if open(dir)?.revoke(id)? {
        println!("Revoked token {id}.");
        Ok(Outcome::Ok)
    } else {
        Err(anyhow!(
            "no active token with id {id}; `blackbox tokens list` shows the ids"
        ))
    }
}
