//! Grok patterns for log lines: `%{IP:client} %{WORD:method} %{NUMBER:status:int}`. Every named
//! capture becomes a column, typed by its optional suffix (`int`, `long`, `float`, `double`,
//! `boolean`; string otherwise), in the order the pattern names them.

use std::collections::BTreeMap;

use grok::{Grok, Pattern};
use kglue_crds::glue_type::GlueType;

use super::infer::InferredColumn;

/// A compiled grok pattern and the columns it yields.
pub struct GrokPattern {
    pattern: Pattern,
    /// The columns, in pattern order.
    pub columns: Vec<InferredColumn>,
}

impl std::fmt::Debug for GrokPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrokPattern").field("columns", &self.columns).finish()
    }
}

impl GrokPattern {
    /// Compiles `pattern` with the standard grok patterns plus `custom` ones (name → regex).
    pub fn compile(pattern: &str, custom: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut grok = Grok::with_default_patterns();
        for (name, definition) in custom {
            grok.add_pattern(name.as_str(), definition.as_str());
        }
        let compiled = grok
            .compile(pattern, true)
            .map_err(|e| format!("the grok pattern does not compile: {e}"))?;
        let columns = named_captures(pattern)
            .into_iter()
            .map(|(name, type_)| InferredColumn { name, type_ })
            .collect::<Vec<_>>();
        if columns.is_empty() {
            return Err("the grok pattern names no captures (use %{PATTERN:name})".into());
        }
        Ok(GrokPattern {
            pattern: compiled,
            columns,
        })
    }

    /// Whether a line matches the whole pattern.
    pub fn matches(&self, line: &str) -> bool {
        self.pattern.match_against(line).is_some()
    }
}

/// The `%{PATTERN:name[:type]}` captures of a pattern, in order, with their Glue types. A name
/// given twice keeps its first place.
fn named_captures(pattern: &str) -> Vec<(String, GlueType)> {
    let mut captures: Vec<(String, GlueType)> = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("%{") {
        let Some(end) = rest[start..].find('}') else { break };
        let body = &rest[start + 2..start + end];
        // `NAME:alias:type` or `NAME:alias:type=definition`; the definition may hold colons.
        let head = body.split('=').next().unwrap_or_default();
        let mut parts = head.split(':');
        let (_, alias, type_) = (parts.next(), parts.next(), parts.next());
        if let Some(alias) = alias.filter(|a| !a.is_empty()) {
            let type_ = match type_.map(str::to_ascii_lowercase).as_deref() {
                Some("int") | Some("integer") => GlueType::Int,
                Some("long") | Some("bigint") => GlueType::BigInt,
                Some("float") => GlueType::Float,
                Some("double") => GlueType::Double,
                Some("boolean") | Some("bool") => GlueType::Boolean,
                _ => GlueType::String,
            };
            if !captures.iter().any(|(name, _)| name == alias) {
                captures.push((alias.to_string(), type_));
            }
        }
        rest = &rest[start + end + 1..];
    }
    captures
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCESS_LOG: &str = "%{IPORHOST:client} %{USER:ident} %{USER:user} \\[%{HTTPDATE:time}\\] \"%{WORD:method} %{NOTSPACE:path} HTTP/%{NUMBER:http_version}\" %{NUMBER:status:int} %{NUMBER:bytes:long}";

    #[test]
    fn columns_come_from_named_captures_in_order_with_types() {
        let pattern = GrokPattern::compile(ACCESS_LOG, &BTreeMap::new()).expect("compiles");
        let columns: Vec<String> = pattern
            .columns
            .iter()
            .map(|c| format!("{}:{}", c.name, c.type_))
            .collect();
        assert_eq!(
            columns,
            [
                "client:string",
                "ident:string",
                "user:string",
                "time:string",
                "method:string",
                "path:string",
                "http_version:string",
                "status:int",
                "bytes:bigint"
            ]
        );
        assert!(
            pattern.matches("127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] \"GET /apache_pb.gif HTTP/1.0\" 200 2326")
        );
        assert!(!pattern.matches("not a log line"));
    }

    #[test]
    fn custom_patterns_are_available() {
        let custom = BTreeMap::from([("ORDERID".to_string(), "ORD-[0-9]{6}".to_string())]);
        let pattern = GrokPattern::compile("%{ORDERID:order} %{INT:qty:int}", &custom).expect("compiles");
        assert!(pattern.matches("ORD-123456 3"));
        assert!(!pattern.matches("ORD-12 3"));
    }

    #[test]
    fn bad_patterns_say_why() {
        let error = GrokPattern::compile("%{NO_SUCH_PATTERN:x}", &BTreeMap::new()).expect_err("unknown");
        assert!(error.starts_with("the grok pattern does not compile"), "{error}");
        let error = GrokPattern::compile("%{WORD} %{INT}", &BTreeMap::new()).expect_err("no names");
        assert!(error.contains("names no captures"), "{error}");
    }
}
