//! A line of a labelled corpus (`blackbox rules test --corpus`, detect/evaluate.rs): `Sample::parse`
//! on arbitrary text never panics and either refuses the line with a reason or gives a sample
//! whose label is attack or benign and whose arguments are an object; the sample is then
//! decided with the recommended pack, and every evasion trick applied to its text gives an
//! object of string arguments that is decided too.
#![no_main]

use std::sync::{Arc, LazyLock};

use blackbox_detect::RuleSet;
use blackbox_detect::evaluate::{Evaluator, Label, Sample, TRICKS, obfuscate};
use libfuzzer_sys::fuzz_target;

static PACK: LazyLock<Arc<RuleSet>> = LazyLock::new(|| {
    Arc::new(
        RuleSet::parse(include_str!("../../examples/recommended-rules.yaml"))
            .expect("the recommended pack loads"),
    )
});

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let sample = match Sample::parse(line, "fuzz:1".into()) {
        Ok(Some(s)) => s,
        Ok(None) => {
            assert!(line.trim().is_empty());
            return;
        }
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    assert!(matches!(sample.label, Label::Attack | Label::Benign));
    assert!(sample.arguments.is_object());
    let mut ev = Evaluator::new(Arc::clone(&PACK));
    let _ = ev.decide(&sample.tool, &sample.arguments);
    let text: String = sample
        .arguments
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    for trick in TRICKS {
        let args = obfuscate(trick, &text);
        assert!(args.as_object().is_some_and(|m| m.values().all(|v| v.is_string())));
        let _ = ev.decide(&sample.tool, &args);
    }
});
