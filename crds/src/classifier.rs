//! `Classifier`: a custom classifier a Crawler tries before the built-in ones.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{COLUMN_NAME_PATTERN, ObservedStatus};

/// A custom classifier.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kglue.dev",
    version = "v1alpha1",
    kind = "Classifier",
    namespaced,
    status = "ObservedStatus",
    shortname = "kgclassifier",
    category = "kglue",
    doc = "A custom classifier (Glue custom classifier): how to recognise and read delimited text, JSON documents or log lines that the built-in classifiers would get wrong. Crawlers list the classifiers they try first, in order.",
    printcolumn = r#"{"name": "Classification", "type": "string", "jsonPath": ".spec.classification"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("[has(self.csv), has(self.json), has(self.grok)].filter(x, x).size() == 1").message("exactly one of csv, json or grok must be set"))]
#[serde(rename_all = "camelCase")]
pub struct ClassifierSpec {
    /// The classification written to tables this classifier recognises (Glue's `classification`
    /// table parameter), e.g. `csv`, `json` or `apache-access-log`.
    #[schemars(pattern("^[a-z0-9][a-z0-9_-]{0,62}$"))]
    pub classification: String,
    /// Recognise delimited text.
    pub csv: Option<CsvClassifier>,
    /// Recognise JSON documents whose records sit at a path.
    pub json: Option<JsonClassifier>,
    /// Recognise text lines with a grok pattern.
    pub grok: Option<GrokClassifier>,
}

/// Whether delimited files start with a header line.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HeaderPolicy {
    /// The first line is always a header.
    Present,
    /// There is no header: columns come from `columnNames`, or are named `col0`, `col1`, ….
    Absent,
    /// A header when the first line differs in type from the lines after it (Glue's heuristic).
    #[default]
    Detect,
}

/// A custom delimited-text classifier.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.columnNames) || self.header != 'Present'").message("columnNames replace a header: they cannot be used with header Present").field_path(".columnNames"))]
#[serde(rename_all = "camelCase")]
pub struct CsvClassifier {
    /// The field delimiter, one character.
    #[schemars(length(min = 1, max = 1))]
    pub delimiter: String,
    /// The quote character. Default `"`.
    #[schemars(length(min = 1, max = 1))]
    pub quote: Option<String>,
    /// Whether files have a header line: Present, Absent or Detect (the default).
    #[serde(default)]
    pub header: HeaderPolicy,
    /// Column names to use when there is no header (header Absent or not detected).
    #[schemars(length(max = 2000), inner(pattern(COLUMN_NAME_PATTERN)))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub column_names: Vec<String>,
    /// Accept files with a single column (off by default: nearly any text would match).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_single_column: bool,
}

/// A custom JSON classifier.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JsonClassifier {
    /// Where the records are inside each document, as a JSONPath: `$[*]` for a top-level array,
    /// `$.records[*]` for an array in a field.
    #[schemars(pattern("^\\$"), length(min = 1, max = 1024))]
    pub json_path: String,
}

/// A custom grok classifier for log lines.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrokClassifier {
    /// The grok pattern a line must match; each named capture becomes a column, with an optional
    /// type: `%{IP:client} %{WORD:method} %{NUMBER:status:int}`. The operator compiles it and sets
    /// `Stalled` with reason `InvalidPattern` when it does not compile.
    #[schemars(length(min = 1, max = 4096))]
    pub pattern: String,
    /// Extra named patterns the pattern may use, name → regular expression.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_patterns: BTreeMap<String, String>,
}
