//! Header value templates: `value: "$ip:$port"` compiled once into parts,
//! rendered per request without parsing.

use http::HeaderValue;
use http::header::HeaderName;

/// A variable a header value may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variable {
    /// The client's IP address.
    Ip,
    /// The client's port.
    Port,
    /// The request's host (Host header or URI authority).
    Host,
    /// `http` (or `https` once TLS exists).
    Scheme,
    /// A fresh id per request.
    RequestId,
}

impl Variable {
    /// Variables by name, longest first so `$request_id` is not read as a
    /// shorter name.
    const NAMES: [(&'static str, Variable); 5] = [
        ("request_id", Variable::RequestId),
        ("scheme", Variable::Scheme),
        ("host", Variable::Host),
        ("port", Variable::Port),
        ("ip", Variable::Ip),
    ];
}

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Variable),
}

/// A compiled header rule: a name and either a fixed value or parts.
#[derive(Clone, Debug)]
pub struct HeaderTemplate {
    /// The header to set.
    pub name: HeaderName,
    value: TemplateValue,
}

#[derive(Clone, Debug)]
enum TemplateValue {
    Fixed(HeaderValue),
    Parts(Vec<Part>),
}

/// What the variables stand for in one request.
#[derive(Debug)]
pub struct RequestVars<'a> {
    /// Client IP.
    pub ip: std::net::IpAddr,
    /// Client port.
    pub port: u16,
    /// Request host, if any.
    pub host: Option<&'a str>,
    /// Scheme.
    pub scheme: &'a str,
    /// This request's id.
    pub request_id: &'a str,
}

/// A template that names a variable sluice does not know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "header `{header}`: unknown variable `${name}` (known: {})",
    HeaderTemplate::VARIABLES
)]
pub struct UnknownVariable {
    /// The header whose value holds it.
    pub header: String,
    /// The variable name.
    pub name: String,
}

impl HeaderTemplate {
    /// The variables a template may name, for error messages.
    pub const VARIABLES: &'static str = "$ip, $port, $host, $scheme, $request_id";

    /// Compiles `value` for header `name`. A `$` not followed by a known
    /// variable name is an error; `$$` is a literal `$`.
    pub fn compile(name: HeaderName, value: &str) -> Result<HeaderTemplate, UnknownVariable> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = value;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                literal.push('$');
                rest = tail;
                continue;
            }
            // `$name` takes every name character that follows (`$hostname`
            // is not `$host` then `name`); `${name}` ends at the brace.
            let (var_name, used) = match after.strip_prefix('{') {
                Some(inner) => match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    // Unclosed: named as written, which no variable is.
                    None => (after, after.len()),
                },
                None => {
                    let len = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..len], len)
                }
            };
            let Some((_, var)) = Variable::NAMES.iter().find(|(n, _)| *n == var_name) else {
                return Err(UnknownVariable {
                    header: name.to_string(),
                    name: var_name.to_owned(),
                });
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(*var));
            rest = &after[used..];
        }
        literal.push_str(rest);
        let value = if parts.is_empty() {
            match HeaderValue::from_str(&literal) {
                Ok(fixed) => TemplateValue::Fixed(fixed),
                Err(_) => {
                    return Err(UnknownVariable {
                        header: name.to_string(),
                        name: String::new(),
                    });
                }
            }
        } else {
            if !literal.is_empty() {
                parts.push(Part::Literal(literal));
            }
            TemplateValue::Parts(parts)
        };
        Ok(HeaderTemplate { name, value })
    }

    /// Whether rendering needs a request id (so requests whose templates
    /// do not use `$request_id` never pay for one).
    pub fn uses_request_id(&self) -> bool {
        matches!(&self.value, TemplateValue::Parts(parts) if parts.contains(&Part::Var(Variable::RequestId)))
    }

    /// The value for one request. Variable values that would make an
    /// invalid header (CR, LF, NUL, other controls) are dropped from it.
    pub fn render(&self, vars: &RequestVars<'_>) -> HeaderValue {
        use std::fmt::Write;
        let parts = match &self.value {
            TemplateValue::Fixed(value) => return value.clone(),
            TemplateValue::Parts(parts) => parts,
        };
        let mut out = String::with_capacity(64);
        for part in parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                // Writing to a String cannot fail.
                Part::Var(Variable::Ip) => write!(out, "{}", vars.ip).expect("write to String"),
                Part::Var(Variable::Port) => write!(out, "{}", vars.port).expect("write to String"),
                // As nginx's `$host`: the name, lower-cased, without port.
                Part::Var(Variable::Host) => out.extend(
                    super::router::bare_host(vars.host.unwrap_or(""))
                        .chars()
                        .filter(|c| !c.is_control())
                        .map(|c| c.to_ascii_lowercase()),
                ),
                Part::Var(Variable::Scheme) => out.push_str(vars.scheme),
                Part::Var(Variable::RequestId) => out.push_str(vars.request_id),
            }
        }
        // Literals were validated at compile time and variables filtered of
        // control characters, so the value is always valid.
        HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> RequestVars<'static> {
        RequestVars {
            ip: "10.1.2.3".parse().unwrap(),
            port: 4711,
            host: Some("ex.com"),
            scheme: "http",
            request_id: "abc",
        }
    }

    #[test]
    fn renders_every_variable() {
        let t = HeaderTemplate::compile(
            HeaderName::from_static("x"),
            "$ip:$port $host $scheme $request_id $$",
        )
        .unwrap();
        assert_eq!(t.render(&vars()), "10.1.2.3:4711 ex.com http abc $");
    }

    #[test]
    fn fixed_values_and_unknown_variables() {
        let t = HeaderTemplate::compile(HeaderName::from_static("x"), "sluice").unwrap();
        assert_eq!(t.render(&vars()), "sluice");
        let err = HeaderTemplate::compile(HeaderName::from_static("x"), "a $nope b").unwrap_err();
        assert_eq!(err.name, "nope");
    }

    #[test]
    fn a_name_is_read_whole_or_between_braces() {
        let compile = |v| HeaderTemplate::compile(HeaderName::from_static("x"), v);
        for unknown in ["$hostname", "$ipv4", "$portal", "${nope}", "${host"] {
            assert!(compile(unknown).is_err(), "{unknown}");
        }
        assert_eq!(compile("$hostname").unwrap_err().name, "hostname");
        let t = compile("${host}name ${ip}x").unwrap();
        assert_eq!(t.render(&vars()), "ex.comname 10.1.2.3x");
    }

    #[test]
    fn host_is_the_lower_case_name_without_port() {
        let t = HeaderTemplate::compile(HeaderName::from_static("x"), "$host").unwrap();
        for (host, shown) in [
            ("Foo.Example.COM:8080", "foo.example.com"),
            ("[::1]:8080", "[::1]"),
            ("ex.com.", "ex.com"),
        ] {
            let mut v = vars();
            v.host = Some(host);
            assert_eq!(t.render(&v), shown, "{host}");
        }
    }

    #[test]
    fn only_templates_with_request_id_need_one() {
        let compile = |v| HeaderTemplate::compile(HeaderName::from_static("x"), v).unwrap();
        assert!(compile("id=$request_id").uses_request_id());
        assert!(!compile("$ip:$port").uses_request_id());
        assert!(!compile("fixed").uses_request_id());
    }

    #[test]
    fn host_variable_cannot_inject_lines() {
        let t = HeaderTemplate::compile(HeaderName::from_static("x"), "h=$host").unwrap();
        let mut v = vars();
        v.host = Some("a\r\nb\0c");
        assert_eq!(t.render(&v), "h=abc");
    }
}
