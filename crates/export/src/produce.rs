//! One export, end to end: the figures, the output file(s) in the chosen format, and the
//! signed manifest, as bytes (the CLI writes them to disk; the service sends them).

use blackbox_ledger::datadir::DataDir;
use blackbox_store::Store;

use crate::ExportError;
use crate::alerts::DeliveryRecords;
use crate::config::ExportConfig;
use crate::figures::{Figures, Period, Request};
use crate::manifest::{self, FileHash, Manifest, ManifestCheckpoint};
use crate::report::{self, Control};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For the auditor.
    Pdf,
    /// The same content for machines.
    Json,
    /// The population tables.
    Csv,
}

impl Format {
    /// From a file name's extension.
    ///
    /// # Errors
    /// Another extension.
    pub fn of(name: &str) -> Result<Self, ExportError> {
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "pdf" => Ok(Self::Pdf),
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            _ => Err(ExportError::Usage(format!(
                "--output {name}: the format follows the extension: .pdf (for the auditor), .json (for machines) or .csv (the population tables)"
            ))),
        }
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct Job {
    /// Standard and control.
    pub control: Control,
    /// Tenant (`None`: the store's only tenant).
    pub tenant: Option<String>,
    /// Period (`None`: the whole log).
    pub period: Option<String>,
    /// Output file name (no directory): its extension picks the format.
    pub output_name: String,
    /// Count data subjects (GDPR).
    pub data_subjects: bool,
    /// Sample size.
    pub sample_size: usize,
    /// Sample seed (`None`: derived from the standard, tenant and period).
    pub seed: Option<String>,
}

/// An export's files.
#[derive(Debug, Clone)]
pub struct Produced {
    /// (file name, bytes), the output first.
    pub files: Vec<(String, Vec<u8>)>,
    /// The manifest's file name and signed text.
    pub manifest: (String, String),
    /// The figures (for a summary).
    pub figures: Figures,
    /// The period reported on.
    pub period: Period,
}

/// Runs an export over the data directory: figures, files, signed manifest. `deliveries`:
/// where the alerts' SIEM deliveries are read (the service's webhook outbox).
///
/// # Errors
/// Usage errors (tenant, period, format), an empty period, settings, store or key failures.
pub fn produce(
    dir: &DataDir,
    config: &ExportConfig,
    job: &Job,
    deliveries: &DeliveryRecords<'_>,
) -> Result<Produced, ExportError> {
    let format = Format::of(&job.output_name)?;
    if job.output_name.contains('/') || job.output_name.contains('\\') {
        return Err(ExportError::Usage(
            "the output name must not contain a directory".into(),
        ));
    }
    let store = blackbox_ledger::open::open_reader(dir)?;
    let tenants: Vec<String> = store
        .chains()?
        .into_iter()
        .map(|h| h.tenant_id)
        .filter(|t| !blackbox_core::ids::is_service_tenant(t))
        .collect();
    let tenant = match (&job.tenant, tenants.as_slice()) {
        (Some(t), _) => t.clone(),
        (None, [only]) => only.clone(),
        (None, []) => {
            return Err(ExportError::EmptyPeriod(
                "the store holds no entries yet: nothing to report".into(),
            ));
        }
        (None, many) => {
            return Err(ExportError::Usage(format!(
                "the store holds several tenants ({}): choose one with --tenant-id",
                many.join(", ")
            )));
        }
    };
    drop(store);
    let period = match &job.period {
        Some(p) => Period::parse(p)?,
        None => crate::figures::whole_log_period(dir, &tenant)?,
    };
    let control = job.control;
    let seed = job.seed.clone().unwrap_or_else(|| {
        format!(
            "{}/{}/{}/{}/{}",
            control.standard(),
            control.control(),
            tenant,
            period.start,
            period.end
        )
    });
    let req = Request {
        tenant: tenant.clone(),
        period: period.clone(),
        sample_size: job.sample_size.min(10_000),
        seed,
        data_subjects: job.data_subjects,
        retention: config.required_days(control.retention_preset()),
        now_ms: blackbox_ledger::clock::Clock::from_env().now_ms(),
        personal_ages: control == Control::GdprArt30,
        triage_hours: config.triage_hours(),
    };
    let figures = crate::figures::compute(dir, &req, deliveries)?;
    let r = report::report(control, config, &period, &figures, req.now_ms);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    match format {
        Format::Pdf => {
            let mut doc = report::document(&r, control);
            // The same report for machines, inside the PDF (PDF/A-3 associated files).
            let stem = job
                .output_name
                .rsplit_once('.')
                .map_or(job.output_name.as_str(), |(s, _)| s)
                .to_owned();
            doc.attachments.push(crate::doc::Attachment {
                name: format!("{stem}.json"),
                mime_type: "application/json".into(),
                description: "The report as JSON (blackbox.evidence.v1, docs/FORMAT.md §16)".into(),
                bytes: report::json(&r)?.into_bytes(),
            });
            for (suffix, bytes) in report::csv_tables(&figures)? {
                let name = if suffix.is_empty() {
                    format!("{stem}.csv")
                } else {
                    format!("{stem}.{suffix}.csv")
                };
                doc.attachments.push(crate::doc::Attachment {
                    description: format!(
                        "The report's {} table as CSV",
                        if suffix.is_empty() { "daily" } else { suffix }
                    ),
                    name,
                    mime_type: "text/csv".into(),
                    bytes,
                });
            }
            let bytes =
                crate::pdf::render_pdf(&doc).map_err(|e| ExportError::Pdf(e.to_string()))?;
            files.push((job.output_name.clone(), bytes));
        }
        Format::Json => files.push((job.output_name.clone(), report::json(&r)?.into_bytes())),
        Format::Csv => {
            let stem = job
                .output_name
                .rsplit_once('.')
                .map_or(job.output_name.as_str(), |(s, _)| s)
                .to_owned();
            for (suffix, bytes) in report::csv_tables(&figures)? {
                let name = if suffix.is_empty() {
                    job.output_name.clone()
                } else {
                    format!("{stem}.{suffix}.csv")
                };
                files.push((name, bytes));
            }
        }
    }
    let signer = blackbox_ledger::datadir::load_signer(&dir.signing_key_path())?;
    let m = Manifest {
        standard: control.standard().into(),
        control: control.control().into(),
        tenant_id: tenant.clone(),
        period_start: period.start.clone(),
        period_end: period.end.clone(),
        checkpoints: figures
            .integrity
            .checkpoint
            .iter()
            .map(|c| ManifestCheckpoint {
                tenant_id: tenant.clone(),
                size: c.size,
                root: c.root.clone(),
                timestamp: c.timestamp.clone(),
            })
            .collect(),
        files: files
            .iter()
            .map(|(name, bytes)| FileHash {
                name: name.clone(),
                sha256: manifest::sha256_bytes(bytes),
                bytes: bytes.len() as u64,
            })
            .collect(),
        public_key_fingerprint: signer.verifier().fingerprint(),
    };
    let text = manifest::sign(&m, &signer)?;
    Ok(Produced {
        manifest: (format!("{}.manifest", job.output_name), text),
        files,
        figures,
        period,
    })
}
