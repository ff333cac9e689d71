//! `Table`: a table in the catalog, its schema, storage and a summary of its partitions.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{CATALOG_NAME_PATTERN, Column, ObservedStatus, StorageSpec};

/// A catalog table.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kglue.dev",
    version = "v1alpha1",
    kind = "Table",
    namespaced,
    status = "TableStatus",
    shortname = "kgtable",
    category = "kglue",
    doc = "A catalog table (Glue Data Catalog table): columns, partition keys, storage location and format. Written by hand, by a Crawler or by a Job sink; partitions are summarised in status, never listed in full.",
    validation = Rule::new("!has(self.spec.partitionKeys) || !has(self.spec.columns) || !self.spec.partitionKeys.exists(p, self.spec.columns.exists(c, c.name == p.name))").message("a partition key cannot also be a column: remove it from spec.columns").field_path(".spec.partitionKeys"),
    printcolumn = r#"{"name": "Database", "type": "string", "jsonPath": ".spec.databaseName"}"#,
    printcolumn = r#"{"name": "Table", "type": "string", "jsonPath": ".spec.tableName"}"#,
    printcolumn = r#"{"name": "Format", "type": "string", "jsonPath": ".spec.storage.format"}"#,
    printcolumn = r#"{"name": "Partitions", "type": "integer", "jsonPath": ".status.partitions.count"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Updated", "type": "date", "jsonPath": ".status.lastUpdated.time"}"#,
    printcolumn = r#"{"name": "Location", "type": "string", "jsonPath": ".spec.storage.location", "priority": 1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TableSpec {
    /// The database the table belongs to (a Database's `spec.databaseName` in this namespace).
    /// Immutable: moving a table would orphan the data and bookmarks that refer to it.
    #[x_kube(validation = Rule::new("self == oldSelf").message("databaseName is immutable: create a new Table instead"))]
    #[schemars(pattern(CATALOG_NAME_PATTERN))]
    pub database_name: String,
    /// The table name engines see. Immutable, like `databaseName`.
    #[x_kube(validation = Rule::new("self == oldSelf").message("tableName is immutable: create a new Table instead"))]
    #[schemars(pattern(CATALOG_NAME_PATTERN))]
    pub table_name: String,
    /// What the table holds.
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// Where the table's files live and how they are encoded.
    pub storage: StorageSpec,
    /// The data columns, in order. Partition keys are not repeated here.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 1000))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<Column>,
    /// The partition keys, outermost folder level first (`dt`, then `region` for
    /// `dt=…/region=…/`).
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 32))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_keys: Vec<Column>,
    /// When true, crawlers and jobs never change the columns or partition keys: a crawl that finds
    /// a different schema reports it as a condition, and a job whose output does not fit fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub schema_locked: bool,
    /// Free-form key-value properties, as Glue's table parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
}

impl Table {
    /// How many partitions the table's summary records, if it has one.
    pub fn partition_count(&self) -> Option<i64> {
        self.status.as_ref()?.partitions.as_ref().map(|p| p.count)
    }
}

/// What the operator, crawlers and jobs observed of a Table.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TableStatus {
    /// Generation and conditions. Besides Ready, a crawler sets `SchemaDrift` when data disagrees
    /// with the table in a way it could not merge; the message names the object key.
    #[serde(flatten)]
    pub observed: ObservedStatus,
    /// A summary of the partitions (bounded in size whatever their number).
    pub partitions: Option<PartitionSummary>,
    /// True when the data behind the table disappeared and the crawler's delete behaviour is
    /// DeprecateInDatabase: the table is kept for reference but no longer crawled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    /// The last crawl or job run that changed the table.
    pub last_updated: Option<TableUpdate>,
}

/// A bounded summary of a table's partitions (see docs/catalog-at-scale.md): a Table with 100,000
/// partitions must still fit in one object, so partitions are resolved from the layout or the index.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartitionSummary {
    /// How many partitions the table has.
    pub count: i64,
    /// The newest partitions as relative folder paths (`dt=2024-01-02/region=eu`), newest first,
    /// at most 10.
    #[schemars(length(max = 10))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub newest: Vec<String>,
    /// The URL of the partition index object that lists every partition, written by the crawler
    /// that last updated the table (a job's write to the table clears it). `kglue sql` and
    /// sessions take the partitions from it; unset, they list the layout under the location.
    pub index: Option<String>,
    /// Partitions whose folders disappeared and that are kept as deprecated.
    pub deprecated: Option<i64>,
}

/// Who last changed a table, and when.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TableUpdate {
    /// `Crawler/<name>` or `Job/<name>`.
    pub by: String,
    /// The run id of the crawl or job run.
    pub run_id: Option<String>,
    /// When.
    pub time: Time,
}
