//! `Job`: an ETL job — SQL over named sources, written to named sinks — and its runs and bookmark.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    OBJECT_NAME_PATTERN, ObservedStatus, RunRecord, SQL_IDENTIFIER_PATTERN, StorageSpec, TableRef, WorkerSize,
    default_history_limit,
};

/// An ETL job.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kglue.dev",
    version = "v1alpha1",
    kind = "Job",
    namespaced,
    status = "JobStatus",
    shortname = "kgjob",
    category = "kglue",
    doc = "An ETL job (Glue job): named sources registered as tables, a SQL script, and named sinks its results are written to. Each run is a Kubernetes Job running the kglue runner; runs, metrics and the job bookmark are recorded in status. `kubectl get job` means batch/v1 Jobs: use `kubectl get kgjob` or `jobs.kglue.dev`.",
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Last Run", "type": "string", "jsonPath": ".status.runs[0].state"}"#,
    printcolumn = r#"{"name": "Started", "type": "date", "jsonPath": ".status.runs[0].startedAt"}"#,
    printcolumn = r#"{"name": "Duration", "type": "number", "jsonPath": ".status.runs[0].durationSeconds"}"#,
    printcolumn = r#"{"name": "Bookmark", "type": "string", "jsonPath": ".spec.bookmark.option"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("!has(self.streaming) || !has(self.workers) || self.workers == 1").message("a streaming job runs in one pod: remove workers, or set it to 1").field_path(".workers")
)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// What the job does.
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// The inputs. Each is registered in the SQL session as a table named after the source.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(min = 1, max = 64))]
    pub sources: Vec<JobSource>,
    /// The script: one or more SQL statements separated by `;`. Sources are tables named after
    /// them; `CREATE VIEW` (and `CREATE TABLE … AS SELECT`) statements define the relations sinks
    /// read, and no other statement is allowed (nothing that reads a path, writes, or changes the
    /// session); `$name` placeholders are bound to the run's arguments as parameters (never
    /// spliced into the text).
    #[schemars(length(min = 1, max = 262144))]
    pub sql: String,
    /// The outputs, each written from one relation of the script.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(min = 1, max = 32))]
    pub sinks: Vec<JobSink>,
    /// A relation of the script with string columns `name` and `value`: its rows (at most 64,
    /// names that are SQL identifiers) are the run properties this run sets. They are part of the
    /// run result, recorded with the run, and a Workflow that started the run merges them into its
    /// run's properties, which the nodes after it receive as arguments. Evaluated before the
    /// outputs are committed: a relation that is missing or malformed fails the run.
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"), length(max = 128))]
    pub run_properties_from: Option<String>,
    /// Arguments every run gets unless the start request overrides them.
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))").message("argument names must be SQL identifiers (letters, digits, underscores), because the script refers to them as $name"))]
    #[schemars(extend("maxProperties" = 64))]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_arguments: BTreeMap<String, String>,
    /// Arguments a start request cannot override (Glue's non-overridable arguments).
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))").message("argument names must be SQL identifiers (letters, digits, underscores), because the script refers to them as $name"))]
    #[schemars(extend("maxProperties" = 64))]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub non_overridable_arguments: BTreeMap<String, String>,
    /// The size of each run's pod: `Small` (1 CPU, 2 GiB, the default), `Medium` (2, 8 GiB),
    /// `Large` (4, 16 GiB) or `XLarge` (8, 32 GiB), unless the operator is configured with other
    /// sizes. The runner sizes its memory pool, spill and parallelism from it.
    #[serde(default)]
    pub worker_size: WorkerSize,
    /// How many pods run a batch run's plans (Glue's `NumberOfWorkers`), each of `workerSize`.
    /// Unset or 1: the whole run is one pod. Above 1 the run is distributed: the run's pod plans
    /// the script and hosts an Apache Ballista scheduler, this many executor pods run the plans'
    /// stages (moving rows between them for joins, aggregations and partitioned writes) and
    /// write the sinks' files staged, and the run's pod commits them exactly as a one-pod run
    /// does (docs/scaling.md). A streaming job runs in one pod.
    #[schemars(range(min = 1, max = 64))]
    pub workers: Option<i32>,
    /// The ServiceAccount its run attempts run as: Glue's per-job IAM role. Bind it to a cloud
    /// identity (IRSA's `eks.amazonaws.com/role-arn` annotation, GKE or Azure workload identity)
    /// so this pipeline reaches only what it needs, and give it the runner's Role
    /// (`kglue-operator runner-rbac --name NAME -n NAMESPACE` prints all three objects). Unset:
    /// the operator's runner account (`--runner-service-account`, default `kglue-runner`). A
    /// missing account is reported as `Stalled`, reason `ServiceAccountNotFound`.
    #[schemars(pattern("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"), length(max = 253))]
    pub service_account_name: Option<String>,
    /// Stop a run that takes longer than this many minutes (state Timeout). Default 2880 (48 h), as
    /// in Glue.
    #[schemars(range(min = 1, max = 10080))]
    #[serde(default = "default_job_timeout")]
    pub timeout_minutes: i32,
    /// How many times a failed run is retried, with backoff, before it is recorded as Failed.
    #[schemars(range(min = 0, max = 10))]
    #[serde(default)]
    pub max_retries: i32,
    /// How many runs may be active at once; further start requests wait (state Waiting).
    #[schemars(range(min = 1, max = 100))]
    #[serde(default = "default_max_concurrent_runs")]
    pub max_concurrent_runs: i32,
    /// Whether runs remember what they processed.
    #[serde(default)]
    pub bookmark: BookmarkSpec,
    /// How many runs `status.runs` keeps, newest first.
    #[schemars(range(min = 1, max = 100))]
    #[serde(default = "default_history_limit")]
    pub run_history_limit: i32,
    /// Run as a streaming job (Glue's `gluestreaming`): the one source whose Table has format
    /// Kafka is read in micro-batches, each batch running the script over its records (joins with
    /// the other sources allowed) and committing its sinks together with the offsets it consumed
    /// (docs/streaming.md).
    pub streaming: Option<StreamingSpec>,
}

impl JobSpec {
    /// The executors of a distributed run (`workers` above 1, a batch job), `None` for a run in
    /// one pod. The operator starts this many executor pods; the runner waits for them.
    pub fn executors(&self) -> Option<u32> {
        let workers = u32::try_from(self.workers.unwrap_or(1)).unwrap_or(1);
        (workers > 1 && self.streaming.is_none()).then_some(workers)
    }
}

/// How a streaming job reads its topic and commits its batches.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamingSpec {
    /// The length of a micro-batch in seconds (Glue's `windowSize`): records that arrive within it
    /// are processed and committed together. Default 100.
    #[schemars(range(min = 1, max = 3600))]
    #[serde(default = "default_window_seconds")]
    pub window_seconds: u32,
    /// The most records one batch takes (across partitions); the rest wait for the next batch.
    /// Unset: no limit but the window.
    #[schemars(range(min = 1, max = 100000000))]
    pub max_records_per_batch: Option<u64>,
    /// Where a stream with no checkpoint starts: `earliest` (every record the topic still holds)
    /// or `latest` (records produced from now on). Default `latest`, as in Glue.
    #[serde(default)]
    pub starting_offsets: StartingOffsets,
    /// Where the stream's checkpoint is kept: one record per committed batch, holding the offsets
    /// it consumed (docs/streaming.md). Unset: `_kglue_checkpoint/<job name>/` under the first
    /// sink's location.
    pub checkpoint: Option<StorageLocation>,
    /// Where records that do not parse go, as JSON lines naming their topic, partition, offset
    /// and the reason. Unset: `_kglue_dead_letter/<job name>/` under the first sink's location.
    pub dead_letter: Option<StorageLocation>,
    /// Stop the stream (the run fails) at the first record that does not parse, instead of
    /// sending it to the dead-letter location.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_on_bad_record: bool,
}

/// What a streaming run is doing, as its runner reports it after every batch and every change
/// of state (`RunResult.status.streaming`), mirrored by the operator into the Job's
/// `status.streaming` for people and dashboards. The checkpoint, not this, is what a restarted
/// stream resumes from.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamProgress {
    /// The run and attempt reporting.
    pub run_id: Option<String>,
    /// The attempt reporting.
    #[serde(default)]
    pub attempt: i32,
    /// What the stream is doing.
    #[serde(default)]
    pub state: StreamState,
    /// Since when it is in this state.
    pub since: Option<MicroTime>,
    /// Why (an outage's error, a failure's error).
    #[schemars(length(max = 4096))]
    pub message: Option<String>,
    /// The newest committed batch (batch numbers go on across attempts and runs).
    pub last_batch: Option<i64>,
    /// When it committed.
    pub last_batch_at: Option<MicroTime>,
    /// Records it read, bad ones included.
    pub last_batch_records: Option<i64>,
    /// Seconds from its window's start to its commit.
    pub last_batch_seconds: Option<f64>,
    /// Batches this attempt committed.
    #[serde(default)]
    pub batches: i64,
    /// Records read by the batches this attempt committed, bad ones included.
    #[serde(default)]
    pub records: i64,
    /// Records this attempt sent to the dead-letter location.
    #[serde(default)]
    pub bad_records: i64,
    /// Records per second over the newest batch's window (from the previous commit to its own).
    pub records_per_second: Option<f64>,
    /// Bytes of record values per second over the same span.
    pub bytes_per_second: Option<f64>,
    /// Records the topic holds beyond the newest committed batch, summed over partitions.
    pub lag: Option<i64>,
    /// Per partition: the next offset to read (committed) and the records behind the end the
    /// stream last saw.
    #[schemars(length(max = 1000))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionLag>,
}

/// What a streaming run is doing.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StreamState {
    /// Opening the topic, finishing the last recorded batch.
    #[default]
    Starting,
    /// Reading and committing batches.
    Running,
    /// Kafka cannot be reached or read: retried with backoff, nothing lost (`message` says why).
    Outage,
    /// Ending after the batch in progress (a stop, or a roll to a new spec).
    Stopping,
    /// Ended on request.
    Stopped,
    /// Ended by an error (`message`); the run restarts it when retries allow.
    Failed,
}

/// One partition's place in a stream.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: i32,
    /// The next offset to read (the newest committed batch's end).
    pub offset: i64,
    /// Records behind the partition's end as the stream last saw it.
    pub lag: i64,
}

/// An object-store location and the Connection that reaches it.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageLocation {
    /// `s3://bucket/prefix/` or `file:///path/`.
    #[schemars(
        pattern("^(s3a?://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file:///.*)$"),
        length(max = 2048)
    )]
    pub location: String,
    /// The `s3` Connection; unset: the standard AWS environment.
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub connection: Option<String>,
}

/// Where a stream without a checkpoint starts.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartingOffsets {
    /// The oldest records the topic holds.
    Earliest,
    /// Records produced after the stream starts.
    #[default]
    Latest,
}

fn default_window_seconds() -> u32 {
    100
}

fn default_job_timeout() -> i32 {
    2880
}

fn default_max_concurrent_runs() -> i32 {
    1
}

/// An input of a job: a catalog table, or files at a location.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.table) ? 1 : 0) + (has(self.storage) ? 1 : 0) + (has(self.jdbc) && has(self.jdbc.query) ? 1 : 0) == 1").message("a source needs exactly one of table, storage or jdbc.query"),
    validation = Rule::new("!has(self.jdbc) || has(self.jdbc.query) == has(self.jdbc.connection)").message("jdbc.query needs jdbc.connection, and jdbc.connection is only for a query (a table or storage source is reached through its own connection)").field_path(".jdbc"),
)]
#[serde(rename_all = "camelCase")]
pub struct JobSource {
    /// The name the script uses for the source, and the key of its bookmark. Renaming a source
    /// starts its bookmark afresh.
    #[schemars(pattern(SQL_IDENTIFIER_PATTERN))]
    pub name: String,
    /// Read a catalog table: its location, format, columns and partitions come from the Table.
    /// Checked by the operator (`Stalled`, reason `TableNotFound`).
    pub table: Option<TableRef>,
    /// Read files at a location in a given format, or (format `Jdbc`) a database table.
    pub storage: Option<StorageSpec>,
    /// How to read a database: a table source whose Table (or storage) has format `Jdbc`, or a
    /// `query` of its own. Glue's JDBC connection options (`hashfield`, `hashpartitions`,
    /// `jobBookmarkKeys`).
    pub jdbc: Option<JdbcSource>,
}

/// How a job reads a database.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("!has(self.numPartitions) || self.numPartitions == 1 || has(self.partitionColumn)").message("numPartitions above 1 needs partitionColumn: the column the reads are split on").field_path(".numPartitions"),
    validation = Rule::new("has(self.lowerBound) == has(self.upperBound)").message("set both lowerBound and upperBound, or neither (then they are read from the table)").field_path(".lowerBound"),
    validation = Rule::new("!has(self.lowerBound) || self.lowerBound < self.upperBound").message("lowerBound must be below upperBound").field_path(".lowerBound"),
    validation = Rule::new("!has(self.query) || !has(self.bookmarkKeys)").message("bookmarkKeys need a table: a query's rows have no key the database can seek by; read a table or a view").field_path(".bookmarkKeys"),
)]
#[serde(rename_all = "camelCase")]
pub struct JdbcSource {
    /// A query of its own, run in the database (then `connection` is required, and the source
    /// has no table or storage). Filters of the script are applied around it.
    #[schemars(length(min = 1, max = 262144))]
    pub query: Option<String>,
    /// The `jdbc` Connection a `query` runs through.
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub connection: Option<String>,
    /// A whole-number column to split the read on (Spark's `partitionColumn`, Glue's
    /// `hashfield`): `numPartitions` reads of ranges of it run at once, on their own sessions.
    #[schemars(length(min = 1, max = 255))]
    pub partition_column: Option<String>,
    /// How many reads run at once (Glue's `hashpartitions`). Default 1.
    #[schemars(range(min = 1, max = 64))]
    pub num_partitions: Option<i32>,
    /// The range `partitionColumn`'s values are split over; rows outside it are still read (by
    /// the first and last reads). Unset: the column's minimum and maximum, read before the run.
    pub lower_bound: Option<i64>,
    /// See `lowerBound`.
    pub upper_bound: Option<i64>,
    /// Rows per batch handed to the engine (Glue's `fetchsize`). Both engines stream the result
    /// (PostgreSQL as a binary COPY), held back by the engine's pace, so memory stays bounded
    /// whatever it is. Default 10000.
    #[schemars(range(min = 1, max = 1000000))]
    pub fetch_size: Option<i32>,
    /// The columns of a key bookmark (Glue's `jobBookmarkKeys`): with the job's bookmark enabled
    /// a run reads only rows whose key is above the greatest key an earlier committed run read.
    /// The key must only grow (an identity column, an insert timestamp): rows written later
    /// with a smaller key, and rows whose key is null, are never read. Several columns compare
    /// as one tuple, in this order. Whole numbers, decimals, strings, dates and timestamps.
    #[schemars(length(max = 4), inner(length(min = 1, max = 255)))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bookmark_keys: Vec<String>,
}

impl JdbcSource {
    /// The default `fetchSize`.
    pub const DEFAULT_FETCH_SIZE: i32 = 10_000;
}

/// How a sink treats data already at its location.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Add new files beside the existing ones.
    #[default]
    Append,
    /// Replace everything at the location once the run succeeds.
    Overwrite,
    /// Replace only the partitions the run writes (needs `partitionBy`).
    OverwritePartitions,
    /// Database tables only: update the rows whose key exists, insert the rest (`jdbc.upsertKeys`,
    /// or the table's primary key).
    Upsert,
}

/// An output of a job.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.storage) || has(self.table)").message("a sink needs storage, a table, or both"),
    validation = Rule::new("!has(self.storage) || self.storage.format in ['Parquet', 'Csv', 'Json', 'Jdbc']").message("a sink writes Parquet, Csv or Json files, or a database table (Jdbc)").field_path(".storage.format"),
    validation = Rule::new("!has(self.storage) || self.storage.format != 'Jdbc' || (self.writeMode != 'OverwritePartitions' && !has(self.partitionBy))").message("a database table has no partition folders: use writeMode Append, Overwrite or Upsert without partitionBy").field_path(".writeMode"),
    validation = Rule::new("!has(self.storage) || self.storage.format == 'Jdbc' || (self.writeMode != 'Upsert' && !has(self.jdbc))").message("writeMode Upsert and jdbc options are for database tables (storage format Jdbc)").field_path(".writeMode"),
    validation = Rule::new("self.writeMode != 'OverwritePartitions' || (has(self.partitionBy) && size(self.partitionBy) > 0)").message("writeMode OverwritePartitions needs partitionBy").field_path(".writeMode"),
)]
#[serde(rename_all = "camelCase")]
pub struct JobSink {
    /// The sink's name; also the relation it reads unless `from` is set.
    #[schemars(pattern(SQL_IDENTIFIER_PATTERN))]
    pub name: String,
    /// The relation of the script (a view or table name) whose rows the sink writes. Default: the
    /// sink's name.
    #[schemars(pattern(SQL_IDENTIFIER_PATTERN))]
    pub from: Option<String>,
    /// Where and how to write. Unset: the location and format of `table`, which must exist.
    pub storage: Option<StorageSpec>,
    /// Columns whose values become Hive-style folders (`dt=2024-01-01/`), outermost first.
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 16), inner(pattern(SQL_IDENTIFIER_PATTERN)))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_by: Vec<String>,
    /// The size, in MiB, at which an output file is closed and the next one started. Default 128.
    #[schemars(range(min = 1, max = 10240))]
    pub target_file_size_mb: Option<i32>,
    /// `Append` (the default): add new files beside the existing ones. `Overwrite`: replace
    /// everything under the location once the run commits. `OverwritePartitions`: replace only the
    /// partitions the run writes (needs `partitionBy`). `Upsert` (database tables): update rows
    /// whose key exists, insert the rest. A database table is written in one transaction per
    /// run, so readers see its rows before the run or after it.
    #[serde(default)]
    pub write_mode: WriteMode,
    /// The catalog table to create or update with the output's schema and partitions. If it
    /// exists with `schemaLocked`, output that does not fit fails the run.
    pub table: Option<TableRef>,
    /// How a database table (format Jdbc) is written.
    pub jdbc: Option<JdbcSink>,
}

/// How a job writes a database table.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct JdbcSink {
    /// The key of writeMode Upsert. Unset: the table's primary key.
    #[schemars(length(max = 16), inner(length(min = 1, max = 255)))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upsert_keys: Vec<String>,
    /// Create the table from the output's columns when it does not exist (with `upsertKeys` as
    /// its primary key). Without it, a missing table fails the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_table: bool,
}

impl JobSink {
    /// Where the sink writes: its own `storage`, else its table's (`table_storage` looks the
    /// table up). `None` when it has neither (the operator reports that as Stalled). The one
    /// rule the operator (which serialises writers of a location) and the runner share.
    pub fn storage_in<'a>(
        &'a self,
        table_storage: impl Fn(&TableRef) -> Option<&'a StorageSpec>,
    ) -> Option<&'a StorageSpec> {
        match (&self.storage, &self.table) {
            (Some(storage), _) => Some(storage),
            (None, Some(table)) => table_storage(table),
            (None, None) => None,
        }
    }
}

/// Glue's job bookmark option.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BookmarkOption {
    /// Read only what earlier runs did not process, and advance the bookmark when the run commits.
    Enable,
    /// Read everything every run (the default, as in Glue).
    #[default]
    Disable,
    /// Read from the bookmark but do not advance it.
    Pause,
}

/// Job bookmark settings.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BookmarkSpec {
    /// `Enable`: read only what earlier committed runs did not process, and advance the bookmark
    /// when the run's output is committed. `Disable` (the default, as in Glue): read everything
    /// every run. `Pause`: read what is new since the committed bookmark without advancing it.
    #[serde(default)]
    pub option: BookmarkOption,
    /// Objects modified less than this many seconds before a run's listing are re-checked by the
    /// next run, so that late-arriving and same-second objects are neither skipped nor read twice.
    /// Default 60.
    #[schemars(range(min = 0, max = 86400))]
    pub safety_band_seconds: Option<i32>,
}

/// Figures of one job run.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobRunMetrics {
    /// Per source (by name): rows, bytes and objects read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, SourceMetrics>,
    /// Per sink (by name): rows, files and bytes written, partitions added.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sinks: BTreeMap<String, SinkMetrics>,
    /// Seconds spent per phase: `plan`, `execute`, `write`, `catalog`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub phase_seconds: BTreeMap<String, f64>,
    /// A run spread over several executors: the executors and the stages each sink's plan ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkerMetrics>,
}

/// What a distributed run (`kglue run --workers N`) ran on.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerMetrics {
    /// Executors the run's plans were spread over.
    pub executors: i64,
    /// Task slots of each executor.
    pub slots_per_executor: i64,
    /// Per file sink, the stages its plan was cut into at its shuffles, in the order they ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageMetrics>,
}

/// One stage of a distributed sink's plan.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StageMetrics {
    /// The sink whose plan the stage belongs to.
    pub sink: String,
    /// The stage's number within the sink's plan.
    pub stage: i64,
    /// Tasks (partitions) the stage ran.
    pub tasks: i64,
    /// Rows the stage handed on: to the next stage's shuffle, or, for the last stage, to the
    /// staged files.
    pub rows: i64,
    /// Seconds of work its operators measured, summed over the stage's tasks: compute, the
    /// decoding of source files and the writing of shuffle files (CPU time more than wall time:
    /// tasks run side by side).
    pub compute_seconds: f64,
    /// Seconds from the stage's first task starting to its last task ending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
    /// Bytes the stage's tasks wrote to the shuffle for the stages after it (none for the last
    /// stage, which writes the sink's staged files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_bytes: Option<i64>,
}

/// What a run read from one source.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceMetrics {
    /// Rows read.
    pub rows: i64,
    /// Bytes read.
    pub bytes: i64,
    /// Objects read.
    pub objects: i64,
    /// New objects left for the next run: so many landed inside the bookmark's safety band that
    /// their keys would not fit the bookmark; once older than the band they are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_deferred: Option<i64>,
}

/// What a run wrote to one sink.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SinkMetrics {
    /// Rows written.
    pub rows: i64,
    /// Files written.
    pub files: i64,
    /// Bytes written.
    pub bytes: i64,
    /// Partitions that did not exist before.
    pub partitions_added: i64,
}

/// The committed bookmark: what earlier runs processed, per source.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobBookmark {
    /// The run whose committed output moved the bookmark here.
    pub run_id: Option<String>,
    /// When it was committed.
    pub committed_at: Option<Time>,
    /// Per source, keyed by the source's name in the spec.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, SourceBookmark>,
}

/// What has been processed of one source.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceBookmark {
    /// Every object last modified before this instant minus the safety band has been processed.
    pub watermark: Option<MicroTime>,
    /// Keys of objects inside the safety band that were already processed, so the next run skips
    /// them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_keys: Vec<String>,
    /// A database source's key bookmark (`jdbc.bookmarkKeys`): the greatest key read by the
    /// committed runs, one value per key column, in key order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<KeyValue>,
    /// A Kafka source's committed position: per partition, the next offset to read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offsets: Vec<PartitionOffset>,
}

/// The next offset to read of one partition of a topic.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOffset {
    /// The partition.
    pub partition: i32,
    /// The offset of the next record to read.
    pub offset: i64,
}

/// One column's value of a key bookmark, as text (the database parses it back as the column's
/// type).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key column.
    pub column: String,
    /// Its value.
    pub value: String,
}

/// What the operator observed of a Job, its runs and bookmark.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub observed: ObservedStatus,
    /// Recent runs, newest first, at most `spec.runHistoryLimit`.
    #[schemars(length(max = 100))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunRecord<JobRunMetrics>>,
    /// The committed bookmark (only the operator writes it, once per successful run).
    pub bookmark: Option<JobBookmark>,
    /// The bookmarks recent committing runs started from, newest first (at most 10), so that
    /// `kglue bookmark rewind --to-run ID` can return to the one run ID read from.
    #[schemars(length(max = 10))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bookmark_history: Vec<BookmarkHistoryEntry>,
    /// A streaming job's newest run as its runner last reported it (docs/streaming.md).
    pub streaming: Option<StreamProgress>,
}

/// The bookmark a run started from.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BookmarkHistoryEntry {
    /// The run that started from it (and whose commit replaced it).
    pub run_id: String,
    /// The bookmark; unset when the run started with none.
    pub bookmark: Option<JobBookmark>,
}
