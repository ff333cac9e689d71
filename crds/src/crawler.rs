//! `Crawler`: discovers data in object storage and keeps Tables true to it.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    CATALOG_NAME_PATTERN, OBJECT_NAME_PATTERN, ObservedStatus, RunRecord, STORAGE_URL_PATTERN, Schedule, WorkerSize,
    default_history_limit, default_true,
};

/// A crawler.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kglue.dev",
    version = "v1alpha1",
    kind = "Crawler",
    namespaced,
    status = "CrawlerStatus",
    shortname = "kgcrawler",
    category = "kglue",
    doc = "A crawler (Glue crawler): lists object-store targets, classifies files, infers schemas and partitions, and creates or updates Tables in one database. Each crawl runs as a Kubernetes Job.",
    printcolumn = r#"{"name": "Database", "type": "string", "jsonPath": ".spec.databaseName"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Last Crawl", "type": "string", "jsonPath": ".status.runs[0].state"}"#,
    printcolumn = r#"{"name": "Started", "type": "date", "jsonPath": ".status.runs[0].startedAt"}"#,
    printcolumn = r#"{"name": "Tables", "type": "integer", "jsonPath": ".status.tables"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.recrawlPolicy != 'CrawlNewFoldersOnly' || (self.schemaChangePolicy.updateBehavior == 'Log' && self.schemaChangePolicy.deleteBehavior == 'Log')").message("recrawlPolicy CrawlNewFoldersOnly needs schemaChangePolicy updateBehavior Log and deleteBehavior Log: a partial crawl cannot judge changes to folders it did not read").field_path(".recrawlPolicy"),
    validation = Rule::new("(has(self.targets) ? size(self.targets) : 0) + (has(self.jdbcTargets) ? size(self.jdbcTargets) : 0) > 0").message("a crawler needs at least one of targets (object stores) or jdbcTargets (databases)").field_path(".targets"),
    validation = Rule::new("self.recrawlPolicy != 'CrawlNewFoldersOnly' || !has(self.jdbcTargets)").message("recrawlPolicy CrawlNewFoldersOnly is for object-store folders; a database is read whole each crawl (its catalog is small)").field_path(".recrawlPolicy"),
    validation = Rule::new("self.recrawlPolicy != 'CrawlNewFoldersOnly' || has(self.state)").message("recrawlPolicy CrawlNewFoldersOnly needs state.location: where the crawler records the folders it crawled").field_path(".state"),
)]
#[serde(rename_all = "camelCase")]
pub struct CrawlerSpec {
    /// What the crawler is for.
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// The database the crawler writes tables into (a Database's `spec.databaseName`; checked by
    /// the operator: `Stalled`, reason `DatabaseNotFound`).
    #[schemars(pattern(CATALOG_NAME_PATTERN))]
    pub database_name: String,
    /// A prefix for the names of tables the crawler creates.
    #[schemars(pattern("^[a-z0-9_]{0,64}$"))]
    pub table_prefix: Option<String>,
    /// The object-store locations to crawl.
    #[schemars(length(max = 100))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<CrawlerTarget>,
    /// The databases to crawl (Glue's `JdbcTargets`): each table or view an include path selects
    /// becomes a Table with format `Jdbc`.
    #[schemars(length(max = 100))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jdbc_targets: Vec<JdbcTarget>,
    /// Custom Classifiers (names in this namespace) tried before the built-in ones, in this order.
    /// Unknown names are reported by the operator (`Stalled`, reason `ClassifierNotFound`).
    #[schemars(length(max = 20), inner(pattern(OBJECT_NAME_PATTERN)))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classifiers: Vec<String>,
    /// What a crawl does when the data's schema changed or data disappeared.
    #[serde(default)]
    pub schema_change_policy: SchemaChangePolicy,
    /// Crawl everything each time, or only folders that are new since the last crawl.
    #[serde(default)]
    pub recrawl_policy: RecrawlPolicy,
    /// How files are grouped into tables; the defaults follow Glue's heuristics.
    pub grouping: Option<Grouping>,
    /// Whether partitions take the table's schema (true, the default, as in Glue) or keep the
    /// schema found in their own files.
    #[serde(default = "default_true")]
    pub partitions_inherit_table_schema: bool,
    /// Crawl on a schedule. Without one, crawls start on request or from a Trigger or Workflow.
    pub schedule: Option<Schedule>,
    /// Where the crawler keeps what it recorded: the folders each crawl read and an index of every
    /// table's partitions. Needed by recrawlPolicy CrawlNewFoldersOnly; without it, nothing is
    /// recorded.
    pub state: Option<CrawlerState>,
    /// The size of the crawl's pod: `Small` (1 CPU, 2 GiB, the default), `Medium` (2, 8 GiB),
    /// `Large` (4, 16 GiB) or `XLarge` (8, 32 GiB), unless the operator is configured with other
    /// sizes.
    #[serde(default)]
    pub worker_size: WorkerSize,
    /// The ServiceAccount its crawls run as: Glue's per-job IAM role. Bind it to a cloud
    /// identity (IRSA's `eks.amazonaws.com/role-arn` annotation, GKE or Azure workload identity)
    /// so this crawler reaches only what it needs, and give it the runner's Role
    /// (`kglue-operator runner-rbac --name NAME -n NAMESPACE` prints all three objects). Unset:
    /// the operator's runner account (`--runner-service-account`, default `kglue-runner`). A
    /// missing account is reported as `Stalled`, reason `ServiceAccountNotFound`.
    #[schemars(pattern("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"), length(max = 253))]
    pub service_account_name: Option<String>,
    /// Stop a crawl that runs longer than this many minutes (state Timeout). Default 2880 (48 h).
    #[schemars(range(min = 1, max = 10080))]
    pub timeout_minutes: Option<i32>,
    /// How many crawls `status.runs` keeps, newest first.
    #[schemars(range(min = 1, max = 100))]
    #[serde(default = "default_history_limit")]
    pub run_history_limit: i32,
}

/// One location to crawl.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CrawlerTarget {
    /// The object-store URL to crawl: `s3://bucket/prefix/` or `file:///path/`.
    #[schemars(pattern(STORAGE_URL_PATTERN), length(max = 2048))]
    pub path: String,
    /// Glob patterns, relative to `path`, of objects to leave out (`**/tmp/**`, `*.log`). Markers
    /// and hidden files (`_SUCCESS`, `_temporary/`, `*.crc`, names starting with `.` or `_`) are
    /// always left out.
    #[schemars(length(max = 100), inner(length(min = 1, max = 1024)))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<String>,
    /// The Connection that says how to reach an `s3://` path. Unset: the standard AWS environment.
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub connection: Option<String>,
    /// How many files of each folder are read to infer the schema (1–249, as in Glue). Unset:
    /// every file.
    #[schemars(range(min = 1, max = 249))]
    pub sample_size: Option<i32>,
}

/// A database to crawl (Glue's `JdbcTarget`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JdbcTarget {
    /// The `jdbc` Connection that reaches the database (checked by the operator: `Stalled`,
    /// reason `ConnectionNotFound` or `ConnectionTypeMismatch`).
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub connection_name: String,
    /// What to crawl, as Glue writes it: `DATABASE/SCHEMA/TABLE` for PostgreSQL (the database is
    /// the Connection's), `DATABASE/TABLE` for MySQL; the schema and table parts may use `%`
    /// wildcards (`sales/public/%`, `shop/order%`). `_` is a literal underscore.
    #[schemars(length(min = 3, max = 1024))]
    pub path: String,
    /// Glob patterns of tables to leave out, matched against the same `DATABASE/SCHEMA/TABLE` (or
    /// `DATABASE/TABLE`) form: `sales/public/tmp_*`, `**/*_staging`.
    #[schemars(length(max = 100), inner(length(min = 1, max = 1024)))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<String>,
}

/// An object-store location the crawler writes its records to (it needs write access there;
/// the targets themselves are only read).
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CrawlerState {
    /// The URL under which records are kept, e.g. `s3://lake-meta/kglue/`; each crawler writes
    /// below `<location>/<crawler name>/`.
    #[schemars(pattern(STORAGE_URL_PATTERN), length(max = 2048))]
    pub location: String,
    /// The Connection that says how to reach an `s3://` location.
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub connection: Option<String>,
}

/// What a crawl does with changes. As in Glue: `updateBehavior` UpdateInDatabase (default) or Log;
/// The label a crawler puts on the Tables it maintains, so a later crawl finds the ones whose
/// data disappeared, and the operator deletes only a crawler's own Tables for it.
pub const CRAWLER_LABEL: &str = "kglue.dev/crawler";

/// `deleteBehavior` DeleteFromDatabase, DeprecateInDatabase (default) or Log.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SchemaChangePolicy {
    /// When a table's schema changed: `UpdateInDatabase` (the default) merges additive changes
    /// into the Table; `Log` only reports them in the crawl report.
    #[serde(default)]
    pub update_behavior: UpdateBehavior,
    /// When a table's or partition's data disappeared: `DeprecateInDatabase` (the default) keeps
    /// the Table and marks it (or the partitions) deprecated in status; `DeleteFromDatabase`
    /// deletes the Table, or drops the partitions from its summary; `Log` only reports it.
    #[serde(default)]
    pub delete_behavior: DeleteBehavior,
}

/// What to do when a schema changed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UpdateBehavior {
    /// Merge additive changes into the Table.
    #[default]
    UpdateInDatabase,
    /// Only report the change.
    Log,
}

/// What to do when data disappeared.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeleteBehavior {
    /// Delete the Table, or drop the partitions from its summary.
    DeleteFromDatabase,
    /// Keep the Table but mark it (or the partitions) deprecated in status.
    #[default]
    DeprecateInDatabase,
    /// Only report it.
    Log,
}

/// Which folders a crawl reads.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RecrawlPolicy {
    /// Every folder, every time.
    #[default]
    CrawlEverything,
    /// Only folders that are new since the last crawl, from what the crawler recorded.
    CrawlNewFoldersOnly,
}

/// How files are grouped into tables.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.pathTemplates) || !has(self.tableLevel)").message("use either tableLevel or pathTemplates, not both").field_path(".pathTemplates"))]
#[serde(rename_all = "camelCase")]
pub struct Grouping {
    /// The folder depth of table roots below the target path (1 = each folder directly under the
    /// target is a table). Unset: decided by comparing schemas, as Glue does.
    #[schemars(range(min = 1, max = 32))]
    pub table_level: Option<i32>,
    /// Explicit layouts, relative to the target path, tried in order: `{table}` marks the table's
    /// folder, other `{name}` folders are partition keys of that name, `*` matches the files, e.g.
    /// `{table}/{dt}/{region}/*`.
    #[x_kube(validation = Rule::new("self.all(t, t.contains('{table}'))").message("every path template needs a {table} segment"))]
    #[schemars(length(max = 20), inner(length(min = 1, max = 512)))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_templates: Vec<String>,
    /// Fail the crawl, writing nothing, when it would create more tables than this.
    #[schemars(range(min = 1, max = 100000))]
    pub table_threshold: Option<i32>,
    /// Group files with compatible schemas into one table even when folder names differ
    /// (Glue's "create a single schema for each S3 path").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub combine_compatible_schemas: bool,
}

/// Figures of one crawl.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CrawlMetrics {
    /// Tables created.
    pub tables_created: i64,
    /// Tables whose schema or partitions changed.
    pub tables_updated: i64,
    /// Tables found unchanged.
    pub tables_unchanged: i64,
    /// Tables marked deprecated or deleted.
    pub tables_deprecated: i64,
    /// Partitions added.
    pub partitions_added: i64,
    /// Objects listed.
    pub objects_listed: i64,
    /// Objects read to infer schemas.
    pub objects_read: i64,
    /// Objects left out (markers, exclusions, unclassified); the crawl report says why.
    pub objects_skipped: i64,
}

/// What the operator observed of a Crawler, and its crawls.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CrawlerStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub observed: ObservedStatus,
    /// Recent crawls, newest first, at most `spec.runHistoryLimit`.
    #[schemars(length(max = 100))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunRecord<CrawlMetrics>>,
    /// The number of Tables the crawler maintains.
    pub tables: Option<i32>,
    /// When the schedule fires next.
    pub next_scheduled_crawl: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}
