//! `GET /v1/exports`: a compliance export made by the service (which holds the signing key).

use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use blackbox_api::exports::{Export, ExportFile, ExportSummary, Manifest, Period};
use serde::Deserialize;

use super::auth::{Caller, Read};
use super::input::optional_params;
use super::shares::heavy_read;
use crate::AppState;
use crate::error::ApiError;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ExportParams {
    standard: String,
    control: Option<String>,
    article: Option<String>,
    period: Option<String>,
    tenant_id: Option<String>,
    output: String,
    include_data_subjects: Option<bool>,
    sample_size: Option<usize>,
    seed: Option<String>,
    bundle: Option<bool>,
    archive: Option<String>,
}

/// `GET /v1/exports`: a compliance export made by the service (which holds the signing key):
/// the files and the signed manifest, base64 in JSON.
pub(super) async fn export(
    State(state): State<AppState>,
    caller: Caller<Read>,
    uri: Uri,
) -> Result<Response, ApiError> {
    use base64::Engine as _;
    let p: ExportParams = match uri.query() {
        None | Some("") => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "give standard, control (or article) and output, e.g. ?standard=soc2&control=CC7.2&output=evidence.pdf",
            ));
        }
        Some(q) => optional_params(Some(q))?,
    };
    let tenant = caller.tenant(p.tenant_id.as_deref())?;
    let bundle = p.bundle.unwrap_or(false);
    if bundle && !caller.token.scopes.admin {
        return Err(ApiError::forbidden(
            "a bundle holds the service's own chains, which name every tenant: it needs an admin token (a read token exports reports)",
        ));
    }
    let tar = match p.archive.as_deref() {
        None => false,
        Some("tar") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("archive={other:?}: the only archive is tar (leave it out for JSON)"),
            ));
        }
    };
    let which = p.control.as_deref().or(p.article.as_deref()).unwrap_or("");
    let bad = |e: blackbox_export::ExportError| match e {
        blackbox_export::ExportError::Usage(m)
        | blackbox_export::ExportError::EmptyPeriod(m)
        | blackbox_export::ExportError::Config(m) => ApiError::bad_request("invalid_parameter", m),
        other => ApiError::unavailable(format!("the export failed: {other}"), 5),
    };
    let control = blackbox_export::report::Control::parse(&p.standard, which).map_err(bad)?;
    let job = blackbox_export::produce::Job {
        control,
        tenant,
        period: p.period,
        output_name: p.output,
        data_subjects: p.include_data_subjects.unwrap_or(false),
        sample_size: p.sample_size.unwrap_or(25),
        seed: p.seed,
    };
    let _permit = heavy_read(&state, &caller, "exports").await?;
    let dir = state.dir.clone();
    let config = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            blackbox_export::config::ExportConfig::load_or_default(&dir.root().join("export.toml"))
        })
        .await
        .map_err(|_| ApiError::unavailable("the export's worker failed; retry", 1))?
        .map_err(bad)?
    };
    // A bundle's proofs and figures are as of a checkpoint the writer signs now over the
    // tenant's whole chain (as `blackbox export --bundle` does on a data directory).
    let bundle_at = if bundle {
        let (dir, config, job) = (dir.clone(), config.clone(), job.clone());
        let tenant = tokio::task::spawn_blocking(move || {
            blackbox_export::produce::request(&dir, &config, &job, 0).map(|r| r.tenant)
        })
        .await
        .map_err(|_| ApiError::unavailable("the export's worker failed; retry", 1))?
        .map_err(bad)?;
        super::proofs::sign_now(&state, &tenant).await?;
        let cp = super::with_reader(&state, move |r| Ok(r.latest_checkpoint(&tenant)?)).await?;
        Some(cp.map_or_else(blackbox_ledger::clock::now_ms, |c| c.ts_ms))
    } else {
        None
    };
    let outbox = std::sync::Arc::clone(&state.webhooks.outbox);
    let produced = tokio::task::spawn_blocking(move || {
        let records = blackbox_export::alerts::DeliveryRecords::Outbox(outbox.as_ref());
        match bundle_at {
            Some(now_ms) => {
                blackbox_export::produce::produce_bundle(&dir, &config, &job, &records, now_ms)
            }
            None => blackbox_export::produce::produce(&dir, &config, &job, &records),
        }
    })
    .await
    .map_err(|_| ApiError::unavailable("the export's worker failed; retry", 1))?
    .map_err(bad)?;
    if tar {
        let name = format!("{}-{}", p.standard, which);
        return tar_answer(&produced, &name, bundle);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let f = &produced.figures;
    Ok(axum::Json(Export {
        files: produced
            .files
            .iter()
            .map(|(n, b)| ExportFile {
                name: n.clone(),
                base64: b64.encode(b),
            })
            .collect(),
        manifest: Manifest {
            name: produced.manifest.0.clone(),
            text: produced.manifest.1.clone(),
        },
        period: Period {
            start: produced.period.start.clone(),
            end: produced.period.end.clone(),
        },
        summary: ExportSummary {
            tenant_id: f.tenant_id.clone(),
            completeness: f.completeness.percent,
            present: f.completeness.present,
            expected: f.completeness.expected,
            integrity: f.integrity.summary.clone(),
            anomalies: f.anomalies.total,
            resolved: f.anomalies.resolved,
            oldest_age_days: f.retention.oldest_age_days,
            retention_as_of: f.retention.as_of.clone(),
            required_days: f.retention.required_days,
            retention_met: f.retention.met,
        },
    })
    .into_response())
}

/// The export's files and its manifest as one tar archive, under a directory named after the
/// export (`<tenant>-<standard>-<control>[-bundle]/`), for a browser to save as one file.
fn tar_answer(
    produced: &blackbox_export::produce::Produced,
    name: &str,
    bundle: bool,
) -> Result<Response, ApiError> {
    let safe = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    let root = format!(
        "{}-{}-{}{}",
        safe(&produced.figures.tenant_id),
        safe(name.trim_end_matches('-')),
        produced.period.end,
        if bundle { "-bundle" } else { "" }
    );
    let failed = |e: std::io::Error| ApiError::unavailable(format!("the archive failed: {e}"), 1);
    let mut builder = tar::Builder::new(Vec::new());
    let mtime = u64::try_from(blackbox_ledger::clock::now_ms() / 1000).unwrap_or(0);
    let manifest = (
        produced.manifest.0.clone(),
        produced.manifest.1.clone().into_bytes(),
    );
    for (name, bytes) in produced.files.iter().chain(std::iter::once(&manifest)) {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, format!("{root}/{name}"), bytes.as_slice())
            .map_err(failed)?;
    }
    let body = builder.into_inner().map_err(failed)?;
    let mut resp = Response::new(axum::body::Body::from(body));
    let headers = resp.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/x-tar"),
    );
    if let Ok(v) =
        axum::http::HeaderValue::from_str(&format!("attachment; filename=\"{root}.tar\""))
    {
        headers.insert(axum::http::header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
