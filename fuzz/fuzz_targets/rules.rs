//! The rules file (detect/rules.rs, docs/RULES.md): `RuleSet::parse` on arbitrary text must
//! never panic (serde-saphyr reads it with its input budgets); an error names a line and a
//! column inside the text, or none. A rule set that parses must be usable: its time windows
//! print and parse back to equal windows, its patterns scan any text, and a detector built from
//! it evaluates the example session (examples/session.ndjson) without panicking, firing only
//! enabled rules of the set, by their own names.
#![no_main]

use std::sync::Arc;

use blackbox_core::entry::RedactionPolicy;
use blackbox_core::event::normalize_inspect;
use blackbox_core::origin::Origin;
use blackbox_detect::patterns::Hits;
use blackbox_detect::rules::Kind;
use blackbox_detect::timewindow::TimeWindow;
use blackbox_detect::{Detector, Features, Observation, RuleSet};
use libfuzzer_sys::fuzz_target;

const SESSION: &str = include_str!("../../examples/session.ndjson");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rules = match RuleSet::parse(text) {
        Ok(r) => r,
        Err(e) => {
            // YAML breaks lines at LF, CRLF and a lone CR.
            let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count() as u64;
            if let Some(l) = e.line {
                assert!(
                    l >= 1 && l <= lines + 1,
                    "error line {l} outside a text of {lines} lines"
                );
            }
            let _ = e.render("rules.yaml");
            return;
        }
    };
    for r in &rules.rules {
        if let Kind::TimeWindow { window, .. } = &r.kind {
            let printed = window.to_string();
            let again = TimeWindow::parse(&printed).expect("a window's own text parses");
            assert_eq!(&again, window, "{printed}");
        }
    }
    let mut hits = Hits::new();
    rules.patterns.scan_str(text, &mut hits);
    for (rule, _) in hits.iter() {
        assert!(rule < rules.rules.len());
    }

    let rules = Arc::new(rules);
    let mut detector = Detector::new(Arc::clone(&rules));
    let mut out = Vec::new();
    let policy = RedactionPolicy::default();
    // The session, twice: the second pass a day later, so baselines and windows have history.
    for (round, line) in SESSION.lines().chain(SESSION.lines()).enumerate() {
        let Ok(node) = blackbox_core::json::read(line.as_bytes()) else {
            continue;
        };
        let mut features = Features::default();
        let Ok(ev) = normalize_inspect(node, &policy, &Origin::Service, &mut |t, payload| {
            features = Features::extract(t, payload, &rules.patterns);
        }) else {
            continue;
        };
        let ts = ev.timestamp_ms.unwrap_or(0) + if round >= 8 { 86_400_000 } else { 0 };
        let ob = Observation {
            tenant: ev.tenant_id.as_ref().map_or("default", |t| t.as_str()),
            agent: ev.agent_id.as_str(),
            session: ev.session_id.as_str(),
            event_type: ev.event_type.as_str(),
            tool: ev.tool.as_deref(),
            ts_ms: ts,
            features: &features,
        };
        out.clear();
        detector.observe(&ob, &mut out);
        for f in &out {
            let rule = rules
                .rules
                .get(f.rule)
                .expect("a firing names a rule of the set");
            assert_eq!(f.name, rule.name);
            assert!(rule.enabled, "the disabled rule {} fired", rule.name);
            assert_eq!(f.action, rule.action);
        }
        let _ = detector.gate(ob.tenant, ob.agent, ts);
    }
    let _ = detector.agents(None, 1_776_300_000_000);
});
