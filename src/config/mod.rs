//! Reading and validating the config file.
//!
//! Two layers: `raw` mirrors the YAML with serde structs that accept any
//! scalar, and `validate` turns them into the typed [`model::Config`],
//! folding `defaults` in. Every problem found is reported at once, each with
//! `file:line:column` (the [`yaml`] position index) and a one-line reason.
//!
//! # Choices where SPEC.md is silent
//! - `listen: 8080` binds `0.0.0.0:8080`; `admin.listen: 9901` binds
//!   `127.0.0.1:9901` (admin stays on loopback); `admin:` without `listen`
//!   means `127.0.0.1:9901`. Port 0 is allowed for listeners (tests).
//! - Two listeners (or a listener and the admin endpoint) clash when their
//!   ports match and their IPs match or one is the wildcard of that family.
//! - `mode` defaults to `http`. A rule without `path` is `/*`.
//! - Durations: a whole number and `ms`, `s`, `m` or `h`, at most `8760h`;
//!   every timeout and interval must be more than 0. Sizes: bytes or `k`,
//!   `m`, `g` (binary multiples), at most 2^48.
//! - Limits: `workers` ≤ 1024, `retries` ≤ 100, `weight` ≤ 1,000,000,
//!   `rise`/`fall` ≤ 1000, `priority` within i32.
//! - `methods` are the nine RFC 9110/5789 methods, any case.
//! - `headers` may not set `host`, `content-length`, `transfer-encoding`,
//!   `connection`, `keep-alive`, `proxy-connection`, `te`, `trailer` or
//!   `upgrade` (framing and hop-by-hop headers: smuggling risks).
//! - `strategy`, `hash_key` and `pass_host` on a `public` rule are errors;
//!   a tcp listener's `hash_key` may only be `client-ip`.
//! - Upstream ids use letters, digits, `-`, `_`, `.` (they are metric labels).
//! - YAML aliases, several documents, duplicate keys, nesting deeper than 64
//!   and files over 16 MiB are refused; unquoted `yes`/`no`/`on`/`off`
//!   where text is expected are refused (YAML 1.1 reads them as booleans).

pub mod model;
mod raw;
mod suggest;
mod unknown;
mod validate;
mod validate_listeners;
mod values;
pub mod yaml;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use model::*;

/// Largest config file read: far beyond any real config, small enough that
/// a wrong path (a log file, a disk image) fails fast.
const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// One problem in a config file, with where it is.
///
/// Exists so `sluice check`, start and reload print the same precise,
/// sortable messages.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// Line, 1-based; 0 when the problem is the whole file (unreadable).
    pub line: usize,
    /// Column in characters, 1-based; 0 with line 0.
    pub column: usize,
    /// One-line reason.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Every problem found in a config file, sorted by position.
///
/// Exists so one run of `sluice check` shows all mistakes, not one per run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, sorted by position.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Sorts by position and drops exact duplicates.
    fn normalized(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by(|a, b| (a.line, a.column, &a.message).cmp(&(b.line, b.column, &b.message)));
        errors.dedup();
        ConfigErrors(errors)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Reads and validates the config file at `path`.
///
/// An unreadable file (missing, not UTF-8, too large) is a single error.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_text(path).map(|(config, _)| config)
}

/// [`load`], also returning the text it validated: the supervisor hands
/// workers exactly that text, not a second read of a file that may have
/// changed in between.
pub fn load_with_text(path: &Path) -> Result<(Config, String), ConfigErrors> {
    let whole_file = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message,
        }])
    };
    let cannot_read = |err: std::io::Error| {
        let hint = if err.kind() == std::io::ErrorKind::NotFound {
            " (`sluice init` writes a starter config)"
        } else {
            ""
        };
        whole_file(format!("cannot read config: {err}{hint}"))
    };
    // Read at most one byte past the limit: `metadata().len()` is 0 for
    // pipes and devices (`-c /dev/zero`), so only a bounded read is safe.
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(whole_file(format!(
            "config file is too large (more than {MAX_FILE_SIZE} bytes)"
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| whole_file("cannot read config: the file is not UTF-8 text".to_owned()))?;
    let config = parse(&text, path)?;
    Ok((config, text))
}

/// Validates config `text`. `source` is the file it came from: it names the
/// file in messages and is the base of relative paths (`public`).
pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
    parse_with(text, source, PublicFolders::MustExist)
}

/// Parses config text the supervisor has already validated, in a worker.
/// A worker that dropped privileges (`user:`) may be unable to reach a
/// `public` folder the supervisor could: that is not an error here (the
/// config must not be refused by one worker and applied by the others);
/// its file server answers each request for those files with an error
/// instead, as nginx's workers do.
pub fn parse_validated(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
    parse_with(text, source, PublicFolders::AsValidated)
}

/// How `public` folders are checked while parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PublicFolders {
    /// Each must exist and be a folder this process can reach.
    MustExist,
    /// Resolved when this process can reach them, else taken as written.
    AsValidated,
}

fn parse_with(text: &str, source: &Path, folders: PublicFolders) -> Result<Config, ConfigErrors> {
    let at = |pos: yaml::Pos, message: String| ConfigError {
        file: source.to_owned(),
        line: pos.line,
        column: pos.column,
        message,
    };
    let index = match yaml::Index::build(text) {
        Ok(index) => index,
        Err(errors) => {
            let mut errors: Vec<ConfigError> =
                errors.into_iter().map(|e| at(e.pos, e.message)).collect();
            if errors.len() == 1 && errors[0].message.starts_with("syntax: ") {
                // A syntax error: prefer yaml_serde's wording and position.
                match yaml::from_str::<serde::de::IgnoredAny>(text) {
                    Err(err) => errors = vec![at(err.pos, err.message)],
                    Ok(_) => errors[0].message = errors[0].message["syntax: ".len()..].to_owned(),
                }
            }
            return Err(ConfigErrors::normalized(errors));
        }
    };
    let start = yaml::Pos { line: 1, column: 1 };
    match index.root() {
        Some(yaml::RootKind::Map) => {}
        None => {
            return Err(ConfigErrors(vec![at(
                start,
                "the config file is empty".into(),
            )]));
        }
        Some(_) => {
            return Err(ConfigErrors(vec![at(
                start,
                "the config file must be a map of settings (`listeners:`, `upstreams:`, ...)"
                    .into(),
            )]));
        }
    }
    let (raw, unknown_keys) = yaml::from_str::<raw::RawConfig>(text)
        .map_err(|err| ConfigErrors(vec![at(err.pos, err.message)]))?;
    let mut errors: Vec<ConfigError> = unknown_keys
        .iter()
        .map(|path| at(index.key(path), unknown::message(path)))
        .collect();
    let config = validate::validate(&raw, &index, source, folders, &mut errors);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors::normalized(errors))
    }
}
