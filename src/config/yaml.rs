//! The YAML layer: deserializing raw structs with `yaml_serde`, and a
//! position index built from `saphyr-parser` events.
//!
//! Why two parsers: `yaml_serde` (the maintained continuation of
//! `serde_yaml`) gives typed values but no positions for them, and every
//! config error must point at a line and column. The index maps each node
//! path (`listeners[0].rules[1].upstreams[0]`) to where its key and value
//! start. Building it also rejects what a config file never needs and an
//! attacker might send: aliases (billion laughs), very deep nesting,
//! duplicate keys, several documents.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde::de::DeserializeOwned;

/// Deepest nesting accepted; a real config is about six levels deep.
const MAX_DEPTH: usize = 64;

/// Most nodes accepted in one file; a generous bound against giant inputs.
const MAX_NODES: usize = 1_000_000;

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Line, 1-based.
    pub line: usize,
    /// Column in characters, 1-based.
    pub column: usize,
}

/// A problem found by the YAML layer, with its position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pos:?}: {message}")]
pub struct YamlError {
    /// Where the problem is.
    pub pos: Pos,
    /// One-line reason.
    pub message: String,
}

/// Deserializes `text` into `T` with `yaml_serde`, the only place that
/// crate is called. Keys `T` does not know are ignored by serde and
/// returned as node paths (`listeners[0].pth`), so the caller reports
/// every unknown key at once instead of stopping at the first.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<(T, Vec<String>), YamlError> {
    let mut unknown = Vec::new();
    let deserializer = yaml_serde::Deserializer::from_str(text);
    let value = serde_ignored::deserialize(deserializer, |path| unknown.push(ignored_path(&path)))
        .map_err(|err| {
            let pos = err
                .location()
                .map(|loc| Pos {
                    line: loc.line().max(1),
                    column: loc.column().max(1),
                })
                .unwrap_or(Pos { line: 1, column: 1 });
            let full = err.to_string();
            // yaml_serde appends " at line L column C"; the position is ours to print.
            let message = tidy(full.split(" at line ").next().unwrap_or(&full));
            YamlError { pos, message }
        })?;
    Ok((value, unknown))
}

/// Rewords serde's type errors for config authors:
/// `listeners: invalid type: map, expected a sequence` becomes
/// `` `listeners` must be a list, found a map``.
fn tidy(message: &str) -> String {
    if message == "recursion limit exceeded" {
        return "nesting too deep".to_owned();
    }
    let Some((path, rest)) = message.split_once(": invalid type: ") else {
        return message.to_owned();
    };
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return message.to_owned();
    };
    let plain = |what: &str| -> String {
        match what {
            "map" => "a map".to_owned(),
            "sequence" | "a sequence" => "a list".to_owned(),
            "unit value" => "nothing".to_owned(),
            w if w.starts_with("struct ") => "a map".to_owned(),
            w if w.starts_with("sequence") => "a list".to_owned(),
            w => w.to_owned(),
        }
    };
    format!(
        "`{path}` must be {}, found {}",
        plain(expected),
        plain(found)
    )
}

/// Converts a `serde_ignored` path into the index's path syntax.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => join(&ignored_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// The path of `key` inside the map at `parent`.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The path of item `index` inside the list at `parent`.
pub fn item(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The parent of a node path (`a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``).
pub fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(at) => &path[..at],
        None => "",
    }
}

/// What the index knows about one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Node {
    /// Where the value starts.
    value: Pos,
    /// Where its key starts, for a map entry.
    key: Option<Pos>,
    /// Whether the value is an unquoted scalar (`yes` vs `"yes"`).
    plain: bool,
}

/// Where every node of a YAML document is, by node path.
#[derive(Debug, Default)]
pub struct Index {
    /// Every node by path (`listeners[0].rules[1].path`).
    nodes: HashMap<String, Node>,
    /// Kind of the root node, if the document has one.
    root: Option<RootKind>,
}

/// What the top of the document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootKind {
    /// A map: what a config file must be.
    Map,
    /// A list.
    List,
    /// A single value.
    Scalar,
}

/// One open collection while walking the events.
enum Frame {
    /// A map being read.
    Map {
        /// Its node path.
        path: String,
        /// The key whose value comes next; `None` when a key comes next.
        key: Option<String>,
        /// Keys read so far, to refuse duplicates.
        seen: HashSet<String>,
    },
    /// A list being read.
    Seq {
        /// Its node path.
        path: String,
        /// Index of the next item.
        next: usize,
    },
}

/// Where an event starts, 1-based.
fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

impl Index {
    /// Builds the index, or returns the problems that make the document
    /// unfit for a config file (syntax errors, aliases, duplicate keys,
    /// excessive nesting or size), all of them where possible.
    pub fn build(text: &str) -> Result<Index, Vec<YamlError>> {
        let mut index = Index::default();
        let mut errors = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut documents = 0;
        let mut count = 0usize;
        for event in Parser::new_from_str(text) {
            let (event, span) = match event {
                Ok(ok) => ok,
                Err(err) => {
                    let mark = err.marker();
                    errors.push(YamlError {
                        pos: Pos {
                            line: mark.line(),
                            column: mark.col() + 1,
                        },
                        message: match err.info() {
                            "recursion limit exceeded" => "nesting too deep".to_owned(),
                            // Marked so the caller can prefer yaml_serde's wording.
                            info => format!("syntax: {info}"),
                        },
                    });
                    return Err(errors);
                }
            };
            count += 1;
            if count > MAX_NODES {
                errors.push(YamlError {
                    pos: pos(&span),
                    message: "config file too large".into(),
                });
                return Err(errors);
            }
            let at = pos(&span);
            match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        errors.push(YamlError {
                            pos: at,
                            message: "a config file holds one YAML document; found a second `---`"
                                .into(),
                        });
                        return Err(errors);
                    }
                }
                Event::Alias(_) => {
                    // Refused outright: expanding aliases is how "billion laughs"
                    // makes a few lines into gigabytes.
                    errors.push(YamlError {
                        pos: at,
                        message: "YAML aliases (`*name`) are not supported in a config file".into(),
                    });
                    return Err(errors);
                }
                Event::Scalar(value, style, _, _) => {
                    if let Some(Frame::Map {
                        path,
                        key: key @ None,
                        seen,
                    }) = stack.last_mut()
                    {
                        let full = join(path, &value);
                        if !seen.insert(value.to_string()) {
                            errors.push(YamlError {
                                pos: at,
                                message: format!("duplicate key `{value}`"),
                            });
                        }
                        index.nodes.insert(
                            full,
                            Node {
                                value: at,
                                key: Some(at),
                                plain: false,
                            },
                        );
                        *key = Some(value.into_owned());
                        continue;
                    }
                    index.enter(&mut stack, at, style == ScalarStyle::Plain);
                    index.leave(&mut stack);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let map = matches!(event, Event::MappingStart(..));
                    if let Some(Frame::Map { key: None, .. }) = stack.last() {
                        errors.push(YamlError {
                            pos: at,
                            message: "a key must be a plain string, not a list or map".into(),
                        });
                        return Err(errors);
                    }
                    let path = index.enter(&mut stack, at, false);
                    if stack.len() >= MAX_DEPTH {
                        errors.push(YamlError {
                            pos: at,
                            message: "nesting too deep".into(),
                        });
                        return Err(errors);
                    }
                    if stack.is_empty() {
                        index.root = Some(if map { RootKind::Map } else { RootKind::List });
                    }
                    stack.push(if map {
                        Frame::Map {
                            path,
                            key: None,
                            seen: HashSet::new(),
                        }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    index.leave(&mut stack);
                }
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(index)
        } else {
            Err(errors)
        }
    }

    /// Records a value starting at `at` under the current frame and returns
    /// its path.
    fn enter(&mut self, stack: &mut [Frame], at: Pos, plain: bool) -> String {
        let path = match stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(RootKind::Scalar);
                }
                String::new()
            }
            Some(Frame::Seq { path, next }) => {
                *next += 1;
                item(path, *next - 1)
            }
            Some(Frame::Map { path, key, .. }) => join(path, key.as_deref().unwrap_or_default()),
        };
        let key = self.nodes.get(&path).and_then(|node| node.key);
        self.nodes.insert(
            path.clone(),
            Node {
                value: at,
                key,
                plain,
            },
        );
        path
    }

    /// Marks the current map entry (if any) as complete: the next scalar is a key.
    fn leave(&mut self, stack: &mut [Frame]) {
        if let Some(Frame::Map { key, .. }) = stack.last_mut() {
            *key = None;
        }
    }

    /// What the document's top node is; `None` for an empty document.
    pub fn root(&self) -> Option<RootKind> {
        self.root
    }

    /// Where the value at `path` starts, or its nearest recorded parent.
    pub fn value(&self, path: &str) -> Pos {
        let mut path = path;
        loop {
            if let Some(node) = self.nodes.get(path) {
                return node.value;
            }
            if path.is_empty() {
                return Pos { line: 1, column: 1 };
            }
            path = parent(path);
        }
    }

    /// Where the key of the entry at `path` starts; falls back to its value,
    /// then to the nearest parent.
    pub fn key(&self, path: &str) -> Pos {
        match self.nodes.get(path).and_then(|node| node.key) {
            Some(key) => key,
            None => self.value(path),
        }
    }

    /// Whether the value at `path` was written as an unquoted scalar.
    pub fn is_plain(&self, path: &str) -> bool {
        self.nodes.get(path).is_some_and(|node| node.plain)
    }
}
