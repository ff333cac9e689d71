//! Writing a sink's rows: staged, partitioned files named after the run, committed per write mode.
//!
//! A sink is written in steps so that runs are idempotent (brief §3.4) and a job with several
//! sinks commits nothing unless every sink staged (docs/runs.md, "Exactly once"):
//!
//! 1. [`clean_attempt`] removes what an earlier attempt of the same run left behind: its staging
//!    folder and incomplete multipart uploads (an attempt that never decided to commit).
//! 2. [`stage`] executes the plan, one task per output partition, and writes files under
//!    `<location>/_kglue_staging/<run id>/<partition folders>/part-<run id>-<stream>-<seq>.<ext>`.
//!    Nothing outside the staging folder changes, so a failed stage leaves the table as it was.
//! 3. [`plan`] works out what the commit replaces (nothing changes yet); the run then decides
//!    to commit (in the cluster: its RunResult says Committing).
//! 4. [`apply`] moves the staged files to their final folders, then applies the write mode
//!    (deleting old files), then removes the staging folder. Moving before deleting means an
//!    interrupted commit leaves old and new data side by side, never neither, and every step is
//!    idempotent: [`settle`] finishes a commit cut short from what the location holds.
//!
//! Writers are bounded (brief §7): at most [`WriteLimits::max_open_writers`] files open across
//! the sink, the least recently used closed first, and Parquet row groups held in memory bounded
//! by [`WriteLimits::max_buffered_bytes`] and by the run's DataFusion memory pool.

mod commit;
mod file;
mod partition;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use kglue_crds::common::FormatSpec;
use kglue_crds::job::WriteMode;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use commit::{CommitPlan, apply, clean_attempt, commit, plan, settle, staged_runs};
pub use partition::HIVE_DEFAULT_PARTITION;
pub(crate) use partition::{escape_path_name, unescape_path_name};

use crate::multipart::S3Requests;
use crate::storage::Location;
use file::OutputFormat;
pub(crate) use partition::PartitionKey;
pub(crate) use stream::{SinkPlan, StreamOutput, WrittenFile, write_stream};

/// The folder, directly under a sink's location, that holds each run's files before commit.
/// Readers skip it: Hive, Spark and DataFusion ignore folders whose names start with `_`, and it
/// is not a `column=value` folder.
pub const STAGING_FOLDER: &str = "_kglue_staging";

/// Where and how a sink writes.
#[derive(Debug, Clone)]
pub struct SinkTarget {
    /// The sink's name, used in messages and metrics.
    pub name: String,
    /// The store that holds `location`.
    pub store: Arc<dyn ObjectStore>,
    /// The root of the sink: its files and partition folders go below it.
    pub location: Location,
    /// Format Parquet, Csv or Json, with compression and CSV options.
    pub format: FormatSpec,
    /// Columns whose values become `column=value` folders, outermost first.
    pub partition_by: Vec<String>,
    /// A file is closed and the next one started when it reaches this size.
    pub target_file_bytes: u64,
    /// What happens to data already at the location.
    pub write_mode: WriteMode,
    /// For S3, the multipart requests object_store does not make (aborting a killed attempt's
    /// uploads, moving files over 5 GiB).
    pub s3: Option<Arc<S3Requests>>,
}

/// Bounds on what a sink holds while it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// Files open at once across the sink (shared by its streams). When a partition needs a file
    /// and the bound is reached, the least recently used file is closed; that partition's next
    /// rows start a new file.
    pub max_open_writers: usize,
    /// Bytes of Parquet row groups held in memory across the sink; above it the largest row
    /// group is written out early. The run's memory pool is consulted too.
    pub max_buffered_bytes: usize,
    /// Bytes each open file buffers before its upload starts, and the size of each part of a
    /// multipart upload (S3 needs at least 5 MiB). Memory beyond `max_buffered_bytes` is up to
    /// about `max_open_writers × 3 × upload_buffer_bytes`.
    pub upload_buffer_bytes: usize,
}

impl Default for WriteLimits {
    fn default() -> Self {
        WriteLimits {
            // Room for a few hundred partitions per run split over a few streams (TPC-H's
            // lineitem by month is 84 partitions per stream) before writers start closing early.
            max_open_writers: 256,
            max_buffered_bytes: 256 * 1024 * 1024,
            upload_buffer_bytes: 5 * 1024 * 1024,
        }
    }
}

/// A partition a run wrote: its folder and the value of each partition column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SinkPartition {
    /// The folder relative to the location, escaped as Hive does: `ship_month=1994-03/region=EU`.
    pub path: String,
    /// `(column, value)` in `partitionBy` order; the value unescaped, `None` for NULL (and for an
    /// empty string, which Hive and Spark store in the same `__HIVE_DEFAULT_PARTITION__` folder).
    pub values: Vec<(String, Option<String>)>,
}

/// A file written to the staging folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagedFile {
    /// Where it is now.
    pub staging_path: String,
    /// Where commit puts it.
    pub final_path: String,
    /// Its partition folder (empty without `partitionBy`).
    pub partition: String,
    /// Rows in the file.
    pub rows: u64,
    /// Bytes of the file.
    pub bytes: u64,
}

/// What [`stage`] wrote, to be passed to [`commit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Staged {
    /// The sink.
    pub sink: String,
    /// The run the files belong to.
    pub run_id: String,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The files, ordered by final path.
    pub files: Vec<StagedFile>,
    /// The partitions written, ordered by folder (empty without `partitionBy`).
    pub partitions: Vec<SinkPartition>,
    /// Row groups written early to stay within the memory budget.
    pub early_flushes: u64,
    /// The most files open at once across the sink.
    pub peak_open_files: u64,
}

/// What [`commit`] did: the figures for run metrics and what the catalog update needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkOutcome {
    /// The sink.
    pub sink: String,
    /// The write mode applied.
    pub write_mode: WriteMode,
    /// Rows written.
    pub rows: u64,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The partitions written, ordered by folder.
    pub partitions: Vec<SinkPartition>,
    /// The partitions written that held no data before this run.
    pub partitions_added: Vec<SinkPartition>,
    /// The object paths of the files written, in the store of the location.
    pub paths: Vec<String>,
    /// Objects of earlier runs the write mode deleted.
    pub objects_deleted: u64,
}

/// What [`clean_attempt`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanOutcome {
    /// Objects removed from this run's staging folder.
    pub staging_objects: u64,
    /// Incomplete multipart uploads aborted (S3).
    pub uploads_aborted: u64,
}

/// A boxed cause, for encoders whose error types differ.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong writing a sink. Every message names the sink, and the object where one is
/// involved.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A `partitionBy` column is not in the output.
    #[error("sink {sink:?}: partitionBy column {column:?} is not a column of the output (columns: {available})")]
    UnknownPartitionColumn {
        /// The sink.
        sink: String,
        /// The column named in `partitionBy`.
        column: String,
        /// The output's columns, comma-separated.
        available: String,
    },
    /// A `partitionBy` column is named twice.
    #[error("sink {sink:?}: partitionBy names column {column:?} twice")]
    DuplicatePartitionColumn {
        /// The sink.
        sink: String,
        /// The column.
        column: String,
    },
    /// A `partitionBy` column has a type whose values cannot name a folder.
    #[error(
        "sink {sink:?}: partitionBy column {column:?} has type {data_type}, which cannot name a folder; partition by a column of a scalar type"
    )]
    NestedPartitionColumn {
        /// The sink.
        sink: String,
        /// The column.
        column: String,
        /// Its type.
        data_type: String,
    },
    /// Every column is a partition column, so the files would hold no columns.
    #[error(
        "sink {sink:?}: every column is in partitionBy, so the data files would have no columns; leave at least one out"
    )]
    NoDataColumns {
        /// The sink.
        sink: String,
    },
    /// The format, compression or format options cannot be written.
    #[error("sink {sink:?}: {reason}")]
    UnsupportedFormat {
        /// The sink.
        sink: String,
        /// What is wrong and what to use instead.
        reason: String,
    },
    /// The run id cannot be part of a file name.
    #[error("sink {sink:?}: run id {run_id:?} cannot name files; use 1 to 128 letters, digits, '.', '_' or '-'")]
    InvalidRunId {
        /// The sink.
        sink: String,
        /// The run id.
        run_id: String,
    },
    /// [`commit`] was given files staged by another run or sink.
    #[error("sink {sink:?}: the staged files belong to sink {staged_sink:?}, run {staged_run:?}, not run {run_id:?}")]
    StagedElsewhere {
        /// The sink committing.
        sink: String,
        /// The run committing.
        run_id: String,
        /// The sink that staged the files.
        staged_sink: String,
        /// The run that staged them.
        staged_run: String,
    },
    /// Computing the rows to write failed.
    #[error("sink {sink:?}: computing the rows to write failed: {source}")]
    Execute {
        /// The sink.
        sink: String,
        /// The engine's error (boxed: it is large).
        source: Box<DataFusionError>,
    },
    /// Encoding or uploading a file failed.
    #[error("sink {sink:?}: writing {url} failed: {source}")]
    Write {
        /// The sink.
        sink: String,
        /// The file (or the location when no file was involved yet).
        url: String,
        /// The cause.
        source: BoxError,
    },
    /// A store operation failed.
    #[error("sink {sink:?}: cannot {action} {url}: {source}")]
    Store {
        /// The sink.
        sink: String,
        /// What was being done: `list`, `move`, `delete`.
        action: &'static str,
        /// The object or prefix.
        url: String,
        /// The store's error (boxed: it is large).
        source: Box<object_store::Error>,
    },
    /// A multipart request object_store does not make (abort, part copy) failed.
    #[error("sink {sink:?}: {source}")]
    Multipart {
        /// The sink.
        sink: String,
        /// The request's error.
        source: Box<crate::multipart::S3Error>,
    },
    /// A path built from the location, the run id and partition values is not a valid object path.
    #[error("sink {sink:?}: {path:?} is not a valid object path: {source}")]
    InvalidPath {
        /// The sink.
        sink: String,
        /// The path.
        path: String,
        /// Why.
        source: Box<object_store::path::Error>,
    },
    /// A writer task stopped without a result (it panicked or was cancelled).
    #[error("sink {sink:?}: a writer task failed: {message}")]
    Task {
        /// The sink.
        sink: String,
        /// What happened.
        message: String,
    },
}

/// `a/b` from `a` and `b`, where `a` may be the store's root (empty).
fn join_path(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}/{child}")
    }
}

/// Parses a raw path (segments already escaped) without escaping it again.
fn parse_path(sink: &str, raw: &str) -> Result<Path, SinkError> {
    Path::parse(raw).map_err(|source| SinkError::InvalidPath {
        sink: sink.to_string(),
        path: raw.to_string(),
        source: Box::new(source),
    })
}

fn check_run_id(sink: &str, run_id: &str) -> Result<(), SinkError> {
    let valid = !run_id.is_empty()
        && run_id.len() <= 128
        && !run_id.starts_with('.')
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(SinkError::InvalidRunId {
            sink: sink.to_string(),
            run_id: run_id.to_string(),
        })
    }
}

/// The raw path of a run's staging folder.
fn staging_root(location: &Location, run_id: &str) -> String {
    join_path(location.prefix.as_ref(), &format!("{STAGING_FOLDER}/{run_id}"))
}

/// The partition columns (index in `schema`, name) and the data columns of the files.
type ColumnSplit = (Vec<usize>, Vec<String>, Vec<usize>);

fn split_columns(target: &SinkTarget, schema: &Schema) -> Result<ColumnSplit, SinkError> {
    let mut partition_columns = Vec::with_capacity(target.partition_by.len());
    let mut names = Vec::with_capacity(target.partition_by.len());
    for column in &target.partition_by {
        let fields = schema.fields();
        let index = fields.iter().position(|f| f.name() == column).or_else(|| {
            // SQL folds unquoted names to lower case; accept a spelling that differs only in case
            // when it is unambiguous.
            let mut matches = fields
                .iter()
                .enumerate()
                .filter(|(_, f)| f.name().eq_ignore_ascii_case(column));
            match (matches.next(), matches.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        });
        let Some(index) = index else {
            return Err(SinkError::UnknownPartitionColumn {
                sink: target.name.clone(),
                column: column.clone(),
                available: fields.iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "),
            });
        };
        if partition_columns.contains(&index) {
            return Err(SinkError::DuplicatePartitionColumn {
                sink: target.name.clone(),
                column: column.clone(),
            });
        }
        let field = &fields[index];
        if field.data_type().is_nested() {
            return Err(SinkError::NestedPartitionColumn {
                sink: target.name.clone(),
                column: column.clone(),
                data_type: field.data_type().to_string(),
            });
        }
        partition_columns.push(index);
        names.push(field.name().clone());
    }
    let data_columns: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !partition_columns.contains(i))
        .collect();
    if data_columns.is_empty() {
        return Err(SinkError::NoDataColumns {
            sink: target.name.clone(),
        });
    }
    Ok((partition_columns, names, data_columns))
}

/// Executes every output partition of `plan` (one task each, with its own writers) and writes the
/// rows under `<location>/_kglue_staging/<run_id>/`. Nothing outside that folder changes.
///
/// On error the other tasks are stopped before this returns, so nothing writes to the staging
/// folder afterwards; [`clean_attempt`] removes what was written.
pub async fn stage(
    target: &SinkTarget,
    plan: Arc<dyn ExecutionPlan>,
    task_ctx: Arc<TaskContext>,
    run_id: &str,
    limits: &WriteLimits,
) -> Result<Staged, SinkError> {
    let streams = plan.output_partitioning().partition_count();
    let shared = writer_plan(target, &plan.schema(), run_id, limits, streams)?;

    let mut tasks = JoinSet::new();
    for stream in 0..streams {
        let input = match plan.execute(stream, Arc::clone(&task_ctx)) {
            Ok(input) => input,
            Err(e) => {
                tasks.shutdown().await;
                return Err(SinkError::Execute {
                    sink: target.name.clone(),
                    source: Box::new(e),
                });
            }
        };
        let reservation = MemoryConsumer::new(format!("sink {} stream {stream}", target.name))
            .with_can_spill(true)
            .register(task_ctx.memory_pool());
        let shared = Arc::clone(&shared);
        tasks.spawn(async move { (stream, write_stream(shared, stream, input, reservation).await) });
    }
    let mut outputs: Vec<(usize, StreamOutput)> = Vec::with_capacity(streams);
    while let Some(joined) = tasks.join_next().await {
        let failure = match joined {
            Ok((stream, Ok(output))) => {
                outputs.push((stream, output));
                continue;
            }
            Ok((_, Err(error))) => error,
            Err(e) => SinkError::Task {
                sink: target.name.clone(),
                message: e.to_string(),
            },
        };
        // Wait for the others to stop so no task writes into the staging folder after this
        // returns (a retry's clean_attempt must see everything this attempt wrote).
        tasks.shutdown().await;
        return Err(failure);
    }
    outputs.sort_by_key(|(stream, _)| *stream);
    let mut staged = merge(target, run_id, outputs);
    staged.peak_open_files = shared.peak_open.load(Ordering::Relaxed) as u64;
    Ok(staged)
}

/// What the writers of a sink's `streams` streams of `schema` share: the files' format and
/// columns, the staging folder, and the bounds on open files and buffered bytes. The same for a
/// run in one pod and for each task of a distributed run (see `etl::workers`).
pub(crate) fn writer_plan(
    target: &SinkTarget,
    schema: &SchemaRef,
    run_id: &str,
    limits: &WriteLimits,
    streams: usize,
) -> Result<Arc<SinkPlan>, SinkError> {
    check_run_id(&target.name, run_id)?;
    let format = OutputFormat::from_spec(&target.format).map_err(|reason| SinkError::UnsupportedFormat {
        sink: target.name.clone(),
        reason,
    })?;
    let (partition_columns, partition_names, data_columns) = split_columns(target, schema)?;
    let data_schema = Arc::new(schema.project(&data_columns).map_err(|e| SinkError::Write {
        sink: target.name.clone(),
        url: target.location.to_string(),
        source: Box::new(e),
    })?);
    Ok(Arc::new(SinkPlan {
        sink: target.name.clone(),
        store: Arc::clone(&target.store),
        location: target.location.clone(),
        staging: staging_root(&target.location, run_id),
        run_id: run_id.to_string(),
        extension: format.extension(),
        format,
        data_schema,
        partition_columns,
        partition_names,
        data_columns,
        target_file_bytes: target.target_file_bytes.max(1),
        open_files: Arc::new(Semaphore::new(limits.max_open_writers.max(1))),
        open_per_stream: (limits.max_open_writers / streams.max(1)).max(1),
        open_now: AtomicUsize::new(0),
        peak_open: AtomicUsize::new(0),
        buffer_per_stream: (limits.max_buffered_bytes / streams.max(1)).max(1),
        upload_buffer_bytes: limits.upload_buffer_bytes.max(1),
    }))
}

/// The files of every stream, as one sink's [`Staged`] (`outputs` by stream).
pub(crate) fn merge(target: &SinkTarget, run_id: &str, outputs: Vec<(usize, StreamOutput)>) -> Staged {
    let mut partitions: BTreeMap<String, SinkPartition> = BTreeMap::new();
    let mut files = Vec::new();
    let mut early_flushes = 0;
    let prefix = target.location.prefix.as_ref();
    for (_, output) in outputs {
        early_flushes += output.early_flushes;
        for file in output.files {
            let key = &output.partitions[file.partition];
            let name = file.path.filename().unwrap_or_default();
            let final_path = if key.rel.is_empty() {
                join_path(prefix, name)
            } else {
                join_path(&join_path(prefix, &key.rel), name)
            };
            if !key.rel.is_empty() && !partitions.contains_key(&key.rel) {
                partitions.insert(
                    key.rel.clone(),
                    SinkPartition {
                        path: key.rel.clone(),
                        values: key.values.clone(),
                    },
                );
            }
            files.push(StagedFile {
                staging_path: file.path.to_string(),
                final_path,
                partition: key.rel.clone(),
                rows: file.rows,
                bytes: file.bytes,
            });
        }
    }
    files.sort_by(|a, b| a.final_path.cmp(&b.final_path));
    Staged {
        sink: target.name.clone(),
        run_id: run_id.to_string(),
        rows: files.iter().map(|f| f.rows).sum(),
        bytes: files.iter().map(|f| f.bytes).sum(),
        files,
        partitions: partitions.into_values().collect(),
        early_flushes,
        peak_open_files: 0,
    }
}
