//! What a reload changes: the top-level settings, and listeners, rules
//! and upstreams added, removed or modified, as `sluice reload` prints it.

use std::collections::BTreeMap;

use crate::config::{Config, ListenerMode, RuleConfig};

/// One line per change, or "no changes". `workers` is (running, wanted
/// by `new`): a reload does not change how many workers run.
pub fn describe(old: &Config, new: &Config, workers: (usize, usize)) -> String {
    let mut lines = settings(old, new, workers);
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

/// Changes of the top-level settings, saying which wait for a restart.
fn settings(old: &Config, new: &Config, (running, wanted): (usize, usize)) -> Vec<String> {
    let mut lines = Vec::new();
    if running != wanted {
        lines.push(format!(
            "! workers: {wanted} configured, {running} running until a restart"
        ));
    }
    if old.user != new.user {
        lines.push(format!(
            "! user: workers started from now on run as {}; restart to apply it to all",
            new.user.as_deref().unwrap_or("the supervisor's user")
        ));
    }
    if old.admin != new.admin {
        lines.push(match (&old.admin, &new.admin) {
            (None, Some(admin)) => format!("+ admin {}", admin.listen),
            (Some(_), Some(admin)) => format!("~ admin {}", admin.listen),
            (_, None) => "- admin".to_owned(),
        });
    }
    if old.drain_timeout != new.drain_timeout {
        lines.push(format!("~ drain_timeout {:?}", new.drain_timeout));
    }
    lines
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
        assert_eq!(describe(&parse(base), &parse(base), (1, 1)), "no changes\n");
        let changed = base
            .replace("address: 127.0.0.1:2", "address: 127.0.0.1:3")
            .replace(
                "      - path: /api\n        upstreams: [a]\n",
                "      - path: /v2\n        upstreams: [a]\n",
            )
            + "  - name: db\n    listen: 127.0.0.1:0\n    mode: tcp\n    upstreams: [a]\n";
        let text = describe(&parse(base), &parse(&changed), (1, 1));
        assert_eq!(
            text,
            "+ listener db\n~ listener web\n+ rule in web /v2\n- rule in web /api\n~ upstream b\n"
        );
    }

    #[test]
    fn top_level_settings_are_listed_and_restart_ones_flagged() {
        let base = "upstreams:\n  - id: a\n    address: 127.0.0.1:1\nlisteners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules: [{ upstreams: [a] }]\n";
        let changed = format!(
            "workers: 3\nuser: nobody\ndrain_timeout: 5s\nadmin: {{ listen: 127.0.0.1:9999 }}\n{base}"
        );
        assert_eq!(
            describe(&parse(base), &parse(&changed), (1, 3)),
            "! workers: 3 configured, 1 running until a restart\n\
             ! user: workers started from now on run as nobody; restart to apply it to all\n\
             + admin 127.0.0.1:9999\n~ drain_timeout 5s\n"
        );
        let admin = "admin: { listen: 127.0.0.1:9999 }\n";
        assert_eq!(
            describe(&parse(base), &parse(&format!("{admin}{base}")), (1, 1)),
            "+ admin 127.0.0.1:9999\n"
        );
        assert_eq!(
            describe(&parse(&changed), &parse(base), (1, 1)),
            "! user: workers started from now on run as the supervisor's user; restart to apply it to all\n\
             - admin\n~ drain_timeout 30s\n"
        );
    }
}
