//! No manifest panics the parser or `resolve`: random text, and the example
//! with one value replaced by random text, a huge number or nothing, either
//! resolve or fail with an error. (Found this way before: overflowing
//! durations and validity periods.) Runs 2,048 cases per property in CI.

use gantry_controller::api::TenantControlPlane;
use gantry_controller::resolve;
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../examples/tenant-a.yaml");

/// The example's lines of the form `key: value`, as (line index, indent + key).
fn value_lines() -> Vec<(usize, String)> {
    EXAMPLE
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let (key, value) = line.split_once(": ")?;
            (!line.trim_start().starts_with('#') && !value.trim().is_empty())
                .then(|| (i, key.to_string()))
        })
        .collect()
}

/// Parses and, if that works, validates and resolves: must not panic.
fn parse_and_resolve(text: &str) {
    let Ok(manifest) = TenantControlPlane::from_yaml(text) else {
        return;
    };
    let _ = resolve::validate(&manifest);
    if let Ok(endpoint) = resolve::offline_endpoint(&manifest) {
        let _ = resolve::resolve(
            &manifest,
            &endpoint,
            gantry_pki::BootstrapToken::generate(),
            None,
            time::OffsetDateTime::now_utc(),
            &gantry_renderer::ServiceCluster::default(),
        );
    }
}

fn replacement() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>(),
        // Durations and counts near and past the integer limits.
        4 => "[1-9][0-9]{12,24}[hms]?",
        1 => "[0-9]{1,30}[hms]?",
        1 => "-?[0-9]{1,25}",
        1 => "[a-zA-Z0-9_./:@ -]{0,40}",
        1 => Just(String::new()),
        1 => Just("\"\"".into()),
        1 => Just("[]".into()),
        1 => Just("{}".into()),
        1 => Just("null".into()),
        1 => Just("99999999999999999999999h".into()),
        1 => Just("1.7976931348623157e308".into()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in any::<String>()) {
        parse_and_resolve(&text);
    }

    #[test]
    fn one_changed_value_never_panics(which in any::<prop::sample::Index>(), value in replacement()) {
        let lines = value_lines();
        let (index, key) = &lines[which.index(lines.len())];
        let changed: Vec<String> = EXAMPLE
            .lines()
            .enumerate()
            .map(|(i, line)| if i == *index { format!("{key}: {value}") } else { line.to_string() })
            .collect();
        parse_and_resolve(&changed.join("\n"));
    }
}
