//! What a reload changes: listeners, rules and upstreams added, removed or
//! modified, as `sluice reload` prints it.

use std::collections::BTreeMap;

use crate::config::{Config, ListenerMode, RuleConfig};

/// One line per change, or "no changes".
pub fn describe(old: &Config, new: &Config) -> String {
    let mut lines = Vec::new();
    compare(
        "listener",
        &old.listeners.iter().map(|l| (l.name.clone(), l)).collect(),
        &new.listeners.iter().map(|l| (l.name.clone(), l)).collect(),
        &mut lines,
    );
    for listener in &new.listeners {
        let Some(before) = old.listeners.iter().find(|l| l.name == listener.name) else {
            continue;
        };
        if let (ListenerMode::Http(a), ListenerMode::Http(b)) = (&before.mode, &listener.mode) {
            compare(
                &format!("rule in {}", listener.name),
                &rules(&a.rules),
                &rules(&b.rules),
                &mut lines,
            );
        }
    }
    compare(
        "upstream",
        &old.upstreams.iter().map(|u| (u.id.clone(), u)).collect(),
        &new.upstreams.iter().map(|u| (u.id.clone(), u)).collect(),
        &mut lines,
    );
    if lines.is_empty() {
        "no changes\n".to_owned()
    } else {
        lines.join("\n") + "\n"
    }
}

fn rules(rules: &[RuleConfig]) -> BTreeMap<String, &RuleConfig> {
    rules
        .iter()
        .map(|r| {
            let host = r
                .host
                .as_deref()
                .map(|h| format!(" host {h}"))
                .unwrap_or_default();
            (format!("{}{host}", r.name.as_deref().unwrap_or(&r.path)), r)
        })
        .collect()
}

fn compare<T: PartialEq>(
    what: &str,
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
    lines: &mut Vec<String>,
) {
    for (key, value) in new {
        match old.get(key) {
            None => lines.push(format!("+ {what} {key}")),
            Some(before) if before != value => lines.push(format!("~ {what} {key}")),
            Some(_) => {}
        }
    }
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        lines.push(format!("- {what} {key}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Config {
        crate::config::parse(yaml, std::path::Path::new("t.yaml")).unwrap()
    }

    #[test]
    fn changes_are_listed() {
        let base = "upstreams:\n  - id: a\n    address: 127.0.0.1:1\n  - id: b\n    address: 127.0.0.1:2\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n      - path: /api\n        upstreams: [a]\n      - path: /*\n        upstreams: [b]\n";
        assert_eq!(describe(&parse(base), &parse(base)), "no changes\n");
        let changed = base
            .replace("address: 127.0.0.1:2", "address: 127.0.0.1:3")
            .replace(
                "      - path: /api\n        upstreams: [a]\n",
                "      - path: /v2\n        upstreams: [a]\n",
            )
            + "  - name: db\n    listen: 127.0.0.1:0\n    mode: tcp\n    upstreams: [a]\n";
        let text = describe(&parse(base), &parse(&changed));
        assert_eq!(
            text,
            "+ listener db\n~ listener web\n+ rule in web /v2\n- rule in web /api\n~ upstream b\n"
        );
    }
}
