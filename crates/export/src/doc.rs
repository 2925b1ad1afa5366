//! The document model of a report: what the PDF renderer draws, independent of any figure.

use serde::Serialize;

/// A file embedded in the PDF as an associated file (PDF/A-3): the report's JSON and CSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// File name.
    pub name: String,
    /// MIME type, e.g. `application/json`.
    pub mime_type: String,
    /// What it is.
    pub description: String,
    /// Its bytes.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// A whole report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Document {
    /// The document's language (BCP 47, e.g. `en`).
    pub lang: String,
    /// When it was made, Unix ms (the PDF's creation date).
    pub created_ms: i64,
    /// Files embedded in the PDF (the same report as JSON, the CSV tables).
    pub attachments: Vec<Attachment>,
    /// Title on the cover and in the PDF metadata, e.g. "SOC 2 CC7.2 evidence".
    pub title: String,
    /// Second line of the cover, e.g. "Monitoring of system components".
    pub subtitle: String,
    /// Label/value lines of the cover (organisation, system, period, tenant, generated from …).
    pub cover: Vec<(String, String)>,
    /// Running header of every page after the cover (e.g. "Acme Corp — SOC 2 CC7.2 — 2025").
    pub header: String,
    /// Sections, in order; each starts with a numbered heading and appears in the table of
    /// contents.
    pub sections: Vec<Section>,
}

/// A numbered section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    /// Heading.
    pub title: String,
    /// Content.
    pub blocks: Vec<Block>,
}

/// A piece of content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Block {
    /// A paragraph of text (wrapped to the page width).
    Paragraph(String),
    /// A sub-heading inside a section (not in the table of contents).
    Subheading(String),
    /// Label/value pairs, labels in a column.
    KeyValues(Vec<(String, String)>),
    /// A table with a header row; long tables break across pages and repeat the header.
    Table {
        /// Column titles.
        columns: Vec<String>,
        /// Rows (each as many cells as columns).
        rows: Vec<Vec<String>>,
        /// A line under the table (e.g. "12 of 40 rows shown; all are in the CSV").
        caption: Option<String>,
    },
    /// A daily chart: one bar (or line) per day for each series.
    Chart {
        /// Title above the chart.
        title: String,
        /// Day labels, `YYYY-MM-DD`, in order.
        days: Vec<String>,
        /// Named series, each with one value per day.
        series: Vec<(String, Vec<u64>)>,
    },
    /// A command or other literal text in a monospaced font (wrapped, never reflowed).
    Code(String),
}
