//! Messages for unknown keys: "did you mean" for a misspelling, "belongs
//! on" for a key that is valid elsewhere in the file.

use super::raw::{
    RawAdmin, RawConfig, RawDefaults, RawHeader, RawHealthCheck, RawListener, RawRule, RawUpstream,
    fields,
};
use super::suggest::did_you_mean;

/// A place in the file that takes keys.
struct Place {
    /// Its node path with list indices removed (`listeners[].rules[]`).
    pattern: &'static str,
    /// How messages name it (`in rule`).
    name: &'static str,
    /// How a "belongs" hint names it (`on a rule`).
    hint: &'static str,
    /// The keys it accepts.
    keys: &'static [&'static str],
}

/// Every place that takes keys.
fn places() -> [Place; 9] {
    [
        Place {
            pattern: "",
            name: "at the top level",
            hint: "at the top level",
            keys: fields::<RawConfig>(),
        },
        Place {
            pattern: "admin",
            name: "in `admin`",
            hint: "in `admin`",
            keys: fields::<RawAdmin>(),
        },
        Place {
            pattern: "defaults",
            name: "in `defaults`",
            hint: "in `defaults`",
            keys: fields::<RawDefaults>(),
        },
        Place {
            pattern: "defaults.health_check",
            name: "in health_check",
            hint: "in a `health_check`",
            keys: fields::<RawHealthCheck>(),
        },
        Place {
            pattern: "upstreams[]",
            name: "in upstream",
            hint: "on an upstream",
            keys: fields::<RawUpstream>(),
        },
        Place {
            pattern: "upstreams[].health_check",
            name: "in health_check",
            hint: "in a `health_check`",
            keys: fields::<RawHealthCheck>(),
        },
        Place {
            pattern: "listeners[]",
            name: "in listener",
            hint: "on a listener",
            keys: fields::<RawListener>(),
        },
        Place {
            pattern: "listeners[].rules[]",
            name: "in rule",
            hint: "on a rule",
            keys: fields::<RawRule>(),
        },
        Place {
            pattern: "listeners[].headers[]",
            name: "in header",
            hint: "in a header",
            keys: fields::<RawHeader>(),
        },
    ]
}

/// Removes list indices from a node path: `listeners[0].rules[2]` →
/// `listeners[].rules[]`.
fn pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// The message for the unknown key at node path `path`.
pub fn message(path: &str) -> String {
    let parent = super::yaml::parent(path);
    let key = path
        .strip_prefix(parent)
        .unwrap_or(path)
        .trim_start_matches('.');
    let places = places();
    let here_pattern = pattern(parent);
    let Some(here) = places.iter().find(|p| p.pattern == here_pattern) else {
        return format!("unknown key `{key}`");
    };
    let mut elsewhere: Vec<&str> = Vec::new();
    for place in &places {
        if place.name != here.name && place.keys.contains(&key) && !elsewhere.contains(&place.hint)
        {
            elsewhere.push(place.hint);
        }
    }
    if let Some((last, rest)) = elsewhere.split_last() {
        let list = if rest.is_empty() {
            (*last).to_owned()
        } else {
            format!("{} or {last}", rest.join(", "))
        };
        return format!("unknown key `{key}` {}: `{key}` belongs {list}", here.name);
    }
    let hint = did_you_mean(key, here.keys.iter().copied());
    format!("unknown key `{key}` {}{hint}", here.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelled_key_gets_a_suggestion() {
        assert_eq!(
            message("listeners[0].rules[1].pth"),
            "unknown key `pth` in rule; did you mean `path`?"
        );
        assert_eq!(
            message("listeners[0].nmae"),
            "unknown key `nmae` in listener; did you mean `name`?"
        );
        assert_eq!(message("zzz"), "unknown key `zzz` at the top level");
    }

    #[test]
    fn misplaced_key_says_where_it_belongs() {
        assert_eq!(
            message("listeners[0].rules[0].weight"),
            "unknown key `weight` in rule: `weight` belongs on an upstream"
        );
        assert_eq!(
            message("listeners[1].health_check"),
            "unknown key `health_check` in listener: `health_check` belongs in `defaults` or on an upstream"
        );
    }

    #[test]
    fn field_lists_come_from_the_structs() {
        assert!(fields::<RawRule>().contains(&"path"));
        assert!(fields::<RawRule>().contains(&"max_body_size"));
        assert!(fields::<RawUpstream>().contains(&"weight"));
    }
}
