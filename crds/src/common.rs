//! Types that several kinds share: status conventions, run records, storage formats, references.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type: the object can be used as specified (kstatus, Flux and Argo CD read it).
pub const CONDITION_READY: &str = "Ready";
/// Condition type: the operator is acting on the object (a run in progress, a change applied).
pub const CONDITION_RECONCILING: &str = "Reconciling";
/// Condition type: the object cannot work as specified; the message says what to fix.
pub const CONDITION_STALLED: &str = "Stalled";

/// A Glue database or table name: lowercase letters, digits and underscores, as Athena, Trino and
/// Spark accept them without quoting.
pub const CATALOG_NAME_PATTERN: &str = "^[a-z_][a-z0-9_]{0,254}$";

/// A name that is also a SQL identifier (sources, sinks, columns of the script's relations).
pub const SQL_IDENTIFIER_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]{0,127}$";

/// A column name as Glue stores it: anything printable but a backtick or a comma, which would break
/// the `struct<...>` type strings and generated DDL.
pub const COLUMN_NAME_PATTERN: &str = "^[^`,:<>\\s][^`,:<>]{0,254}$";

/// A Glue/Hive column type string. The schema checks the outer form; nested `array<…>`, `map<…>`
/// and `struct<…>` bodies are parsed fully by the operator and the runner (CEL cannot recurse),
/// which report a bad nested type as a condition naming the column.
pub const GLUE_TYPE_PATTERN: &str = "^(boolean|tinyint|smallint|int|integer|bigint|float|double|string|binary|date|timestamp|decimal(\\([1-9][0-9]?(,[0-9][0-9]?)?\\))?|char\\([1-9][0-9]{0,2}\\)|varchar\\([1-9][0-9]{0,4}\\)|(array|map|struct)<.+>)$";

/// An object-store URL: `s3://bucket/prefix`, `s3a://…` (read as `s3://`), or `file:///absolute/path`.
pub const STORAGE_URL_PATTERN: &str = "^(s3a?://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file:///.*)$";

/// A Kubernetes object name (DNS subdomain), used for references to other kglue objects.
pub const OBJECT_NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$";

pub(crate) fn default_true() -> bool {
    true
}

/// The default of every `runHistoryLimit`.
pub(crate) fn default_history_limit() -> i32 {
    10
}

/// `status.observedGeneration` and `status.conditions`, the part of status every kind shares.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObservedStatus {
    /// The `metadata.generation` the operator last reconciled. While it is lower than
    /// `metadata.generation`, the conditions describe an older spec.
    pub observed_generation: Option<i64>,

    /// The object's current state, one entry per type: `Ready` (usable as specified), `Reconciling`
    /// (the operator is acting on it) and `Stalled` (it cannot work as specified; the message says
    /// what to fix). Reasons are CamelCase words.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl ObservedStatus {
    /// The condition of the given type, if the operator has set it.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        self.condition(CONDITION_READY).is_some_and(|c| c.status == "True")
    }
}

/// The state of a job run, a crawl or a workflow node, following Glue's run states in Kubernetes
/// casing. `Waiting`: accepted but held back (max concurrent runs reached). `Starting`: the
/// Kubernetes Job is created, its pod not yet running. `Running`, then one of the final states:
/// `Succeeded`, `Failed` (the run reported an error), `Timeout` (it ran past `timeoutMinutes`),
/// `Stopped` (stopped on request; `Stopping` until its pod is gone), `Error` (kglue itself could
/// not run it, e.g. the Kubernetes Job could not be created). `Settling`: the attempt decided to
/// commit and ended before finishing; a settle attempt finishes the commit, then `Succeeded`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Accepted, held back by max concurrent runs.
    Waiting,
    /// The Kubernetes Job exists; its pod is not running yet.
    Starting,
    /// The runner is working.
    Running,
    /// A stop was requested; the pod is being removed.
    Stopping,
    /// The attempt decided to commit its outputs but its runner ended before finishing; a settle
    /// attempt is finishing the commit (then the run is Succeeded).
    Settling,
    /// Stopped on request.
    Stopped,
    /// Finished, outputs committed.
    Succeeded,
    /// The run reported an error.
    Failed,
    /// Ran past its timeout.
    Timeout,
    /// kglue could not run it.
    Error,
}

impl RunState {
    /// Whether the run has ended and its state will not change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Stopped | RunState::Succeeded | RunState::Failed | RunState::Timeout | RunState::Error
        )
    }
}

/// What asked for a run. `Manual` (the CLI or an annotation written by hand), `Trigger`, `Workflow`
/// or `Schedule` (the object's own schedule).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartedByKind {
    /// The CLI or a hand-written start annotation.
    Manual,
    /// A Trigger.
    Trigger,
    /// A Workflow run.
    Workflow,
    /// The object's own schedule.
    Schedule,
}

/// Who or what started a run.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StartedBy {
    /// The kind of starter.
    pub kind: StartedByKind,
    /// The starter's name: the Trigger or Workflow name (with the workflow run id after a `/`), or
    /// the user recorded in the start request.
    pub name: Option<String>,
}

/// One run of a Job or a Crawler, as kept in the run history (`status.runs`, newest first).
/// `M` is the kind's metrics: figures the runner reported for the attempt.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord<M> {
    /// The run id, unique within the object; the Kubernetes Job of each attempt is named after it.
    pub id: String,
    /// The attempt number, 0 for the first; each retry after a failure adds one.
    #[serde(default)]
    pub attempt: i32,
    /// The start request this run answers (the suffix of its `run.kglue.dev/…` annotation), so that
    /// one request never starts two runs.
    pub request_id: Option<String>,
    /// What started the run.
    pub started_by: StartedBy,
    /// The run's arguments as given by the start request (before the job's defaults and
    /// non-overridable arguments are merged in).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arguments: BTreeMap<String, String>,
    /// The run's state.
    pub state: RunState,
    /// When the run was accepted.
    pub started_at: Option<Time>,
    /// When the run reached a final state.
    pub completed_at: Option<Time>,
    /// Wall time from start to completion, in seconds.
    pub duration_seconds: Option<f64>,
    /// For a Waiting retry: the attempt does not start before this instant (the retry backoff).
    pub not_before: Option<Time>,
    /// The name of the Kubernetes `batch/v1` Job of the current attempt (or of the settle
    /// attempt finishing its commit).
    pub kubernetes_job: Option<String>,
    /// Settle attempts started to finish this attempt's commit (state Settling).
    pub settle_attempts: Option<i32>,
    /// A streaming run: attempts in a row, this one included, that failed without committing a
    /// batch. `maxRetries` bounds it; an attempt that commits a batch starts it again.
    pub failures_in_a_row: Option<i32>,
    /// What happened, in words: the error of a failed run, the reason of a stop.
    pub message: Option<String>,
    /// Figures the runner reported for the run.
    pub metrics: Option<M>,
    /// A distributed Job run (`workers`) that has not ended: its executor pods, as the operator
    /// last saw them.
    pub executors: Option<ExecutorCount>,
    /// The run properties a succeeded Job run set (`spec.runPropertiesFrom`), for the Workflow run
    /// that started it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub run_properties: BTreeMap<String, String>,
}

/// A distributed run's executor pods.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorCount {
    /// Executor pods the run asked for (the Job's `workers`).
    pub requested: i32,
    /// Those running now.
    pub running: i32,
}

/// The size of the pod a run gets. The defaults (overridable in the operator's configuration) are
/// Small: 1 CPU / 2 GiB, Medium: 2 CPU / 8 GiB, Large: 4 CPU / 16 GiB (Glue's G.1X), XLarge: 8 CPU /
/// 32 GiB (G.2X). The runner derives its memory limit, spill space and parallelism from it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WorkerSize {
    /// 1 CPU, 2 GiB by default.
    #[default]
    Small,
    /// 2 CPU, 8 GiB by default.
    Medium,
    /// 4 CPU, 16 GiB by default.
    Large,
    /// 8 CPU, 32 GiB by default.
    XLarge,
}

impl WorkerSize {
    /// Every size, smallest first.
    pub const ALL: [WorkerSize; 4] = [
        WorkerSize::Small,
        WorkerSize::Medium,
        WorkerSize::Large,
        WorkerSize::XLarge,
    ];

    /// The size's name as manifests spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerSize::Small => "Small",
            WorkerSize::Medium => "Medium",
            WorkerSize::Large => "Large",
            WorkerSize::XLarge => "XLarge",
        }
    }

    /// What the size gets unless the operator is configured otherwise (`--worker-sizes`).
    pub fn default_resources(self) -> WorkerResources {
        let (cpu, memory_gib) = match self {
            WorkerSize::Small => (1, 2),
            WorkerSize::Medium => (2, 8),
            WorkerSize::Large => (4, 16),
            WorkerSize::XLarge => (8, 32),
        };
        WorkerResources { cpu, memory_gib }
    }
}

/// The CPU cores and memory of a worker: the pod's requests and limits, and what the runner sizes
/// its memory pool, spill space and parallelism by.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkerResources {
    /// Whole CPU cores.
    pub cpu: u32,
    /// Memory in GiB.
    #[serde(rename = "memoryGiB")]
    pub memory_gib: u32,
}

impl WorkerResources {
    /// The share of a worker's memory the engine's pool gets; the rest is the process itself,
    /// upload buffers and the allocator's slack, so the pod is not OOM-killed before the pool
    /// spills. One rule for a run's pod and a distributed run's executor pods.
    pub const POOL_SHARE: f64 = 0.7;

    /// The engine's memory pool of a worker of this size, in bytes.
    pub fn pool_bytes(&self) -> u64 {
        (f64::from(self.memory_gib) * 1024.0 * 1024.0 * 1024.0 * Self::POOL_SHARE) as u64
    }
}

/// A file format. `Json` is JSON lines, or JSON documents whose records sit at `json.jsonPath`;
/// `Grok` is text lines parsed by `grok.pattern`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    /// Apache Parquet.
    Parquet,
    /// Delimited text.
    Csv,
    /// JSON lines or JSON documents.
    Json,
    /// Apache Avro container files.
    Avro,
    /// Apache ORC.
    Orc,
    /// Text lines parsed by a grok pattern.
    Grok,
    /// A table or view of a database reached through a `jdbc` Connection: `location` is its
    /// qualified name as Glue writes it (`database.schema.table` for PostgreSQL,
    /// `database.table` for MySQL), and `connection` is required.
    Jdbc,
    /// A Kafka topic reached through a `kafka` Connection (Glue's `classification: kafka`):
    /// `location` is the topic's name, `connection` is required, and `kafka.valueFormat` says how
    /// each record's value is encoded. Read by streaming jobs (`spec.streaming`).
    Kafka,
}

impl DataFormat {
    /// The Connection type a storage of this format is reached through: `jdbc` for a database
    /// table, `kafka` for a topic, `s3` for files.
    pub fn connection_type(self) -> &'static str {
        match self {
            DataFormat::Jdbc => "jdbc",
            DataFormat::Kafka => "kafka",
            _ => "s3",
        }
    }
}

/// Compression. For text formats (Csv, Json, Grok) the whole file is compressed: None, Gzip, Bzip2,
/// Xz or Zstd. For Parquet it is the column codec: None, Snappy, Gzip, Zstd or Lz4.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
    /// Zstandard.
    Zstd,
    /// Snappy (Parquet only).
    Snappy,
    /// LZ4 (Parquet only).
    Lz4,
}

/// Options of delimited text.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CsvOptions {
    /// The field delimiter, one character (`,` `\t` `|` `;` …). Default `,`.
    #[schemars(length(min = 1, max = 1))]
    pub delimiter: Option<String>,
    /// The quote character. Default `"`.
    #[schemars(length(min = 1, max = 1))]
    pub quote: Option<String>,
    /// The escape character inside quoted fields; unset means a doubled quote escapes a quote.
    #[schemars(length(min = 1, max = 1))]
    pub escape: Option<String>,
    /// Whether the first line of every file is a header. Default true.
    pub header: Option<bool>,
    /// The text that stands for NULL (e.g. `\N` or an empty string). Unset: only empty fields of
    /// non-string columns are NULL.
    pub null_value: Option<String>,
}

/// Options of JSON data.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct JsonOptions {
    /// Where the records are inside each document, as a JSONPath (`$[*]` for a top-level array,
    /// `$.records[*]` for a field). Unset: every line is one record (JSON lines).
    #[schemars(length(min = 1, max = 1024))]
    pub json_path: Option<String>,
}

/// Options of text lines parsed by a grok pattern.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GrokOptions {
    /// The grok pattern; every named capture becomes a column, e.g.
    /// `%{IP:client} %{WORD:method} %{NUMBER:status:int}`.
    #[schemars(length(min = 1, max = 4096))]
    pub pattern: String,
    /// Extra named patterns the pattern may use, name → regular expression.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_patterns: BTreeMap<String, String>,
}

/// How files are encoded: the format, its compression and format options. The options block must
/// match the format.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.csv) || self.format == 'Csv'").message("csv options are only allowed when format is Csv").field_path(".csv"),
    validation = Rule::new("!has(self.json) || self.format == 'Json'").message("json options are only allowed when format is Json").field_path(".json"),
    validation = Rule::new("has(self.grok) == (self.format == 'Grok')").message("grok options are required when format is Grok, and only allowed then").field_path(".grok"),
    validation = Rule::new("!has(self.compression) || !(self.format in ['Csv', 'Json', 'Grok']) || self.compression in ['None', 'Gzip', 'Bzip2', 'Xz', 'Zstd']").message("compression of Csv, Json and Grok files must be one of None, Gzip, Bzip2, Xz, Zstd").field_path(".compression"),
    validation = Rule::new("!has(self.compression) || self.format != 'Parquet' || self.compression in ['None', 'Snappy', 'Gzip', 'Zstd', 'Lz4']").message("compression of Parquet must be one of None, Snappy, Gzip, Zstd, Lz4").field_path(".compression"),
    validation = Rule::new("!has(self.compression) || !(self.format in ['Avro', 'Orc'])").message("compression cannot be set for Avro and Orc: their files carry their own codec").field_path(".compression"),
)]
#[serde(rename_all = "camelCase")]
pub struct FormatSpec {
    /// The file format: Parquet, Csv, Json, Avro, Orc or Grok.
    pub format: DataFormat,
    /// The compression (see `Compression`); unset means none for text, Snappy for Parquet output.
    pub compression: Option<Compression>,
    /// Delimited-text options (format Csv only).
    pub csv: Option<CsvOptions>,
    /// JSON options (format Json only).
    pub json: Option<JsonOptions>,
    /// Grok options (required with format Grok).
    pub grok: Option<GrokOptions>,
    /// How a Kafka topic's records are encoded (required with format Kafka).
    pub kafka: Option<KafkaOptions>,
}

/// How a Kafka topic's records are encoded.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaOptions {
    /// Each record's value: `Json` (one JSON object; `json` options apply) or `Csv` (one delimited
    /// line; `csv` options apply, without a header).
    pub value_format: KafkaValueFormat,
}

/// The encoding of a Kafka record's value.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaValueFormat {
    /// One JSON object per record.
    Json,
    /// One delimited line per record.
    Csv,
}

/// Where data lives and how it is encoded.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new(r#"self.format == 'Jdbc' ? self.location.matches('^[^.\\s/"]+(\\.[^.\\s/"]+){1,2}$') : self.format == 'Kafka' ? self.location.matches('^[a-zA-Z0-9._-]{1,249}$') : self.location.matches('^(s3a?://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file:///.*)$')"#).message("location must be an object-store URL (s3://bucket/prefix/ or file:///path/), with format Jdbc the table's qualified name (database.schema.table or database.table), with format Kafka the topic's name").field_path(".location"),
    validation = Rule::new("self.format != 'Jdbc' || has(self.connection)").message("format Jdbc needs connection: the jdbc Connection that reaches the database").field_path(".connection"),
    validation = Rule::new("self.format != 'Kafka' || (has(self.connection) && has(self.kafka))").message("format Kafka needs connection (the kafka Connection of the cluster) and kafka.valueFormat").field_path(".format"),
    validation = Rule::new("self.format == 'Kafka' || !has(self.kafka)").message("kafka options are for format Kafka").field_path(".kafka"),
    validation = Rule::new("self.format != 'Jdbc' || !(has(self.compression) || has(self.csv) || has(self.json) || has(self.grok))").message("format Jdbc takes no compression, csv, json or grok options: the database encodes its own rows").field_path(".format"),
)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// The object-store URL of the data: `s3://bucket/prefix/` or `file:///path/`. For a table, the
    /// root under which its files and partition folders live. With format `Jdbc`: the table's
    /// qualified name in the database, `database.schema.table` (PostgreSQL) or `database.table`
    /// (MySQL), as Glue's catalog writes it.
    #[schemars(length(min = 1, max = 2048))]
    pub location: String,
    /// The file format, compression and format options.
    #[serde(flatten)]
    pub format: FormatSpec,
    /// The Connection (in the same namespace) that says how to reach an `s3://` location: endpoint,
    /// region, addressing style, credentials. Unset: the standard AWS environment variables of the
    /// runner. With format `Jdbc`, the `jdbc` Connection of the database (required). Checked by
    /// the operator (`Stalled`, reason `ConnectionNotFound`, or `ConnectionTypeMismatch` for a
    /// Connection of the other type).
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub connection: Option<String>,
}

/// A column: a name, a Glue/Hive type string and an optional comment.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Column {
    /// The column name.
    #[schemars(pattern(COLUMN_NAME_PATTERN), length(min = 1, max = 255))]
    pub name: String,
    /// The Glue/Hive type: boolean, tinyint, smallint, int, bigint, float, double, decimal(p,s),
    /// string, char(n), varchar(n), binary, date, timestamp, array<T>, map<K,V>,
    /// struct<name:T,…>.
    #[serde(rename = "type")]
    #[schemars(pattern(GLUE_TYPE_PATTERN))]
    pub type_: String,
    /// A description of the column.
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
}

impl std::fmt::Display for Column {
    /// `name type`, as DDL and reports show a column.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.type_)
    }
}

/// A reference to a catalog table by its Glue names.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct TableRef {
    /// The Glue database name (a Database's `spec.databaseName`).
    #[schemars(pattern(CATALOG_NAME_PATTERN))]
    pub database: String,
    /// The Glue table name (a Table's `spec.tableName`).
    #[schemars(pattern(CATALOG_NAME_PATTERN))]
    pub table: String,
}

/// The operator's own schedule of an object: a cron expression and a time zone.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// A 5-field cron expression (`0 3 * * *`) or Glue's 6-field form (`cron(0 3 * * ? *)`).
    /// Checked by the operator, which sets `Stalled` with reason `InvalidSchedule` when it does not
    /// parse.
    #[schemars(length(min = 1, max = 256))]
    pub cron: String,
    /// The IANA time zone the expression is read in. Default `UTC`.
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
}

/// The most characters a run record's `message` keeps: a run's error can be long (an engine plan,
/// an API server's answer), and the history keeps up to 100 records in one object.
pub const MAX_RUN_MESSAGE_CHARS: usize = 2048;

/// `message` cut to [`MAX_RUN_MESSAGE_CHARS`]: its start and its end (where errors name what
/// and where, and what the server said), joined by a note of how much was cut.
pub fn cap_run_message(message: &str) -> String {
    let total = message.chars().count();
    if total <= MAX_RUN_MESSAGE_CHARS {
        return message.to_string();
    }
    let (head, tail) = (MAX_RUN_MESSAGE_CHARS * 2 / 3, MAX_RUN_MESSAGE_CHARS / 4);
    let cut = total - head - tail;
    let start: String = message.chars().take(head).collect();
    let end: String = message.chars().skip(total - tail).collect();
    format!("{start} …[{cut} characters cut]… {end}")
}

/// The schema of a list of arbitrary JSON objects the API server keeps as they are.
pub fn preserve_unknown_objects(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_are_the_ones_that_do_not_change() {
        let all = [
            RunState::Waiting,
            RunState::Starting,
            RunState::Running,
            RunState::Stopping,
            RunState::Settling,
            RunState::Stopped,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Timeout,
            RunState::Error,
        ];
        let final_states: Vec<_> = all.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(
            final_states,
            [
                RunState::Stopped,
                RunState::Succeeded,
                RunState::Failed,
                RunState::Timeout,
                RunState::Error
            ]
        );
    }

    #[test]
    fn long_run_messages_keep_their_start_and_end_within_the_cap() {
        assert_eq!(cap_run_message("short"), "short");
        let long = format!("source orders: {}the server said: conflict", "é".repeat(50_000));
        let capped = cap_run_message(&long);
        assert!(capped.chars().count() <= MAX_RUN_MESSAGE_CHARS);
        assert!(capped.starts_with("source orders: ") && capped.ends_with("the server said: conflict"));
        assert!(capped.contains("characters cut]"), "{capped}");
    }

    #[test]
    fn ready_reads_the_ready_condition_only() {
        let condition = |type_: &str, status: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "Test".into(),
            message: String::new(),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        };
        let mut status = ObservedStatus::default();
        assert!(!status.is_ready());
        status.conditions.push(condition(CONDITION_STALLED, "True"));
        assert!(!status.is_ready());
        status.conditions.push(condition(CONDITION_READY, "True"));
        assert!(status.is_ready());
    }
}
