//! The raw layer: the config file's shape as serde structs, before
//! validation.
//!
//! Every scalar is a [`Scalar`] (whatever YAML type it was written as) so
//! that a wrong value is reported by the validator, with its position and a
//! clear reason, instead of stopping deserialization at the first one.
//! Unknown keys are not denied here: serde ignores them and
//! [`super::yaml::from_str`] reports every one, so all problems come out at
//! once. [`fields`] lists each struct's keys for "did you mean".

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A scalar value as written, whatever its YAML type.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// `true` or `false`.
    Bool(bool),
    /// A whole number (wide enough for any YAML integer serde yields).
    Int(i128),
    /// A number with a fraction or exponent, or one too large for an integer.
    Float(f64),
    /// A string.
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Str(s) => f.write_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single value (string, number or boolean)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Scalar, E> {
                Ok(i128::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Declares a raw struct that also takes every key of `defaults`' settings
/// (timeouts and limits), so `defaults`, listeners and rules share them
/// without `#[serde(flatten)]` (which would hide unknown keys).
macro_rules! with_settings {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Connecting to an upstream.
            pub connect_timeout: Option<Scalar>,
            /// Waiting for an upstream's response head.
            pub response_timeout: Option<Scalar>,
            /// An idle keep-alive client or TCP tunnel.
            pub idle_timeout: Option<Scalar>,
            /// Reading a request head.
            pub header_timeout: Option<Scalar>,
            /// Between reads of a request body.
            pub body_timeout: Option<Scalar>,
            /// Between writes to a slow client.
            pub send_timeout: Option<Scalar>,
            /// Retries on connect failure.
            pub retries: Option<Scalar>,
            /// Connections per listener.
            pub max_connections: Option<Scalar>,
            /// Largest request head.
            pub max_header_size: Option<Scalar>,
            /// Largest request body; 0 = unlimited.
            pub max_body_size: Option<Scalar>,
        }

        impl $name {
            /// The settings keys as written, for the validator to fold in.
            pub fn settings(&self) -> RawSettings<'_> {
                RawSettings {
                    connect_timeout: self.connect_timeout.as_ref(),
                    response_timeout: self.response_timeout.as_ref(),
                    idle_timeout: self.idle_timeout.as_ref(),
                    header_timeout: self.header_timeout.as_ref(),
                    body_timeout: self.body_timeout.as_ref(),
                    send_timeout: self.send_timeout.as_ref(),
                    retries: self.retries.as_ref(),
                    max_connections: self.max_connections.as_ref(),
                    max_header_size: self.max_header_size.as_ref(),
                    max_body_size: self.max_body_size.as_ref(),
                }
            }
        }
    };
}

/// The settings keys of one place (defaults, listener or rule), borrowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawSettings<'a> {
    /// `connect_timeout`.
    pub connect_timeout: Option<&'a Scalar>,
    /// `response_timeout`.
    pub response_timeout: Option<&'a Scalar>,
    /// `idle_timeout`.
    pub idle_timeout: Option<&'a Scalar>,
    /// `header_timeout`.
    pub header_timeout: Option<&'a Scalar>,
    /// `body_timeout`.
    pub body_timeout: Option<&'a Scalar>,
    /// `send_timeout`.
    pub send_timeout: Option<&'a Scalar>,
    /// `retries`.
    pub retries: Option<&'a Scalar>,
    /// `max_connections`.
    pub max_connections: Option<&'a Scalar>,
    /// `max_header_size`.
    pub max_header_size: Option<&'a Scalar>,
    /// `max_body_size`.
    pub max_body_size: Option<&'a Scalar>,
}

impl RawSettings<'_> {
    /// The names of the keys that are set, in the order of the struct.
    pub fn present(&self) -> Vec<&'static str> {
        [
            ("connect_timeout", self.connect_timeout.is_some()),
            ("response_timeout", self.response_timeout.is_some()),
            ("idle_timeout", self.idle_timeout.is_some()),
            ("header_timeout", self.header_timeout.is_some()),
            ("body_timeout", self.body_timeout.is_some()),
            ("send_timeout", self.send_timeout.is_some()),
            ("retries", self.retries.is_some()),
            ("max_connections", self.max_connections.is_some()),
            ("max_header_size", self.max_header_size.is_some()),
            ("max_body_size", self.max_body_size.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    /// `auto` or a count.
    pub workers: Option<Scalar>,
    /// Admin endpoint; `admin:` with nothing under it is the default one.
    #[serde(default, deserialize_with = "section")]
    pub admin: Option<RawAdmin>,
    /// User to drop to.
    pub user: Option<Scalar>,
    /// Drain wait.
    pub drain_timeout: Option<Scalar>,
    /// Inherited settings.
    pub defaults: Option<RawDefaults>,
    /// Backend servers.
    pub upstreams: Option<Vec<RawUpstream>>,
    /// Listeners.
    pub listeners: Option<Vec<RawListener>>,
}

/// A section that is there, even empty (YAML `null`): its defaults.
fn section<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(
        Option::<T>::deserialize(deserializer)?.unwrap_or_default(),
    ))
}

/// `admin:`.
#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    /// Address to bind.
    pub listen: Option<Scalar>,
}

with_settings! {
    /// `defaults:`.
    pub struct RawDefaults {
        /// Health check every upstream inherits.
        pub health_check: Option<RawHealthCheck>,
    }
}

/// A `health_check:` block; every key optional (merged field by field).
#[derive(Debug, Default, Deserialize)]
pub struct RawHealthCheck {
    /// `tcp`, `http`, `redis`, `postgres`, `none`.
    pub kind: Option<Scalar>,
    /// HTTP path.
    pub path: Option<Scalar>,
    /// HTTP Host header.
    pub host: Option<Scalar>,
    /// HTTP statuses that pass.
    pub expect_status: Option<Scalar>,
    /// Time between probes.
    pub interval: Option<Scalar>,
    /// Probe timeout.
    pub timeout: Option<Scalar>,
    /// Successes to mark up.
    pub rise: Option<Scalar>,
    /// Failures to mark down.
    pub fall: Option<Scalar>,
}

/// One `upstreams:` entry.
#[derive(Debug, Default, Deserialize)]
pub struct RawUpstream {
    /// Unique id.
    pub id: Option<Scalar>,
    /// `host:port`.
    pub address: Option<Scalar>,
    /// Relative weight.
    pub weight: Option<Scalar>,
    /// Upstream-specific connect timeout.
    pub connect_timeout: Option<Scalar>,
    /// Upstream-specific response timeout.
    pub response_timeout: Option<Scalar>,
    /// Field-by-field health check override.
    pub health_check: Option<RawHealthCheck>,
}

with_settings! {
    /// One `listeners:` entry.
    pub struct RawListener {
        /// Unique name.
        pub name: Option<Scalar>,
        /// Address to bind.
        pub listen: Option<Scalar>,
        /// `http` or `tcp`.
        pub mode: Option<Scalar>,
        /// HTTP: headers set on proxied requests.
        pub headers: Option<Vec<RawHeader>>,
        /// HTTP: routing rules.
        pub rules: Option<Vec<RawRule>>,
        /// TCP: pool upstream ids.
        pub upstreams: Option<Vec<Scalar>>,
        /// TCP: strategy.
        pub strategy: Option<Scalar>,
        /// TCP: consistent-hash key.
        pub hash_key: Option<Scalar>,
        /// TCP: send PROXY protocol.
        pub proxy_protocol: Option<Scalar>,
        /// TCP: expect PROXY protocol.
        pub accept_proxy_protocol: Option<Scalar>,
    }
}

/// One `headers:` entry.
#[derive(Debug, Default, Deserialize)]
pub struct RawHeader {
    /// Header name.
    pub key: Option<Scalar>,
    /// Value template.
    pub value: Option<Scalar>,
}

with_settings! {
    /// One `rules:` entry.
    pub struct RawRule {
        /// Name for logs and metrics.
        pub name: Option<Scalar>,
        /// Path pattern.
        pub path: Option<Scalar>,
        /// Host pattern.
        pub host: Option<Scalar>,
        /// Methods matched.
        pub methods: Option<Vec<Scalar>>,
        /// Explicit priority.
        pub priority: Option<Scalar>,
        /// Pool upstream ids.
        pub upstreams: Option<Vec<Scalar>>,
        /// Static folder.
        pub public: Option<Scalar>,
        /// Balancing strategy.
        pub strategy: Option<Scalar>,
        /// Consistent-hash key.
        pub hash_key: Option<Scalar>,
        /// Forward the client's Host.
        pub pass_host: Option<Scalar>,
    }
}

/// The keys a raw struct accepts, read from its serde derive, so "did you
/// mean" and "belongs on" hints never drift from the structs.
pub fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    #[derive(Debug)]
    struct Stop;
    impl fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Stop
        }
    }

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut found: &'static [&'static str] = &[];
    // The probe always errors after recording the field list; the error is the point.
    let _ = T::deserialize(Probe(&mut found));
    found
}
