//! JSON data: JSON lines (one object per line) or JSON documents whose records sit at a path
//! (`$[*]` for a top-level array, `$.records[*]` for an array in a field).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value whose objects keep their fields in document order. Column order matters to
/// people reading a table, and `serde_json::Map` sorts keys (its `preserve_order` feature would
/// change key order for every crate in the workspace, CRD generation included).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object, fields in document order.
    Object(Vec<(String, Value)>),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                Ok(Value::Number(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                // JSON has no NaN or infinity, so every parsed float is finite.
                Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::String(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Value, E> {
                Ok(Value::String(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Value::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut fields = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    fields.push((key, value));
                }
                Ok(Value::Object(fields))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

impl Value {
    /// The value of a field of an object.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(fields) => fields.iter().find(|(key, _)| key == name).map(|(_, value)| value),
            _ => None,
        }
    }
}

/// How a JSON file holds its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonLayout {
    /// One object per line.
    Lines,
    /// Documents whose records are found at a JSONPath.
    Documents {
        /// The JSONPath of the records.
        json_path: String,
    },
}

/// Why a sample is not the JSON it looked like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// A line of a JSON-lines file is not a JSON object.
    #[error("line {line}: {message}")]
    BadLine {
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A JSON document does not parse.
    #[error("not a JSON document: {0}")]
    BadDocument(String),
    /// A JSONPath is not one kglue supports.
    #[error("JSONPath {0:?} is not supported: use $[*], or $.field[*] with any number of .field steps")]
    UnsupportedPath(String),
    /// The path leads nowhere in the document.
    #[error("JSONPath {path:?} does not lead to an array of records ({message})")]
    PathNotFound {
        /// The JSONPath.
        path: String,
        /// Where it stopped.
        message: String,
    },
}

/// The records of a JSON sample, and how they are laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRecords {
    /// The layout.
    pub layout: JsonLayout,
    /// The records (objects, or scalars for arrays of scalars).
    pub records: Vec<Value>,
}

/// Whether a text sample looks like JSON at all (its first non-blank character opens an object or
/// an array). Other text goes to the delimited and custom classifiers.
pub fn looks_like_json(sample: &str) -> bool {
    matches!(sample.trim_start().chars().next(), Some('{') | Some('['))
}

/// Reads the records of a JSON sample: with `json_path` (a custom classifier's), as documents;
/// otherwise as JSON lines when every line is an object, else as one document whose top-level
/// array holds the records. `complete` says whether the sample is the whole file: a document cut
/// by the end of a partial sample is read up to its last complete record.
pub fn read_records(sample: &str, json_path: Option<&str>, complete: bool) -> Result<JsonRecords, JsonError> {
    if let Some(path) = json_path {
        return read_document(sample, path, complete);
    }
    if sample.trim_start().starts_with('{') && is_json_lines(sample) {
        return read_lines(sample, complete);
    }
    read_document(sample, "$[*]", complete)
}

/// A sample is JSON lines when its first line alone is a complete JSON value.
fn is_json_lines(sample: &str) -> bool {
    let first = sample.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str::<Value>(first).is_ok()
}

fn read_lines(sample: &str, complete: bool) -> Result<JsonRecords, JsonError> {
    let mut records = Vec::new();
    let lines: Vec<&str> = sample.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(value @ Value::Object(_)) => records.push(value),
            Ok(other) => {
                return Err(JsonError::BadLine {
                    line: index + 1,
                    message: format!("expected an object, found {}", kind_of(&other)),
                });
            }
            // The sample of a big file may end inside its last line.
            Err(_) if !complete && index + 1 == lines.len() => break,
            Err(e) => {
                return Err(JsonError::BadLine {
                    line: index + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(JsonRecords {
        layout: JsonLayout::Lines,
        records,
    })
}

fn read_document(sample: &str, path: &str, complete: bool) -> Result<JsonRecords, JsonError> {
    let steps = parse_path(path)?;
    let document: Value = match serde_json::from_str(sample) {
        Ok(document) => document,
        Err(e) if !complete && e.is_eof() => return read_partial_array(sample, path, &steps),
        Err(e) => return Err(JsonError::BadDocument(e.to_string())),
    };
    let mut node = &document;
    for step in &steps {
        node = node.get(step).ok_or_else(|| JsonError::PathNotFound {
            path: path.to_string(),
            message: format!("no field {step:?}"),
        })?;
    }
    match node {
        Value::Array(items) => Ok(JsonRecords {
            layout: JsonLayout::Documents {
                json_path: path.to_string(),
            },
            records: items.clone(),
        }),
        other => Err(JsonError::PathNotFound {
            path: path.to_string(),
            message: format!("found {}", kind_of(other)),
        }),
    }
}

/// The records of a big document whose sample was cut: walk into the array the path names and
/// read complete elements one by one until the cut.
fn read_partial_array(sample: &str, path: &str, steps: &[String]) -> Result<JsonRecords, JsonError> {
    let not_found = |message: &str| JsonError::PathNotFound {
        path: path.to_string(),
        message: message.to_string(),
    };
    let mut rest = sample.trim_start();
    for step in steps {
        // Only the simple, common shape is supported for cut samples: {"step": [ … at the start.
        let opening = format!("\"{step}\"");
        let at = rest
            .find(&opening)
            .ok_or_else(|| not_found(&format!("no field {step:?} in the sample")))?;
        rest = rest[at + opening.len()..]
            .trim_start()
            .trim_start_matches(':')
            .trim_start();
    }
    let mut rest = rest
        .strip_prefix('[')
        .ok_or_else(|| not_found("no array at the path"))?;
    let mut records = Vec::new();
    loop {
        rest = rest.trim_start().trim_start_matches(',');
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                records.push(value);
                rest = &rest[stream.byte_offset()..];
            }
            _ => break,
        }
    }
    Ok(JsonRecords {
        layout: JsonLayout::Documents {
            json_path: path.to_string(),
        },
        records,
    })
}

/// `$[*]` → no steps; `$.a.b[*]` → `["a", "b"]`.
fn parse_path(path: &str) -> Result<Vec<String>, JsonError> {
    let unsupported = || JsonError::UnsupportedPath(path.to_string());
    let body = path
        .strip_prefix('$')
        .and_then(|p| p.strip_suffix("[*]"))
        .ok_or_else(unsupported)?;
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let steps: Vec<String> = body
        .strip_prefix('.')
        .ok_or_else(unsupported)?
        .split('.')
        .map(str::to_string)
        .collect();
    if steps.iter().any(|s| s.is_empty() || s.contains(['[', ']', '*', '"'])) {
        return Err(unsupported());
    }
    Ok(steps)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an ordered value from `serde_json::json!` text (key order as written).
    fn json(text: &str) -> Value {
        serde_json::from_str(text).expect("valid JSON")
    }

    #[test]
    fn json_lines() {
        let records = read_records("{\"a\":1}\n{\"a\":2,\"b\":\"x\"}\n\n", None, true).expect("valid");
        assert_eq!(records.layout, JsonLayout::Lines);
        assert_eq!(records.records, [json(r#"{"a": 1}"#), json(r#"{"a": 2, "b": "x"}"#)]);
    }

    #[test]
    fn a_pretty_printed_object_is_a_document_not_lines() {
        let error = read_records("{\n  \"a\": 1\n}\n", None, true).expect_err("not an array");
        assert_eq!(
            error,
            JsonError::PathNotFound {
                path: "$[*]".into(),
                message: "found an object".into()
            }
        );
    }

    #[test]
    fn a_top_level_array() {
        let records = read_records("[{\"a\":1},\n {\"a\":2}]", None, true).expect("valid");
        assert_eq!(
            records.layout,
            JsonLayout::Documents {
                json_path: "$[*]".into()
            }
        );
        assert_eq!(records.records.len(), 2);
    }

    #[test]
    fn records_at_a_custom_path() {
        let sample = r#"{"meta": {"count": 2}, "data": {"records": [{"id": 1}, {"id": 2}]}}"#;
        let records = read_records(sample, Some("$.data.records[*]"), true).expect("valid");
        assert_eq!(records.records, [json(r#"{"id": 1}"#), json(r#"{"id": 2}"#)]);

        let error = read_records(sample, Some("$.data.rows[*]"), true).expect_err("wrong path");
        assert_eq!(
            error,
            JsonError::PathNotFound {
                path: "$.data.rows[*]".into(),
                message: "no field \"rows\"".into()
            }
        );
        let error = read_records(sample, Some("$..records"), true).expect_err("unsupported");
        assert!(matches!(error, JsonError::UnsupportedPath(_)));
    }

    #[test]
    fn a_bad_line_is_named() {
        let error = read_records("{\"a\":1}\n{\"a\":\n{\"a\":3}\n", None, true).expect_err("bad line 2");
        assert!(matches!(error, JsonError::BadLine { line: 2, .. }), "{error}");
        let error = read_records("{\"a\":1}\n[1,2]\n", None, true).expect_err("not an object");
        assert_eq!(
            error,
            JsonError::BadLine {
                line: 2,
                message: "expected an object, found an array".into()
            }
        );
    }

    #[test]
    fn a_cut_sample_keeps_its_complete_records() {
        let lines = read_records("{\"a\":1}\n{\"a\":2}\n{\"a\"", None, false).expect("cut lines");
        assert_eq!(lines.records.len(), 2);
        let array = read_records("[{\"a\":1}, {\"a\":2}, {\"a\":", None, false).expect("cut array");
        assert_eq!(array.records, [json(r#"{"a": 1}"#), json(r#"{"a": 2}"#)]);
        let nested = read_records("{\"records\": [{\"a\":1}, {\"a\"", Some("$.records[*]"), false).expect("cut");
        assert_eq!(nested.records, [json(r#"{"a": 1}"#)]);
    }
}
