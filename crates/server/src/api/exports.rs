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
    let outbox = std::sync::Arc::clone(&state.webhooks.outbox);
    let produced = tokio::task::spawn_blocking(move || {
        let config = blackbox_export::config::ExportConfig::load_or_default(
            &dir.root().join("export.toml"),
        )?;
        let records = blackbox_export::alerts::DeliveryRecords::Outbox(outbox.as_ref());
        blackbox_export::produce::produce(&dir, &config, &job, &records)
    })
    .await
    .map_err(|_| ApiError::unavailable("the export's worker failed; retry", 1))?
    .map_err(bad)?;
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
