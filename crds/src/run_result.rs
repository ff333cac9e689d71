//! `RunResult`: what a runner reports about one attempt of a Job run or a crawl.
//!
//! The runner is never the writer of run status or bookmarks (brief §3): it creates one
//! RunResult per attempt, named after the attempt's Kubernetes Job and owned by it, and exits.
//! The operator reads it when the Kubernetes Job finishes and commits the run record and the
//! bookmark in one status write. The owner reference makes the RunResult go away with the
//! Kubernetes Job (its TTL), and lets the operator reject a result whose owner UID is not the
//! attempt's Job, and whose pod (`spec.pod`, held to the creator's token by the chart's admission
//! policy) is not one of the attempt's: another pod's token cannot forge another run's result.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crawler::CrawlMetrics;
use crate::job::{JobBookmark, JobRunMetrics, WriteMode};

/// The kind of object a run belongs to.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOwnerKind {
    /// A `Job` (ETL run).
    Job,
    /// A `Crawler` (crawl).
    Crawler,
}

impl RunOwnerKind {
    /// The kind's name, as in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOwnerKind::Job => "Job",
            RunOwnerKind::Crawler => "Crawler",
        }
    }
}

/// How an attempt ended, as the runner saw it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Outputs and catalog committed; the proposed bookmark may be committed.
    Succeeded,
    /// The attempt failed; nothing of it may be committed.
    Failed,
    /// A Job attempt decided to commit: from this report on, its outputs are committed (the
    /// decision is creating this RunResult, before any file moves). The runner's exit code 0
    /// says it finished the commit; otherwise a settle attempt finishes it from `job.commit`.
    Committing,
    /// A streaming attempt at work, created when it starts: its progress is in
    /// `status.streaming` (the one part of a RunResult that changes, and only by the attempt's own
    /// pod), and how it ended is its Kubernetes Job's: exit 0 after a stop, else a failure.
    Streaming,
}

/// One attempt's report.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kglue.dev",
    version = "v1alpha1",
    kind = "RunResult",
    namespaced,
    shortname = "kgresult",
    doc = "What a kglue runner reports about one attempt of a Job run or a crawl. Created by the runner, read by the operator (which alone records runs and bookmarks), and removed with the attempt's Kubernetes Job. Not meant to be written by hand.",
    printcolumn = r#"{"name": "Kind", "type": "string", "jsonPath": ".spec.ownerKind"}"#,
    printcolumn = r#"{"name": "Owner", "type": "string", "jsonPath": ".spec.ownerName"}"#,
    printcolumn = r#"{"name": "Run", "type": "string", "jsonPath": ".spec.runId"}"#,
    printcolumn = r#"{"name": "Attempt", "type": "integer", "jsonPath": ".spec.attempt"}"#,
    printcolumn = r#"{"name": "Outcome", "type": "string", "jsonPath": ".spec.outcome"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
    status = "RunResultStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct RunResultSpec {
    /// Job or Crawler.
    pub owner_kind: RunOwnerKind,
    /// The Job's or Crawler's name.
    pub owner_name: String,
    /// The run id.
    pub run_id: String,
    /// The attempt, 0 for the first.
    pub attempt: i32,
    /// Succeeded or Failed.
    pub outcome: AttemptOutcome,
    /// The error of a failed attempt, naming the source, sink, statement, object or column.
    #[schemars(length(max = 32768))]
    pub error: Option<String>,
    /// When the runner finished.
    pub finished_at: Option<Time>,
    /// Wall time of the attempt inside the runner, in seconds.
    #[serde(default)]
    pub duration_seconds: f64,
    /// What a Job run did (ownerKind Job).
    pub job: Option<JobAttemptReport>,
    /// What a crawl did (ownerKind Crawler).
    pub crawl: Option<CrawlMetrics>,
    /// The pod that created this result. The chart's admission policy holds it to the pod its
    /// service-account token is bound to, and the operator counts the result only when that pod is
    /// one of the attempt's (docs/security.md).
    pub pod: Option<ReportingPod>,
    /// The Tables (object names) a crawl with `deleteBehavior: DeleteFromDatabase` found without
    /// data. A runner may not delete Tables: the operator deletes them, those labelled as the
    /// crawler's only, when it records the crawl.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_tables: Vec<String>,
}

/// What changes while an attempt runs: a streaming attempt's progress. Written by the attempt's
/// own pod (server-side apply, field manager `kglue-stream`; the admission policy holds the
/// writer to the attempt's pod as for the create).
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunResultStatus {
    /// A streaming attempt's progress, mirrored into the Job's `status.streaming`.
    pub streaming: Option<crate::job::StreamProgress>,
}

/// The pod a RunResult comes from.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportingPod {
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
}

/// A Job attempt's figures and bookmark.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobAttemptReport {
    /// Rows, bytes and objects read per source; rows, files, bytes and partitions added per sink;
    /// seconds per phase.
    #[serde(default)]
    pub metrics: JobRunMetrics,
    /// The bookmark the attempt read from.
    pub started_from: Option<JobBookmark>,
    /// The bookmark to commit with the run (bookmark option Enable, outcome Succeeded).
    pub next_bookmark: Option<JobBookmark>,
    /// The run properties the attempt set (`spec.runPropertiesFrom`, outcome Succeeded).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub run_properties: BTreeMap<String, String>,
    /// What finishing the commit takes (outcome Committing): the sinks whose staged files move
    /// into place, and the catalog writes after them.
    pub commit: Option<CommitIntent>,
}

/// What a Job attempt that decided to commit still has to do, so that another attempt can
/// finish it (docs/runs.md, "Exactly once").
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitIntent {
    /// The sinks, in the order they commit.
    #[serde(default)]
    pub sinks: Vec<CommitSink>,
    /// The Tables to write once the files are in place, as the runner computed them (Table
    /// objects: name, labels, spec and the status fields a run sets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::common::preserve_unknown_objects")]
    pub tables: Vec<serde_json::Value>,
}

impl CommitSink {
    /// The commit of `sink`, writing to `storage`.
    pub fn of(sink: &crate::job::JobSink, storage: &crate::common::StorageSpec) -> Self {
        CommitSink {
            name: sink.name.clone(),
            location: storage.location.clone(),
            connection: storage.connection.clone(),
            write_mode: sink.write_mode,
            partition_by: sink.partition_by.clone(),
            database: None,
        }
    }
}

/// One sink of a commit: where its staged files are and what its write mode replaces.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitSink {
    /// The sink's name.
    pub name: String,
    /// Its location (`s3://bucket/prefix/` or `file:///path/`).
    pub location: String,
    /// The Connection whose endpoint and credentials reach it.
    pub connection: Option<String>,
    /// What the commit replaces.
    pub write_mode: WriteMode,
    /// The partition columns (OverwritePartitions without them replaces the whole location).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_by: Vec<String>,
    /// For a database table (location is its qualified name): what applying the run's staging
    /// table takes.
    pub database: Option<DatabaseCommit>,
}

/// What finishing a database sink's commit takes besides its table and Connection.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseCommit {
    /// The columns written, in order.
    pub columns: Vec<String>,
    /// The key of writeMode Upsert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upsert_keys: Vec<String>,
    /// The statement that creates the table when the run created it.
    pub create_table: Option<String>,
}
