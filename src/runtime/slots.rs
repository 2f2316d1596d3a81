//! Counter slots by identity, stable across reloads.
//!
//! An upstream keeps its slot while its id and address stay the same, a
//! listener while its name does; so a reload keeps the counters and health
//! of what did not change. A new identity takes a slot never used before
//! (its counters start at zero) until the region is full, then a freed one.
//! The supervisor assigns slots and sends them to every worker with the
//! config, so a worker started after several reloads agrees with the rest.

use std::collections::HashMap;

use crate::config::Config;
use crate::counters::{MAX_LISTENERS, MAX_UPSTREAMS};

/// The slot of every upstream and listener of one config generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slots {
    /// `upstreams[slot]` = (id, address) or free.
    upstreams: Vec<Option<(String, String)>>,
    /// `listeners[slot]` = name or free.
    listeners: Vec<Option<String>>,
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
        Ok(Slots {
            upstreams: assign(&previous.upstreams, upstreams, MAX_UPSTREAMS)
                .ok_or(SlotsFull("upstreams"))?,
            listeners: assign(&previous.listeners, listeners, MAX_LISTENERS)
                .ok_or(SlotsFull("listeners"))?,
        })
    }

    /// The slot of upstream `id` at `address`.
    pub fn upstream(&self, id: &str, address: &str) -> Option<usize> {
        self.upstreams
            .iter()
            .position(|u| u.as_ref().is_some_and(|(i, a)| i == id && a == address))
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
