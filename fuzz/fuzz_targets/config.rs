//! Configuration files: the service's `blackbox.toml` (server/config.rs, `ServerConfig::load`),
//! the data directory's `config.toml` (ledger/config.rs, `LedgerConfig::parse`), the export
//! settings (export/config.rs, `ExportConfig::load`) and the tenant map (ledger/tenant_map.rs,
//! `TenantMapFile::load`), each given the same arbitrary text.
//!
//! Must hold: nothing panics; an error is returned for what the loaders promise to refuse; and a
//! configuration that loads keeps the invariants the loaders check (limits at least 1, a
//! tenant's share within the whole, clock bounds within ten years, no field both raw and
//! personal, known retention standards, a record date that is a date; the empty text is a valid
//! export settings file). The two loaders that read a path are given a file in the temporary directory.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use blackbox_export::config::ExportConfig;
use blackbox_ledger::config::LedgerConfig;
use blackbox_ledger::tenant_map::TenantMapFile;
use blackbox_server::config::{Overrides, ServerConfig};
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("blackbox-fuzz-config-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(c) = LedgerConfig::parse(text, Path::new("config.toml")) {
        assert!(c.checkpoint_every_entries >= 1);
        assert!(c.checkpoint_every_ms >= 1_000 && c.checkpoint_every_ms <= 365 * 86_400_000);
        assert!(c.clock.max_ahead_ms >= 0 && c.clock.max_ahead_ms <= 3_650 * 86_400_000);
        assert!(c.clock.max_behind_ms >= 0 && c.clock.max_behind_ms <= 3_650 * 86_400_000);
        let r = &c.redaction;
        assert!(
            r.raw_fields
                .intersection(&r.personal_fields)
                .next()
                .is_none()
        );
        assert!(
            r.raw_fields
                .iter()
                .chain(&r.personal_fields)
                .all(|f| !f.is_empty() && !f.contains('.'))
        );
        assert_eq!(
            LedgerConfig::parse(text, Path::new("again.toml")).ok(),
            Some(c)
        );
    }

    let path = scratch();
    if std::fs::write(path, text).is_err() {
        return;
    }
    let overrides = Overrides {
        data_dir: Some(PathBuf::from("/nonexistent/blackbox-fuzz")),
        ..Overrides::default()
    };
    if let Ok(c) = ServerConfig::load(Some(path), &overrides) {
        assert!(c.body_limit >= 1 && c.max_events_per_request >= 1 && c.queue_capacity >= 1);
        assert!(c.rate_burst >= c.rate_per_second);
        assert!(c.unauthenticated_burst >= 1);
        assert!(
            c.tenant_ingest_bytes >= c.body_limit
                && c.tenant_ingest_bytes <= c.ingest_bytes_in_flight
        );
        assert!(u32::try_from(c.ingest_bytes_in_flight).is_ok());
        assert!(c.tenant_heavy_reads >= 1 && c.tenant_heavy_reads <= c.heavy_reads);
        assert!(c.tenant_streams >= 1 && c.tenant_streams <= c.streams);
        for d in [c.body_idle_timeout, c.body_deadline, c.header_timeout] {
            assert!(d.as_secs() >= 1);
        }
        assert_eq!(
            c.data_dir,
            PathBuf::from("/nonexistent/blackbox-fuzz"),
            "the flag wins"
        );
    }
    if let Ok(c) = ExportConfig::load(path) {
        // Every setting is optional (a report names what is missing); what is set is checked.
        assert!(c.source.is_some());
        for s in &c.retention.standards {
            assert!(blackbox_archive::settings::RetentionPreset::find(s).is_some());
            let _ = c.required_days(s);
        }
        let date = c.gdpr.record_date.trim();
        assert!(date.is_empty() || date.parse::<jiff::civil::Date>().is_ok());
        let _ = c.not_configured("soc2");
        let _ = c.not_configured("gdpr");
        for a in &c.gdpr.activities {
            let _ = a.covers("agent-1");
        }
    }
    if let Ok(m) = TenantMapFile::load(path) {
        let names = m.map().names();
        assert!(!names.is_empty());
        for (i, (name, url)) in m.databases().iter().enumerate() {
            assert_eq!(&names[i], name);
            assert_eq!(m.url_of(name).ok(), Some(url.as_str()));
            assert!(blackbox_store_pg::is_postgres_url(url));
            // A database's own service chain is kept there, whatever the tenants say.
            assert_eq!(m.map().shard_of(&format!("_blackbox.{name}")), Some(i));
        }
    }
});
