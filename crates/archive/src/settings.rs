//! Retention settings (`[retention]` in `DIR/blackbox.toml`) and the retention presets of the
//! compliance standards, checked once into a typed value.

use std::collections::BTreeMap;
use std::path::Path;

use blackbox_core::ids::TenantId;
use serde::Deserialize;

use crate::error::ArchiveError;

/// A retention preset: how long one standard's evidence needs entries kept, in all and in the
/// queryable store, and where the number comes from. Where the standard sets no number (SOC 2,
/// ISO 27001, NIS2, HIPAA's audit controls) the requirement is organisation-defined and the
/// preset is Blackbox's default, which every report and status message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPreset {
    /// The name used in settings (`soc2`, `pci_dss`, …).
    pub name: &'static str,
    /// Days to keep entries in all.
    pub keep_days: u64,
    /// Days of that in the queryable store.
    pub hot_days: u64,
    /// Whether the standard itself sets `keep_days` (otherwise it is organisation-defined and
    /// the number is Blackbox's default).
    pub set_by_standard: bool,
    /// The provision, or why there is none.
    pub source: &'static str,
}

impl RetentionPreset {
    /// The preset called `name`.
    #[must_use]
    pub fn find(name: &str) -> Option<&'static Self> {
        RETENTION_PRESETS.iter().find(|p| p.name == name)
    }

    /// "the soc2 preset: 365 days, organisation-defined (…)" or "the pci_dss preset: 365 days
    /// (PCI DSS v4.0 …)", for reports and messages.
    #[must_use]
    pub fn describe(&self) -> String {
        if self.set_by_standard {
            format!(
                "the {} preset: {} days ({})",
                self.name, self.keep_days, self.source
            )
        } else {
            format!(
                "the {} preset: {} days, organisation-defined ({}; the number is Blackbox's default, set your own with required_days)",
                self.name, self.keep_days, self.source
            )
        }
    }

    /// The names of every preset, for messages.
    #[must_use]
    pub fn names() -> String {
        RETENTION_PRESETS.map(|p| p.name).join(", ")
    }
}

/// The retention presets (docs/RULES.md, "Retention").
pub const RETENTION_PRESETS: [RetentionPreset; 7] = [
    RetentionPreset {
        name: "soc2",
        keep_days: 365,
        hot_days: 365,
        set_by_standard: false,
        source: "SOC 2 (AICPA Trust Services Criteria, CC7.2) sets no retention period; one year covers a type 2 observation period",
    },
    RetentionPreset {
        name: "iso27001",
        keep_days: 365,
        hot_days: 365,
        set_by_standard: false,
        source: "ISO/IEC 27001:2022 Annex A 8.15 sets no retention period",
    },
    RetentionPreset {
        name: "pci_dss",
        keep_days: 365,
        hot_days: 90,
        set_by_standard: true,
        source: "PCI DSS v4.0 requirement 10.5.1: audit log history kept at least 12 months, the most recent three months immediately available for analysis",
    },
    RetentionPreset {
        name: "hipaa",
        keep_days: 2190,
        hot_days: 2190,
        set_by_standard: false,
        source: "HIPAA's audit controls (45 CFR 164.312(b)) set no period; six years follows the documentation rule of 45 CFR 164.316(b)(2)(i)",
    },
    RetentionPreset {
        name: "nis2",
        keep_days: 1095,
        hot_days: 1095,
        set_by_standard: false,
        source: "NIS2 (Directive (EU) 2022/2555, Art. 21) sets no log retention period; national rules differ",
    },
    RetentionPreset {
        name: "eu_ai_act",
        keep_days: 183,
        hot_days: 183,
        set_by_standard: true,
        source: "Regulation (EU) 2024/1689, Art. 19(1) and 26(6): logs kept at least six months unless other Union or national law provides otherwise",
    },
    RetentionPreset {
        name: "gdpr",
        keep_days: 0,
        hot_days: 0,
        set_by_standard: true,
        source: "GDPR Art. 5(1)(e), storage limitation: no minimum; each processing activity declares its own maximum (Art. 30(1)(f))",
    },
];

/// The part of `blackbox.toml` read here (the ledger reads the rest).
#[derive(Debug, Deserialize, Default)]
struct RawFile {
    #[serde(default)]
    retention: RawRetention,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    hot_days: Option<u64>,
    archive_days: Option<u64>,
    standards: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    hot_days: Option<u64>,
    archive_days: Option<u64>,
    standards: Option<Vec<String>>,
    archive_url: Option<String>,
    segment_entries: Option<u64>,
    run_every_hours: Option<u64>,
    #[serde(default)]
    tenants: BTreeMap<String, RawPolicy>,
}

/// How long one tenant's entries are kept, and which standards that must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Days in the queryable store.
    pub hot_days: u64,
    /// Days in the archive after that (0: kept forever).
    pub archive_days: u64,
    /// Standards (names of [`RETENTION_PRESETS`]).
    pub standards: Vec<String>,
}

/// The `[retention]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// The policy of tenants without their own.
    pub default: RetentionPolicy,
    /// Per-tenant policies.
    pub tenants: BTreeMap<String, RetentionPolicy>,
    /// Where archives go (directory, `file://` or `s3://` URL).
    pub archive_url: String,
    /// Most entries per archive segment.
    pub segment_entries: u64,
    /// How often `serve` runs retention (hours; 0 = never).
    pub run_every_hours: u64,
}

impl RetentionConfig {
    /// The policy of `tenant`.
    #[must_use]
    pub fn policy(&self, tenant: &str) -> &RetentionPolicy {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }
}

impl RetentionConfig {
    /// Reads the `[retention]` section of `path`; a missing file means all defaults.
    ///
    /// # Errors
    /// [`ArchiveError::Config`] naming the problem; I/O failures other than a missing file.
    pub fn load(path: &Path) -> Result<Self, ArchiveError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::parse("", path),
            Err(source) => Err(ArchiveError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses the `[retention]` section of settings text (`path` is for messages).
    ///
    /// # Errors
    /// [`ArchiveError::Config`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, ArchiveError> {
        let bad = |problem: String| ArchiveError::Config {
            path: path.to_owned(),
            problem,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        retention(raw.retention).map_err(bad)
    }
}

fn check_standards(list: &[String], at: &str) -> Result<(), String> {
    for s in list {
        if RetentionPreset::find(s).is_none() {
            return Err(format!(
                "{at}: unknown standard `{s}`; use {}",
                RetentionPreset::names()
            ));
        }
    }
    Ok(())
}

fn retention(raw: RawRetention) -> Result<RetentionConfig, String> {
    const MAX_DAYS: u64 = 36_500;
    let default = RetentionPolicy {
        hot_days: raw.hot_days.unwrap_or(365),
        archive_days: raw.archive_days.unwrap_or(1095),
        standards: raw
            .standards
            .unwrap_or_else(|| vec!["soc2".to_owned(), "iso27001".to_owned()]),
    };
    let check = |p: &RetentionPolicy, at: &str| -> Result<(), String> {
        if p.hot_days == 0 || p.hot_days > MAX_DAYS {
            return Err(format!("{at}: hot_days must be between 1 and {MAX_DAYS}"));
        }
        if p.archive_days > MAX_DAYS {
            return Err(format!(
                "{at}: archive_days must be at most {MAX_DAYS} (0: forever)"
            ));
        }
        check_standards(&p.standards, at)
    };
    check(&default, "[retention]")?;
    let mut tenants = std::collections::BTreeMap::new();
    for (name, p) in raw.tenants {
        let at = format!("[retention.tenants.{name}]");
        TenantId::parse(&name).map_err(|e| format!("{at}: {e}"))?;
        let policy = RetentionPolicy {
            hot_days: p.hot_days.unwrap_or(default.hot_days),
            archive_days: p.archive_days.unwrap_or(default.archive_days),
            standards: p.standards.unwrap_or_else(|| default.standards.clone()),
        };
        check(&policy, &at)?;
        tenants.insert(name, policy);
    }
    let segment_entries = raw.segment_entries.unwrap_or(500_000);
    if !(1..=10_000_000).contains(&segment_entries) {
        return Err("[retention] segment_entries must be between 1 and 10000000".to_owned());
    }
    let archive_url = raw.archive_url.unwrap_or_else(|| "archive".to_owned());
    if archive_url.trim().is_empty() {
        return Err("[retention] archive_url must not be empty".to_owned());
    }
    Ok(RetentionConfig {
        default,
        tenants,
        archive_url,
        segment_entries,
        run_every_hours: raw.run_every_hours.unwrap_or(24),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let p = Path::new("x.toml");
        let c = RetentionConfig::parse("[ledger]\ndefault_tenant = \"a\"\n", p).unwrap();
        assert_eq!(c.default.hot_days, 365);
        assert_eq!(c.archive_url, "archive");
        let e = RetentionConfig::parse("[retention]\nstandards = [\"sox\"]\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown standard `sox`"), "{e}");
        let e = RetentionConfig::parse("[retention]\nhot_dayz = 3\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hot_dayz"), "{e}");
    }
}
