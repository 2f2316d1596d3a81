//! Property-driven fuzzing of the parsers that take outside input, bounded
//! so it runs in every CI: config loading and header templates (the router
//! and the PROXY protocol parser have their own loops in their modules).
//! Nothing may panic; what is accepted must be well-formed.

use std::path::Path;

use proptest::prelude::*;
use sluice::runtime::headers::{HeaderTemplate, RequestVars};

/// YAML-ish text: keys, colons, dashes, brackets, numbers, units and the
/// odd control character, so the generator reaches the validator.
fn yamlish() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "upstreams:",
        "listeners:",
        "defaults:",
        "- id: a",
        "- name: web",
        "address: 127.0.0.1:1",
        "listen: 0",
        "rules:",
        "- path: /*",
        "upstreams: [a]",
        "mode: tcp",
        "health_check:",
        "kind: http",
        "interval: 1s",
        "weight: 0",
        "&x",
        "*x",
        "<<: *x",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "'",
        "---",
        "\t",
        "  ",
        "\n",
        "yes",
        "1e99",
        "99999999999999999999",
        "-1",
        "\u{0}",
        "é",
        ":",
        "#",
        "?",
        "|",
        ">",
    ]);
    prop::collection::vec(tokens, 0..60).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn config_loading_never_panics(text in yamlish()) {
        let _ = sluice::config::parse(&text, Path::new("fuzz.yaml"));
    }

    #[test]
    fn config_loading_never_panics_on_any_text(text in ".{0,400}") {
        let _ = sluice::config::parse(&text, Path::new("fuzz.yaml"));
    }

    #[test]
    fn mutated_examples_never_panic(index in 0usize..64, cut in 0usize..4000, insert in ".{0,8}") {
        let examples: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        let mut text = examples[index % examples.len()].clone();
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, &insert);
        let _ = sluice::config::parse(&text, Path::new("fuzz.yaml"));
    }

    #[test]
    fn header_templates_never_panic_or_emit_line_breaks(value in ".{0,60}", host in ".{0,40}") {
        let name = http::header::HeaderName::from_static("x-fuzz");
        if let Ok(template) = HeaderTemplate::compile(name, &value) {
            let vars = RequestVars { ip: "10.0.0.1".parse().unwrap(), port: 1, host: Some(&host), scheme: "http", request_id: "id" };
            let rendered = template.render(&vars);
            prop_assert!(!rendered.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
        }
    }
}
