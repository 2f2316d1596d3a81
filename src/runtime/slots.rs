//! Counter slots by identity, stable across reloads.
//!
//! An upstream keeps its slot while its id and address stay the same, a
//! listener while its name does; so a reload keeps the counters and health
//! of what did not change. A new identity takes a slot never used before
//! (its counters start at zero) until the region is full, then a freed one.
//! The supervisor assigns slots and sends them to every worker with the
//! config, so a worker started after several reloads agrees with the rest.
//!
//! Per-rule metrics use two more kinds of slot, keyed by their metric
//! labels so a series keeps counting across reloads: a *route* is
//! (listener, rule label), with one `""` route per HTTP listener for
//! requests no rule matched; a *pair* is (listener, rule label, upstream
//! id), with upstream `""` for responses sluice made itself. Rules of one
//! listener that share a label share their route and pairs (they are the
//! same series).

use std::collections::{BTreeSet, HashMap};

use crate::config::{Config, ListenerMode, RuleAction, RuleConfig};
use crate::counters::{MAX_LISTENERS, MAX_PAIRS, MAX_ROUTES, MAX_UPSTREAMS};

/// (listener, rule label): the identity of a route.
pub type RouteKey = (String, String);
/// (listener, rule label, upstream id): the identity of a pair.
pub type PairKey = (String, String, String);

/// The slot of every upstream, listener, route and pair of one config
/// generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slots {
    /// `upstreams[slot]` = (id, address) or free.
    upstreams: Vec<Option<(String, String)>>,
    /// `listeners[slot]` = name or free.
    listeners: Vec<Option<String>>,
    /// `routes[slot]` = (listener, rule label) or free.
    routes: Vec<Option<RouteKey>>,
    /// `pairs[slot]` = (listener, rule label, upstream id) or free.
    pairs: Vec<Option<PairKey>>,
}

/// The metric label of a rule: its `name`, else its path pattern.
pub fn rule_label(rule: &RuleConfig) -> String {
    rule.name.clone().unwrap_or_else(|| rule.path.clone())
}

/// The routes and pairs a config needs, in config order.
fn routes_and_pairs(config: &Config) -> (Vec<RouteKey>, Vec<PairKey>) {
    let mut routes = Vec::new();
    let mut pairs = Vec::new();
    for listener in &config.listeners {
        let ListenerMode::Http(http) = &listener.mode else {
            continue;
        };
        let mut labels: Vec<(String, BTreeSet<String>)> = vec![(String::new(), BTreeSet::new())];
        for rule in &http.rules {
            let label = rule_label(rule);
            let index = match labels.iter().position(|(l, _)| *l == label) {
                Some(index) => index,
                None => {
                    labels.push((label, BTreeSet::new()));
                    labels.len() - 1
                }
            };
            if let RuleAction::Proxy { pool, .. } = &rule.action {
                labels[index].1.extend(pool.upstreams.iter().cloned());
            }
        }
        for (label, upstreams) in labels {
            pairs.push((listener.name.clone(), label.clone(), String::new()));
            for upstream in upstreams {
                pairs.push((listener.name.clone(), label.clone(), upstream));
            }
            routes.push((listener.name.clone(), label));
        }
    }
    (routes, pairs)
}

/// Route and pair lookups by identity, built once per compile.
#[derive(Debug, Default)]
pub struct SlotIndex {
    routes: HashMap<RouteKey, usize>,
    pairs: HashMap<PairKey, usize>,
}

impl SlotIndex {
    /// The slot of route (listener, label).
    pub fn route(&self, listener: &str, label: &str) -> Option<usize> {
        self.routes
            .get(&(listener.to_owned(), label.to_owned()))
            .copied()
    }

    /// The slot of pair (listener, label, upstream id).
    pub fn pair(&self, listener: &str, label: &str, upstream: &str) -> Option<usize> {
        self.pairs
            .get(&(listener.to_owned(), label.to_owned(), upstream.to_owned()))
            .copied()
    }
}

/// More listeners or upstreams than the region holds.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("too many {0} for the counter region")]
pub struct SlotsFull(&'static str);

impl Slots {
    /// Slots for `config`, keeping those of `previous` for every identity
    /// that is still there.
    pub fn assign(config: &Config, previous: &Slots) -> Result<Slots, SlotsFull> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| (u.id.clone(), u.address.to_string()))
            .collect();
        let listeners = config.listeners.iter().map(|l| l.name.clone()).collect();
        let (routes, pairs) = routes_and_pairs(config);
        Ok(Slots {
            upstreams: assign(&previous.upstreams, upstreams, MAX_UPSTREAMS)
                .ok_or(SlotsFull("upstreams"))?,
            listeners: assign(&previous.listeners, listeners, MAX_LISTENERS)
                .ok_or(SlotsFull("listeners"))?,
            routes: assign(&previous.routes, routes, MAX_ROUTES).ok_or(SlotsFull("rules"))?,
            pairs: assign(&previous.pairs, pairs, MAX_PAIRS)
                .ok_or(SlotsFull("rule and upstream pairs"))?,
        })
    }

    /// Route and pair lookups for compiling.
    pub fn index(&self) -> SlotIndex {
        fn index<K: Clone + Eq + std::hash::Hash>(table: &[Option<K>]) -> HashMap<K, usize> {
            table
                .iter()
                .enumerate()
                .filter_map(|(slot, key)| key.clone().map(|key| (key, slot)))
                .collect()
        }
        SlotIndex {
            routes: index(&self.routes),
            pairs: index(&self.pairs),
        }
    }

    /// Route identities by slot (metrics, and sending to workers).
    pub fn route_table(&self) -> &[Option<RouteKey>] {
        &self.routes
    }

    /// Pair identities by slot (metrics, and sending to workers).
    pub fn pair_table(&self) -> &[Option<PairKey>] {
        &self.pairs
    }

    /// These slots with the route and pair tables received from the
    /// supervisor.
    pub fn with_routes(
        mut self,
        routes: Vec<Option<RouteKey>>,
        pairs: Vec<Option<PairKey>>,
    ) -> Slots {
        self.routes = routes;
        self.pairs = pairs;
        self
    }

    /// The slot of upstream `id` at `address`.
    pub fn upstream(&self, id: &str, address: &str) -> Option<usize> {
        self.upstreams
            .iter()
            .position(|u| u.as_ref().is_some_and(|(i, a)| i == id && a == address))
    }

    /// The upstream slots that hold an identity `previous` did not have
    /// there: new upstreams, and upstreams at a new address.
    pub fn new_upstream_slots(&self, previous: &Slots) -> Vec<usize> {
        self.upstreams
            .iter()
            .enumerate()
            .filter(|(slot, identity)| {
                identity.is_some() && previous.upstreams.get(*slot) != Some(*identity)
            })
            .map(|(slot, _)| slot)
            .collect()
    }

    /// (old slot, new slot) of every upstream id that `previous` had at
    /// another address: the reload moved it to a new slot. The region's
    /// slots were all used once, the new one may be the old one.
    pub fn moved_upstreams(&self, previous: &Slots) -> Vec<(usize, usize)> {
        self.upstreams
            .iter()
            .enumerate()
            .filter_map(|(to, identity)| {
                let (id, address) = identity.as_ref()?;
                let from = previous
                    .upstreams
                    .iter()
                    .position(|old| old.as_ref().is_some_and(|(i, a)| i == id && a != address))?;
                Some((from, to))
            })
            .collect()
    }

    /// The slot of listener `name`.
    pub fn listener(&self, name: &str) -> Option<usize> {
        self.listeners
            .iter()
            .position(|l| l.as_deref() == Some(name))
    }

    /// Upstream identities by slot, for sending to workers.
    pub fn upstream_table(&self) -> &[Option<(String, String)>] {
        &self.upstreams
    }

    /// Listener names by slot, for sending to workers.
    pub fn listener_table(&self) -> &[Option<String>] {
        &self.listeners
    }

    /// Rebuilds slots received from the supervisor.
    pub fn from_tables(
        upstreams: Vec<Option<(String, String)>>,
        listeners: Vec<Option<String>>,
    ) -> Slots {
        Slots {
            upstreams,
            listeners,
            routes: Vec::new(),
            pairs: Vec::new(),
        }
    }
}

/// Keeps the slots of identities still present, frees the others, and
/// gives new identities never-used slots first.
fn assign<T: Clone + Eq + std::hash::Hash>(
    previous: &[Option<T>],
    wanted: Vec<T>,
    max: usize,
) -> Option<Vec<Option<T>>> {
    let keep: HashMap<&T, usize> = previous
        .iter()
        .enumerate()
        .filter_map(|(slot, id)| id.as_ref().map(|id| (id, slot)))
        .collect();
    let mut table: Vec<Option<T>> = vec![None; previous.len()];
    let mut fresh = Vec::new();
    for id in wanted {
        match keep.get(&id) {
            Some(&slot) => table[slot] = Some(id),
            None => fresh.push(id),
        }
    }
    for id in fresh {
        if table.len() < max {
            table.push(Some(id));
        } else {
            let free = table.iter().position(Option::is_none)?;
            table[free] = Some(id);
        }
    }
    Some(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rules: &str) -> Config {
        config_with_b_at(rules, "127.0.0.1:2")
    }

    fn config_with_b_at(rules: &str, b: &str) -> Config {
        let yaml = format!(
            "upstreams:\n  - {{ id: a, address: 127.0.0.1:1 }}\n  - {{ id: b, address: {b} }}\n\
             listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    rules:\n{rules}\
             \n  - name: db\n    listen: 127.0.0.1:0\n    mode: tcp\n    upstreams: [a]\n"
        );
        crate::config::parse(&yaml, std::path::Path::new("/tmp/sluice.yaml"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn routes_and_pairs_follow_rule_labels_across_reloads() {
        let first = config(
            "      - { path: /api, upstreams: [a, b] }\n      - { path: /*, name: site, upstreams: [b] }\n      - { path: /x, name: site, upstreams: [a] }",
        );
        let slots = Slots::assign(&first, &Slots::default()).unwrap();
        let index = slots.index();
        let routes: Vec<_> = slots.route_table().iter().flatten().cloned().collect();
        let route = |l: &str, r: &str| (l.to_owned(), r.to_owned());
        assert_eq!(
            routes,
            [route("web", ""), route("web", "/api"), route("web", "site")],
            "one route per label, a no-rule route, none for TCP"
        );
        let site_a = index.pair("web", "site", "a").unwrap();
        assert!(index.pair("web", "site", "b").is_some());
        assert!(index.pair("web", "site", "").is_some());
        assert!(index.pair("web", "", "").is_some());
        assert!(index.pair("web", "", "a").is_none());
        assert_eq!(slots.pair_table().iter().flatten().count(), 7);

        let second = config("      - { path: /*, name: site, upstreams: [a] }");
        let again = Slots::assign(&second, &slots).unwrap();
        let index2 = again.index();
        assert_eq!(index2.pair("web", "site", "a"), Some(site_a), "kept");
        assert_eq!(index2.route("web", "site"), index.route("web", "site"));
        assert!(index2.route("web", "/api").is_none(), "freed");
        assert!(index2.pair("web", "site", "b").is_none(), "freed");
    }

    #[test]
    fn an_upstream_whose_address_changed_is_reported_moved() {
        let first = config("      - { path: /*, upstreams: [b] }");
        let slots = Slots::assign(&first, &Slots::default()).unwrap();
        let moved_b = config_with_b_at("      - { path: /*, upstreams: [b] }", "127.0.0.1:3");
        let again = Slots::assign(&moved_b, &slots).unwrap();
        let old = slots.upstream("b", "127.0.0.1:2").unwrap();
        let new = again.upstream("b", "127.0.0.1:3").unwrap();
        assert_ne!(old, new);
        assert_eq!(again.moved_upstreams(&slots), [(old, new)]);
        assert_eq!(slots.moved_upstreams(&slots), [], "nothing moved");
    }

    #[test]
    fn new_identities_and_moves_onto_the_same_slot_are_seen() {
        let identity = |id: &str, address: &str| Some((id.to_owned(), address.to_owned()));
        let before = Slots::from_tables(
            vec![
                identity("b", "10.0.0.1:2"),
                identity("a", "10.0.0.1:1"),
                None,
            ],
            Vec::new(),
        );
        // A full region hands b's freed slot back to b at its new address,
        // and slot 2 to a new upstream.
        let after = Slots::from_tables(
            vec![
                identity("b", "10.0.0.1:3"),
                identity("a", "10.0.0.1:1"),
                identity("c", "10.0.0.1:4"),
            ],
            Vec::new(),
        );
        assert_eq!(after.moved_upstreams(&before), [(0, 0)]);
        assert_eq!(after.new_upstream_slots(&before), [0, 2]);
        assert_eq!(after.new_upstream_slots(&after), [] as [usize; 0]);
    }

    #[test]
    fn kept_identities_keep_their_slots_and_new_ones_get_fresh_slots() {
        let first = assign(&[], vec!["a", "b", "c"], 10).unwrap();
        assert_eq!(first, [Some("a"), Some("b"), Some("c")]);
        let second = assign(&first, vec!["c", "d", "a"], 10).unwrap();
        assert_eq!(second, [Some("a"), None, Some("c"), Some("d")]);
        let full = assign(&second, vec!["a", "c", "d", "e"], 4).unwrap();
        assert_eq!(full, [Some("a"), Some("e"), Some("c"), Some("d")]);
        assert!(assign(&full, vec!["a", "c", "d", "e", "f"], 4).is_none());
    }
}
