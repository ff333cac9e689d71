//! One run of a job: sources selected by the bookmark, the script, sinks staged then committed,
//! the catalog updated, and a [`RunResult`] that says what happened.
//!
//! Order matters for idempotence (brief §3): every sink is staged before any is committed, the
//! catalog is updated after the data, and the proposed bookmark is returned, never committed
//! here — the caller (the operator, or `kglue run` locally) commits it once the result says
//! Succeeded.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, displayable};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext, cast, col};
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kglue_crds::Table;
use kglue_crds::common::{Compression, DataFormat, StorageSpec, TableRef, WorkerResources, WorkerSize};
use kglue_crds::connection::ConnectionSpec;
use kglue_crds::job::{
    BookmarkOption, JobBookmark, JobRunMetrics, JobSink, JobSpec, SinkMetrics, SourceBookmark, SourceMetrics,
    WorkerMetrics, WriteMode,
};
use kglue_crds::run_result::{CommitIntent, CommitSink};
use serde::{Deserialize, Serialize};

use super::bookmark::{self, DEFAULT_SAFETY_BAND_SECONDS, job_bookmark, source_bookmark};
use super::database::{self, DatabaseSource};
use super::database_sink::{DatabaseSink, OpenWrite};
use super::inspect::{bad_json_line, panic_message};
use super::settle::Decider;
use super::share::{Feeds, Sharing};
use super::sink::{self, SinkOutcome, SinkTarget, Staged, WriteLimits};
use super::source::{self, Selection, SourceInput};
use super::table_update::{OutputShape, conform, updated_table};
use super::types::{fields_of, to_arrow};
use super::workers::{self, Executors, JobFigures, Workers};
use super::{arguments, scope, script};
use crate::catalog::{Catalog, DirCatalog};
use crate::storage::{Location, StoreResolver};

/// Default size of an output file, as the Job CRD documents.
const DEFAULT_TARGET_FILE_MB: u64 = 128;

/// What a run may use, derived from the Job's worker size and the machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// The engine's memory pool; operators that exceed it spill or fail with a clear error.
    pub memory_limit_bytes: usize,
    /// Where spills go.
    pub spill_dir: PathBuf,
    /// Parallel streams per plan.
    pub target_partitions: usize,
    /// Bound on open output files per sink (brief §7).
    pub max_open_writers: usize,
    /// Bound on Parquet row groups buffered per sink.
    pub max_buffered_bytes: usize,
    /// Executors of a distributed run (`etl::workers`); 1 runs the plan in this process alone.
    pub workers: usize,
    /// Where a distributed run's executors come from.
    pub executors: Option<Executors>,
}

impl Resources {
    /// The resources of a worker size at its default CPU and memory (docs of `WorkerSize`).
    pub fn for_worker(size: WorkerSize, spill_dir: PathBuf) -> Self {
        Self::for_resources(size.default_resources(), spill_dir)
    }

    /// What a worker with `worker`'s CPU and memory may use, never more CPUs than the process may
    /// use (a pod's CPU limit included).
    pub fn for_resources(worker: WorkerResources, spill_dir: PathBuf) -> Self {
        let cpus = worker.cpu as usize;
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_limit_bytes = usize::try_from(worker.pool_bytes()).unwrap_or(usize::MAX);
        Resources {
            memory_limit_bytes,
            spill_dir,
            target_partitions: cpus.min(available).max(1),
            // Each open file holds up to a few upload parts of 5 MiB.
            max_open_writers: (memory_limit_bytes / (16 << 20)).clamp(32, 1024),
            max_buffered_bytes: memory_limit_bytes / 4,
            workers: 1,
            executors: None,
        }
    }

    /// The same run spread over `workers` executors (at least 1) that come from `executors`.
    pub fn with_workers(mut self, workers: usize, executors: Executors) -> Self {
        self.workers = workers.max(1);
        self.executors = Some(executors);
        self
    }

    /// Whether the run's plans go to executors.
    pub fn distributed(&self) -> bool {
        self.workers > 1
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The Job's name (for the catalog's "last updated by" and messages).
    pub job_name: String,
    /// The Job's spec.
    pub spec: JobSpec,
    /// The run's id: output file names carry it, and a retry with the same id replaces what an
    /// earlier attempt wrote.
    pub run_id: String,
    /// The attempt, 0 for the first.
    pub attempt: i32,
    /// The run's own arguments (the job's defaults and non-overridable ones are merged in).
    pub arguments: BTreeMap<String, String>,
    /// The committed bookmark to read from.
    pub bookmark: Option<JobBookmark>,
    /// What the run may use.
    pub resources: Resources,
    /// One micro-batch of a streaming job: its Kafka source's records, read before the run.
    pub stream: Option<StreamBatch>,
}

/// The records of one micro-batch of a streaming job, registered as its Kafka source.
#[derive(Debug, Clone)]
pub struct StreamBatch {
    /// The source's name in the job.
    pub source: String,
    /// The records that parsed: the Table's columns and Kafka's metadata columns.
    pub rows: RecordBatch,
    /// Bytes of the records' values.
    pub bytes: u64,
    /// The offsets after the batch: the source's bookmark once the batch commits.
    pub next: Vec<kglue_crds::job::PartitionOffset>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOutcome {
    /// Outputs and catalog committed; the proposed bookmark may be committed.
    Succeeded,
    /// Nothing was committed; the bookmark must not move.
    Failed,
    /// The run decided to commit but could not finish (the error says why): its outputs are
    /// committed as far as it got, and finishing is idempotent — a settle attempt in the cluster,
    /// `kglue run --run-id ID` again on a laptop. Until then the bookmark must not move.
    Unfinished,
}

/// A table the run created or updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableChange {
    /// `database.table`.
    pub table: String,
    /// `Created` or `Updated`.
    pub action: String,
    /// Partitions that did not exist before.
    pub partitions_added: usize,
}

/// The result of a run, in the shape the operator reads and `kglue run` prints (docs/etl.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// The Job.
    pub job: String,
    /// The run id.
    pub run_id: String,
    /// The attempt.
    pub attempt: i32,
    /// Succeeded or Failed.
    pub outcome: RunOutcome,
    /// The error of a failed run, naming the source, sink, statement, object or column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The arguments the script saw (Glue's precedence applied).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arguments: BTreeMap<String, String>,
    /// Rows, bytes and objects read per source; rows, files, bytes and partitions added per sink;
    /// seconds per phase (`plan`, `execute`, `write`, `catalog`).
    pub metrics: JobRunMetrics,
    /// The bookmark option the run used.
    pub bookmark_option: BookmarkOption,
    /// The bookmark the run read from (kept so a later rewind can return to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_from: Option<JobBookmark>,
    /// The bookmark to commit after this run's outputs (only with bookmark option Enable and a
    /// successful run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_bookmark: Option<JobBookmark>,
    /// The run properties the run set (`runPropertiesFrom`; a succeeded run only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub run_properties: BTreeMap<String, String>,
    /// Tables created or updated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableChange>,
    /// Wall time of the run.
    pub duration_seconds: f64,
}

/// Why a run failed (the message goes into [`RunResult::error`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The run's arguments were refused.
    #[error(transparent)]
    Arguments(#[from] arguments::ArgumentError),
    /// A source names a table the catalog does not have.
    #[error("source {source_name}: table {table} is not in the catalog")]
    TableNotFound {
        /// The source.
        source_name: String,
        /// `database.table`.
        table: String,
    },
    /// A source could not be listed, typed or registered.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// A database source cannot be read as specified.
    #[error(transparent)]
    Database(#[from] database::DatabaseSourceError),
    /// A store could not be opened.
    #[error("{what}: {message}")]
    Storage {
        /// The source or sink.
        what: String,
        /// The storage error.
        message: String,
    },
    /// The script failed to parse or plan.
    #[error(transparent)]
    Script(#[from] script::ScriptError),
    /// A sink's relation or table is wrong.
    #[error("sink {sink}: {message}")]
    Sink {
        /// The sink.
        sink: String,
        /// What is wrong.
        message: String,
    },
    /// The output does not fit the sink's table.
    #[error(transparent)]
    Table(#[from] super::table_update::TableMismatch),
    /// Writing or committing failed.
    #[error(transparent)]
    Write(#[from] sink::SinkError),
    /// A source object does not parse (found by re-reading the sources one object at a time after
    /// the engine failed).
    #[error("source {source_name}: object {url} cannot be read: {message}")]
    BadObject {
        /// The source.
        source_name: String,
        /// The object.
        url: String,
        /// The engine's message (line numbers count from the start of the object).
        message: String,
    },
    /// The catalog could not be updated.
    #[error("catalog: {0}")]
    Catalog(String),
    /// The engine could not be set up.
    #[error("engine: {0}")]
    Engine(String),
    /// The engine panicked (a bug in it or in kglue); nothing of the run is committed unless the
    /// panic came after the commit.
    #[error("the engine failed unexpectedly: {0}")]
    Panic(String),
    /// The decision to commit could not be recorded, so nothing was committed.
    #[error("the decision to commit could not be recorded, so nothing was committed: {0}")]
    Decide(String),
    /// A Table could not be written, or would not be (checked before the decision).
    #[error(transparent)]
    TableWrite(#[from] crate::catalog::TableWriteError),
    /// `runPropertiesFrom` names a relation that is missing or does not hold properties.
    #[error("runPropertiesFrom {relation}: {message}")]
    RunProperties {
        /// The relation.
        relation: String,
        /// What is wrong.
        message: String,
    },
}

/// The most run properties a run may set (a Workflow keeps at most 64).
pub const MAX_RUN_PROPERTIES: usize = 64;

/// A sink ready to run: its target, plan and catalog table.
struct PreparedSink {
    spec: JobSink,
    /// What a settle attempt needs to finish this sink's commit.
    commit: CommitSink,
    target: SinkTarget,
    /// The Connection the target's store is reached through.
    connection: Option<String>,
    plan: Arc<dyn ExecutionPlan>,
    /// The feeds from other sinks its plan reads (see `etl::share`), closed once it is written.
    feeds: Feeds,
    /// The first file sink of the group it is written with: sinks joined by feeds run together.
    group: usize,
    shape: OutputShape,
    table: Option<(TableRef, Option<Table>, StorageSpec)>,
}

/// A source registered in the session.
struct PreparedSource {
    input: SourceInput,
    selection: Selection,
    /// The URL its selected objects are mounted under in the session (`source::store_url`).
    store_url: String,
}

/// Per-phase stopwatch.
#[derive(Default)]
struct Phases(BTreeMap<String, f64>);

impl Phases {
    fn add(&mut self, phase: &str, since: Instant) {
        *self.0.entry(phase.to_string()).or_default() += since.elapsed().as_secs_f64();
    }
}

/// A run's session, sources and sinks, planned but not executed.
pub struct PlannedRun {
    request: RunRequest,
    arguments: BTreeMap<String, String>,
    ctx: SessionContext,
    sources: Vec<PreparedSource>,
    databases: Vec<DatabaseSource>,
    sinks: Vec<PreparedSink>,
    database_sinks: Vec<DatabaseSink>,
    /// The database sinks' writes staged and applied in open transactions, by sink.
    open_writes: Vec<Option<OpenWrite>>,
    phases: Phases,
    started: Instant,
    /// The run properties `runPropertiesFrom` gave, once evaluated.
    run_properties: BTreeMap<String, String>,
    /// Whether the run decided to commit: from then on it only goes forward.
    decided: Decided,
    /// A distributed run's scheduler and executors, once started.
    workers: Option<Workers>,
    /// The run's Connections, by name, which a distributed run's executors open stores through.
    connections: BTreeMap<String, ConnectionSpec>,
    /// A distributed run's figures, per file sink staged.
    figures: Vec<JobFigures>,
}

/// Where a run stands with its decision to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decided {
    /// Not decided: a failure removes what the run staged.
    No,
    /// Decided: the run only goes forward.
    Yes,
    /// The record may or may not exist: the run stops, keeping what it staged, and whoever
    /// settles it goes the way the record says.
    Unknown,
}

/// Plans and executes `request` against `catalog` (planning reads `catalog.view()`; the commit
/// writes through `catalog`), recording the decision to commit with `decider`. Never fails: a
/// mistake found while planning is a Failed result too.
pub async fn run<C: Catalog + ?Sized>(
    request: RunRequest,
    catalog: &mut C,
    resolver: &StoreResolver,
    decider: &mut dyn Decider,
) -> RunResult {
    let started = Instant::now();
    let asked = request.clone();
    // A panic in the engine while planning (a reader, the optimizer) is a Failed result like any
    // other failure, never a runner that dies unreported.
    match AssertUnwindSafe(plan_run(request, catalog.view(), resolver))
        .catch_unwind()
        .await
    {
        Ok(Ok(planned)) => planned.execute(catalog, decider).await,
        Ok(Err((request, error))) => failed_before_planning(&request, &error, started.elapsed()),
        Err(panic) => failed_before_planning(
            &asked,
            &RunError::Panic(panic_message(panic.as_ref())),
            started.elapsed(),
        ),
    }
}

/// Resolves sources, runs the script and plans every sink — everything short of writing. A
/// mistake in the job (an unknown table or column, bad SQL, output that does not fit a locked
/// table) fails here, before any object is written.
pub async fn plan_run(
    request: RunRequest,
    catalog: &DirCatalog,
    resolver: &StoreResolver,
) -> Result<PlannedRun, (RunRequest, RunError)> {
    let started = Instant::now();
    match plan_inner(&request, catalog, resolver, started).await {
        Ok((arguments, ctx, (sources, databases), (sinks, database_sinks), phases)) => Ok(PlannedRun {
            request,
            arguments,
            ctx,
            sources,
            databases,
            sinks,
            open_writes: database_sinks.iter().map(|_| None).collect(),
            database_sinks,
            phases,
            started,
            run_properties: BTreeMap::new(),
            decided: Decided::No,
            workers: None,
            connections: resolver.connections().clone(),
            figures: Vec::new(),
        }),
        Err(error) => Err((request, error)),
    }
}

type Planned = (
    BTreeMap<String, String>,
    SessionContext,
    (Vec<PreparedSource>, Vec<DatabaseSource>),
    (Vec<PreparedSink>, Vec<DatabaseSink>),
    Phases,
);

async fn plan_inner(
    request: &RunRequest,
    catalog: &DirCatalog,
    resolver: &StoreResolver,
    started: Instant,
) -> Result<Planned, RunError> {
    let spec = &request.spec;
    let arguments = arguments::resolve(
        &spec.default_arguments,
        &request.arguments,
        &spec.non_overridable_arguments,
    )?;
    let ctx = session(&request.resources)?;
    let mut phases = Phases::default();
    let band = i64::from(
        spec.bookmark
            .safety_band_seconds
            .unwrap_or(DEFAULT_SAFETY_BAND_SECONDS as i32),
    );
    let read_from = match spec.bookmark.option {
        BookmarkOption::Disable => None,
        BookmarkOption::Enable | BookmarkOption::Pause => request.bookmark.as_ref(),
    };

    // A run that moves the bookmark keeps its keys within budget, shared by the sources.
    let key_budget = (spec.bookmark.option == BookmarkOption::Enable)
        .then(|| bookmark::MAX_RECENT_KEY_BYTES / spec.sources.len().max(1));
    let mut sources = Vec::new();
    let mut databases = Vec::new();
    // A streaming batch reads its other sources whole each time (the tables it joins with); only
    // the topic's offsets are its bookmark.
    let read_from = if request.stream.is_some() { None } else { read_from };
    for (index, job_source) in spec.sources.iter().enumerate() {
        if let Some(stream) = request.stream.as_ref().filter(|s| s.source == job_source.name) {
            let table = MemTable::try_new(stream.rows.schema(), vec![vec![stream.rows.clone()]])
                .map_err(|e| RunError::Engine(e.to_string()))?;
            ctx.register_table(job_source.name.as_str(), Arc::new(table))
                .map_err(|e| RunError::Engine(e.to_string()))?;
            continue;
        }
        if database::is_database(job_source, catalog) {
            let bookmark = source_bookmark(read_from, &job_source.name);
            let database =
                DatabaseSource::prepare(index, job_source, catalog, resolver, spec.bookmark.option, bookmark).await?;
            database.register(&ctx)?;
            databases.push(database);
            continue;
        }
        let mut input = source_input(job_source, catalog, resolver)?;
        let selection = source::select(&input, source_bookmark(read_from, &job_source.name), band, key_budget).await?;
        source::settle_compression(&mut input, &selection).await?;
        source::register(&ctx, index, &input, &selection).await?;
        sources.push(PreparedSource {
            input,
            selection,
            store_url: source::store_url(index),
        });
    }

    script::run_script(&ctx, &spec.sql, &arguments).await?;

    let scope = scope::Scope {
        sources: sources
            .iter()
            .map(|s| (s.input.name.as_str(), &s.input.location))
            .collect(),
        tables: catalog.tables().collect(),
    };
    let mut sinks: Vec<PreparedSink> = Vec::new();
    let mut database_sinks = Vec::new();
    let mut sharing = Sharing::default();
    for (index, job_sink) in spec.sinks.iter().enumerate() {
        let planned = prepare_sink(
            &ctx,
            index,
            job_sink,
            catalog,
            resolver,
            &scope,
            &request.run_id,
            // A distributed sink's plan runs on executors: it cannot read another sink's rows
            // from this process.
            ((!request.resources.distributed()).then_some(&mut sharing), sinks.len()),
        )
        .await?;
        match planned {
            SinkPlan::Files(sink) => sinks.push(*sink),
            SinkPlan::Database(sink) => database_sinks.push(*sink),
        }
    }
    let groups = sharing.finish(
        &mut sinks
            .iter_mut()
            .map(|s| (&mut s.plan, &mut s.feeds))
            .collect::<Vec<_>>(),
    );
    for (sink, group) in sinks.iter_mut().zip(groups) {
        sink.group = group;
    }
    phases.add("plan", started);
    Ok((arguments, ctx, (sources, databases), (sinks, database_sinks), phases))
}

/// The engine's runtime within `resources`: a memory pool that makes operators spill to
/// `spill_dir` before the pod's memory runs out, and no local file system (a script or a session
/// reaches only the stores its tables are mounted on). Jobs and sessions (`kglue serve`) alike.
pub fn engine_runtime(
    resources: &Resources,
) -> datafusion::error::Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    let _ = std::fs::create_dir_all(&resources.spill_dir);
    RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(resources.memory_limit_bytes)))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![resources.spill_dir.clone()])),
        )
        .with_object_store_registry(super::sandbox::object_stores())
        .build_arc()
}

fn session(resources: &Resources) -> Result<SessionContext, RunError> {
    let runtime = engine_runtime(resources).map_err(|e| RunError::Engine(e.to_string()))?;
    let mut config = source::reading_sources(SessionConfig::new().with_target_partitions(resources.target_partitions));
    if resources.distributed() {
        config = workers::configure(config);
    }
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

fn source_input(
    job_source: &kglue_crds::job::JobSource,
    catalog: &DirCatalog,
    resolver: &StoreResolver,
) -> Result<SourceInput, RunError> {
    let name = job_source.name.clone();
    let (storage, file_schema, partition_keys) = match (&job_source.table, &job_source.storage) {
        (Some(table_ref), _) => {
            let table =
                catalog
                    .table(&table_ref.database, &table_ref.table)
                    .ok_or_else(|| RunError::TableNotFound {
                        source_name: name.clone(),
                        table: format!("{}.{}", table_ref.database, table_ref.table),
                    })?;
            let columns_error = |e: super::types::ColumnSchemaError| {
                RunError::Source(source::SourceError::Engine {
                    source_name: name.clone(),
                    message: format!("table {}.{}: {e}", table_ref.database, table_ref.table),
                })
            };
            // A table without declared columns (hand-written, schema left to the data) is read
            // with the schema inferred from its files.
            let file_schema = if table.spec.columns.is_empty() {
                None
            } else {
                Some(Arc::new(Schema::new(
                    fields_of(&table.spec.columns).map_err(columns_error)?,
                )))
            };
            let keys: Vec<Field> = fields_of(&table.spec.partition_keys).map_err(columns_error)?;
            (table.spec.storage.clone(), file_schema, Some(keys))
        }
        (None, Some(storage)) => (storage.clone(), None, None),
        (None, None) => {
            return Err(RunError::Source(source::SourceError::Unsupported {
                source_name: name,
                reason: "needs a table or storage".into(),
            }));
        }
    };
    let storage_error = |message: String| RunError::Storage {
        what: format!("source {name}"),
        message,
    };
    let location: Location = storage
        .location
        .parse()
        .map_err(|e: crate::storage::LocationError| storage_error(e.to_string()))?;
    let store = resolver
        .store(&location, storage.connection.as_deref())
        .map_err(|e| storage_error(e.to_string()))?;
    Ok(SourceInput {
        name,
        location,
        store,
        connection: storage.connection.clone(),
        format: storage.format,
        file_schema,
        partition_keys,
    })
}

/// A sink as planned: files, or a database table.
enum SinkPlan {
    Files(Box<PreparedSink>),
    Database(Box<DatabaseSink>),
}

/// Plans a sink's relation. A file sink may read, through `sharing`, the rows an earlier file
/// sink writes (it is the `position`th file sink).
#[allow(clippy::too_many_arguments)]
async fn prepare_sink(
    ctx: &SessionContext,
    index: usize,
    job_sink: &JobSink,
    catalog: &DirCatalog,
    resolver: &StoreResolver,
    scope: &scope::Scope<'_>,
    run_id: &str,
    (sharing, position): (Option<&mut Sharing>, usize),
) -> Result<SinkPlan, RunError> {
    let sink_error = |message: String| RunError::Sink {
        sink: job_sink.name.clone(),
        message,
    };
    let relation = job_sink.from.as_deref().unwrap_or(&job_sink.name);
    let mut frame = ctx.table(relation).await.map_err(|_| {
        sink_error(format!(
            "the script defines no relation {relation:?} (define it with CREATE VIEW {relation} AS …, or set `from`)"
        ))
    })?;
    let existing = job_sink
        .table
        .as_ref()
        .map(|r| (r.clone(), catalog.table(&r.database, &r.table).cloned()));
    if let Some((table_ref, _)) = &existing
        && catalog.database(&table_ref.database).is_none()
    {
        return Err(sink_error(format!(
            "database {} of table {}.{} does not exist in the catalog",
            table_ref.database, table_ref.database, table_ref.table
        )));
    }
    let storage = match (&job_sink.storage, &existing) {
        (Some(storage), _) => storage.clone(),
        (None, Some((_, Some(table)))) => table.spec.storage.clone(),
        (None, Some((table_ref, None))) => {
            return Err(sink_error(format!(
                "table {}.{} does not exist, and without storage the sink does not know where to write",
                table_ref.database, table_ref.table
            )));
        }
        (None, None) => return Err(sink_error("needs storage or a table".into())),
    };
    if storage.format.format == DataFormat::Jdbc {
        let sink = DatabaseSink::prepare(job_sink, frame, &storage, resolver, run_id, index)
            .await
            .map_err(sink_error)?;
        return Ok(SinkPlan::Database(Box::new(sink)));
    }
    if job_sink.write_mode == WriteMode::Upsert {
        return Err(sink_error(format!(
            "writeMode Upsert is for database tables; {} is {:?} files (use Append, Overwrite or OverwritePartitions)",
            storage.location, storage.format.format
        )));
    }
    let location: Location = storage
        .location
        .parse()
        .map_err(|e: crate::storage::LocationError| sink_error(e.to_string()))?;
    let connection = storage
        .connection
        .as_deref()
        .and_then(|name| catalog.connections().get(name).map(|spec| (name, spec)));
    if let Some(refused) = scope::refusal(job_sink, &location, connection, scope) {
        return Err(sink_error(refused));
    }
    for key in &job_sink.partition_by {
        if frame.schema().field_with_unqualified_name(key).is_err() {
            return Err(sink_error(format!(
                "partitionBy column {key:?} is not a column of {relation} (it has: {})",
                frame
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mut shape = OutputShape::of(frame.schema().as_arrow(), &job_sink.partition_by);
    if let Some((table_ref, Some(table))) = &existing {
        let casts = conform(&job_sink.name, table_ref, table, &shape, job_sink.write_mode)?;
        let needs_cast = frame
            .schema()
            .fields()
            .iter()
            .any(|f| casts.get(f.name()).is_some_and(|t| *f.data_type() != to_arrow(t)));
        if needs_cast {
            let columns = frame
                .schema()
                .fields()
                .iter()
                .map(|f| match casts.get(f.name()) {
                    Some(t) if *f.data_type() != to_arrow(t) => cast(col(f.name()), to_arrow(t)).alias(f.name()),
                    _ => col(f.name()),
                })
                .collect::<Vec<_>>();
            frame = frame.select(columns).map_err(|e| sink_error(e.to_string()))?;
            shape = OutputShape::of(frame.schema().as_arrow(), &job_sink.partition_by);
        }
    }
    let (plan, feeds) = match sharing {
        Some(sharing) => {
            let (plan, feeds) = plan_with_feeds(ctx, sharing, position, frame)
                .await
                .map_err(|e| sink_error(e.to_string()))?;
            sharing
                .add(
                    ctx,
                    position,
                    &job_sink.name,
                    relation,
                    plan.output_partitioning().partition_count(),
                )
                .await;
            (plan, feeds)
        }
        None => {
            let plan = frame
                .create_physical_plan()
                .await
                .map_err(|e| sink_error(e.to_string()))?;
            workers::check_plan(&plan).map_err(sink_error)?;
            (plan, Feeds::default())
        }
    };
    let store = resolver
        .store(&location, storage.connection.as_deref())
        .map_err(|e| sink_error(e.to_string()))?;
    let s3 = resolver
        .s3_requests(&location, storage.connection.as_deref())
        .map_err(|e| sink_error(e.to_string()))?;
    let target = SinkTarget {
        name: job_sink.name.clone(),
        store,
        location,
        format: storage.format.clone(),
        partition_by: job_sink.partition_by.clone(),
        target_file_bytes: job_sink
            .target_file_size_mb
            .map_or(DEFAULT_TARGET_FILE_MB, |mb| mb.max(1) as u64)
            << 20,
        write_mode: job_sink.write_mode,
        s3,
    };
    Ok(SinkPlan::Files(Box::new(PreparedSink {
        commit: CommitSink::of(job_sink, &storage),
        spec: job_sink.clone(),
        target,
        connection: storage.connection.clone(),
        plan,
        feeds,
        group: position,
        shape,
        table: existing.map(|(r, t)| (r, t, storage)),
    })))
}

/// The physical plan of a file sink's relation, reading what earlier file sinks write where it
/// reads their relations (see `etl::share`).
async fn plan_with_feeds(
    ctx: &SessionContext,
    sharing: &mut Sharing,
    position: usize,
    frame: DataFrame,
) -> datafusion::error::Result<(Arc<dyn ExecutionPlan>, Feeds)> {
    if let Some(rewritten) = sharing.rewrite(ctx, &frame)? {
        // A plan that cannot read the feeds (one sink's rows read twice, as in a self-join) is
        // planned on its own, as if no other sink wrote them.
        if let Ok(plan) = rewritten.frame.clone().create_physical_plan().await {
            return Ok((plan, sharing.connect(position, rewritten)));
        }
    }
    Ok((frame.create_physical_plan().await?, Feeds::default()))
}

impl PlannedRun {
    /// The physical plan of every sink, for `--explain`.
    pub fn explain(&self) -> String {
        let mut text = String::new();
        for prepared in &self.sources {
            text.push_str(&format!(
                "source {}: {} objects selected of {} listed at {} ({} bytes)\n",
                prepared.input.name,
                prepared.selection.selected.len(),
                prepared.selection.listed.len(),
                prepared.input.location,
                prepared.selection.selected_bytes()
            ));
        }
        for database in &self.databases {
            text.push_str(&database.describe());
            text.push('\n');
        }
        for sink in &self.sinks {
            text.push_str(&format!(
                "\nsink {} → {} ({:?}, {:?}{})\n",
                sink.spec.name,
                sink.target.location,
                sink.target.format.format,
                sink.target.write_mode,
                if sink.target.partition_by.is_empty() {
                    String::new()
                } else {
                    format!(", partitionBy {}", sink.target.partition_by.join(", "))
                }
            ));
            text.push_str(&displayable(sink.plan.as_ref()).indent(false).to_string());
        }
        for sink in &self.database_sinks {
            text.push_str(&sink.describe());
            text.push_str(&displayable(sink.plan().as_ref()).indent(false).to_string());
        }
        text
    }

    /// Executes and stages every sink, decides to commit (through `decider`), then commits every
    /// sink and updates the catalog through `tables` (a catalog directory, or the API server).
    /// Never panics on bad data: a failure before the decision becomes a Failed result with this
    /// run's staged files removed; one after it an Unfinished result that leaves everything for
    /// finishing.
    pub async fn execute<W: Catalog + ?Sized>(mut self, tables: &mut W, decider: &mut dyn Decider) -> RunResult {
        let outcome = match AssertUnwindSafe(self.execute_inner(tables, decider))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            // A panic in the engine names the object it read, when one object alone makes it.
            Err(panic) if self.decided == Decided::No => Err(match self.diagnose().await {
                Some(error) => error,
                None => RunError::Panic(panic_message(panic.as_ref())),
            }),
            Err(panic) => Err(RunError::Panic(panic_message(panic.as_ref()))),
        };
        match (outcome, self.decided) {
            (Ok((result, _)), _) => result,
            (Err(error), Decided::Yes) => self.unfinished(format!(
                "the run decided to commit but could not finish (its outputs are committed as far as it got; finishing it is safe): {error}"
            )),
            (Err(error), Decided::Unknown) => self.unfinished(format!(
                "it cannot be told whether the run's decision to commit was recorded ({error}); what it staged is kept, and settling the run commits it if the decision was recorded and removes it if not"
            )),
            (Err(error), Decided::No) => {
                // Leave nothing behind: the staging folders of this run go, so a failed attempt
                // has no orphan files (a retry would remove them too); a database sink's open
                // transaction rolls back and its staging table goes. A distributed run's
                // executors are stopped first: none may write after the cleaning.
                if let Some(workers) = self.workers.take() {
                    workers.stop().await;
                }
                for sink in &self.sinks {
                    let _ = sink::clean_attempt(&sink.target, &self.request.run_id).await;
                }
                for (sink, open) in self.database_sinks.iter().zip(self.open_writes.iter_mut()) {
                    sink.abandon(open.as_mut()).await;
                }
                self.result(Some(error.to_string()), Vec::new(), &[])
            }
        }
    }

    async fn execute_inner<W: Catalog + ?Sized>(
        &mut self,
        catalog: &mut W,
        decider: &mut dyn Decider,
    ) -> Result<(RunResult, Vec<SinkOutcome>), RunError> {
        let run_id = self.request.run_id.clone();
        let limits = WriteLimits {
            max_open_writers: self.request.resources.max_open_writers,
            max_buffered_bytes: self.request.resources.max_buffered_bytes,
            ..WriteLimits::default()
        };
        let started = Instant::now();
        let resources = &self.request.resources;
        if resources.distributed() && !self.sinks.is_empty() {
            let executors = resources.executors.as_ref().ok_or_else(|| {
                RunError::Engine("a distributed run was not told where its executors come from".into())
            })?;
            let sources = self
                .sources
                .iter()
                .map(|s| {
                    (
                        s.store_url.clone(),
                        (s.input.location.clone(), s.input.connection.clone()),
                    )
                })
                .collect();
            let started = Workers::start(
                &self.ctx.state(),
                resources,
                executors,
                sources,
                self.connections.clone(),
                &run_id,
            )
            .await
            .map_err(|e| RunError::Engine(e.to_string()))?;
            self.workers = Some(started);
        }
        for sink in &self.sinks {
            sink::clean_attempt(&sink.target, &run_id).await?;
        }
        // Group by group (sinks joined by feeds together, the others one by one), in order.
        let mut staged: Vec<Option<Staged>> = self.sinks.iter().map(|_| None).collect();
        let mut groups: Vec<usize> = self.sinks.iter().map(|s| s.group).collect();
        groups.sort_unstable();
        groups.dedup();
        for group in groups {
            let members = self.sinks.iter().enumerate().filter(|(_, s)| s.group == group);
            let stages = members.map(|(index, sink)| {
                let task_ctx = self.ctx.task_ctx();
                let (run_id, limits, workers) = (&run_id, &limits, self.workers.as_ref());
                async move {
                    let result = match workers {
                        Some(workers) => workers
                            .stage(
                                &sink.target,
                                sink.plan.clone(),
                                run_id,
                                limits,
                                sink.connection.as_deref(),
                            )
                            .await
                            .map(|(staged, figures)| (staged, Some(figures))),
                        None => sink::stage(&sink.target, sink.plan.clone(), task_ctx, run_id, limits)
                            .await
                            .map(|staged| (staged, None)),
                    };
                    sink.feeds.close();
                    (index, result)
                }
            });
            // Every member runs to its end, even after another failed: none may write into its
            // staging folder once this returns (a retry's clean_attempt must see it all).
            let mut failure = None;
            for (index, result) in futures::future::join_all(stages).await {
                match result {
                    Ok((files, figures)) => {
                        staged[index] = Some(files);
                        self.figures.extend(figures);
                    }
                    Err(error) => failure = failure.or(Some(error)),
                }
            }
            match failure {
                None => {}
                Some(error @ sink::SinkError::Execute { .. }) => {
                    return Err(self.diagnose().await.unwrap_or(RunError::Write(error)));
                }
                Some(error) => return Err(error.into()),
            }
        }
        let staged: Vec<Staged> = staged.into_iter().flatten().collect();
        for (index, sink) in self.database_sinks.iter().enumerate() {
            let open = sink
                .stage(self.ctx.task_ctx())
                .await
                .map_err(|message| RunError::Sink {
                    sink: sink.spec.name.clone(),
                    message,
                })?;
            self.open_writes[index] = Some(open);
        }
        // Before anything is committed: a malformed relation fails the run with nothing written.
        self.run_properties = self.evaluate_run_properties().await?;
        self.phases.add("execute", started);

        // What the commit will do, and the Tables it will write, each checked before deciding
        // (a Table another manager owns fails here, with the old data untouched).
        let started = Instant::now();
        let mut plans = Vec::new();
        for (sink, files) in self.sinks.iter().zip(staged) {
            plans.push(sink::plan(&sink.target, files, &run_id).await?);
        }
        let now = Time(Timestamp::now());
        let mut writes = Vec::new();
        for (sink, plan) in self.sinks.iter().zip(&plans) {
            let Some((table_ref, existing, storage)) = &sink.table else {
                continue;
            };
            let outcome = &plan.outcome;
            // An existing table is left alone by a run that wrote nothing to it (and replaced
            // nothing): its schema and partitions did not change.
            if existing.is_some() && outcome.rows == 0 && sink.target.write_mode != WriteMode::Overwrite {
                continue;
            }
            let table = updated_table(
                existing.as_ref(),
                table_ref,
                storage,
                &sink.shape,
                sink.target.write_mode,
                &outcome.partitions,
                outcome.partitions_added.len(),
                &self.request.job_name,
                &run_id,
                &now,
            );
            catalog.check_table(existing.as_ref(), &table).await?;
            let change = TableChange {
                table: format!("{}.{}", table_ref.database, table_ref.table),
                action: if existing.is_some() { "Updated" } else { "Created" }.into(),
                partitions_added: outcome.partitions_added.len(),
            };
            writes.push((existing.clone(), table, change));
        }
        let outcomes: Vec<SinkOutcome> = plans.iter().map(|p| p.outcome.clone()).collect();
        let changes: Vec<TableChange> = writes.iter().map(|(_, _, change)| change.clone()).collect();
        self.phases.add("write", started);

        // The decision: from here on the run only goes forward.
        let intent = CommitIntent {
            sinks: self
                .sinks
                .iter()
                .map(|s| s.commit.clone())
                .chain(self.database_sinks.iter().map(DatabaseSink::commit_sink))
                .collect(),
            tables: writes
                .iter()
                .map(|(_, table, _)| serde_json::to_value(table))
                .collect::<Result<_, _>>()
                .map_err(|e| RunError::Decide(e.to_string()))?,
        };
        let decided = self.result(None, changes.clone(), &outcomes);
        if let Err(error) = decider.decide(&decided, &intent).await {
            if error.maybe_recorded {
                self.decided = Decided::Unknown;
            }
            return Err(RunError::Decide(error.message));
        }
        self.decided = Decided::Yes;

        let started = Instant::now();
        for (sink, plan) in self.sinks.iter().zip(plans) {
            forward(|| sink::apply(&sink.target, plan.clone())).await?;
        }
        for (sink, open) in self.database_sinks.iter().zip(self.open_writes.iter_mut()) {
            if let Some(open) = open.as_mut() {
                sink.commit(open).await.map_err(|message| RunError::Sink {
                    sink: sink.spec.name.clone(),
                    message,
                })?;
            }
        }
        self.phases.add("write", started);

        let started = Instant::now();
        for (existing, table, _) in writes {
            let mut delays = forward_delays();
            loop {
                match catalog.write_table(existing.as_ref(), table.clone()).await {
                    Ok(()) => break,
                    Err(error) => match delays.next() {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => return Err(error.into()),
                    },
                }
            }
        }
        self.phases.add("catalog", started);
        Ok((self.result(None, changes, &outcomes), outcomes))
    }

    /// The rows of `spec.runPropertiesFrom` as name → value.
    async fn evaluate_run_properties(&self) -> Result<BTreeMap<String, String>, RunError> {
        let Some(relation) = &self.request.spec.run_properties_from else {
            return Ok(BTreeMap::new());
        };
        let error = |message: String| RunError::RunProperties {
            relation: relation.clone(),
            message,
        };
        if self.ctx.table(relation.as_str()).await.is_err() {
            return Err(error(format!(
                "the script defines no relation {relation:?} (CREATE VIEW {relation} AS SELECT … AS name, … AS value)"
            )));
        }
        // The name is an identifier (the CRD's pattern), so quoting it is enough.
        let query = format!(
            "SELECT CAST(name AS VARCHAR) AS name, CAST(value AS VARCHAR) AS value FROM \"{relation}\" LIMIT {}",
            MAX_RUN_PROPERTIES + 1
        );
        let batches = async { self.ctx.sql(&query).await?.collect().await }
            .await
            .map_err(|e| error(format!("it needs columns name and value: {e}")))?;
        let mut properties = BTreeMap::new();
        let mut row = 0;
        for batch in &batches {
            for index in 0..batch.num_rows() {
                row += 1;
                if row > MAX_RUN_PROPERTIES {
                    return Err(error(format!("more than {MAX_RUN_PROPERTIES} rows")));
                }
                let (name, value) = (batch.column(0), batch.column(1));
                if name.is_null(index) || value.is_null(index) {
                    return Err(error(format!("row {row}: name and value must not be null")));
                }
                let text = |array| {
                    datafusion::arrow::util::display::array_value_to_string(array, index)
                        .map_err(|e| error(format!("row {row}: {e}")))
                };
                let (name, value) = (text(name)?, text(value)?);
                let identifier = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !identifier {
                    return Err(error(format!(
                        "row {row}: {name:?} is not a property name (letters, digits and underscores, not starting with a digit)"
                    )));
                }
                properties.insert(name, value);
            }
        }
        Ok(properties)
    }

    /// After the engine failed while reading, finds the first source object that does not read on
    /// its own, so the error names it (line numbers then count from the object's start).
    async fn diagnose(&self) -> Option<RunError> {
        for (index, prepared) in self.sources.iter().enumerate() {
            for meta in prepared.selection.selected() {
                let single = Selection {
                    listed: vec![meta.clone()],
                    selected: vec![0],
                    listed_at: prepared.selection.listed_at,
                    next: Default::default(),
                    deferred: 0,
                };
                let ctx = SessionContext::new_with_config(source::reading_sources(
                    SessionConfig::new()
                        .with_target_partitions(1)
                        .with_repartition_file_scans(false),
                ));
                let mut input = prepared.input.clone();
                input.name = format!("probe_{index}");
                if source::register(&ctx, index, &input, &single).await.is_err() {
                    continue;
                }
                let failure = AssertUnwindSafe(async {
                    let frame = ctx.table(input.name.as_str()).await?;
                    let mut stream = frame.execute_stream().await?;
                    while let Some(batch) = stream.next().await {
                        batch?;
                    }
                    Ok::<(), datafusion::error::DataFusionError>(())
                })
                .catch_unwind()
                .await;
                let message = match failure {
                    Ok(Ok(())) => continue,
                    Ok(Err(error)) => error.to_string(),
                    Err(panic) => format!("the reader failed: {}", panic_message(panic.as_ref())),
                };
                let line = match prepared.input.format.format {
                    DataFormat::Json => {
                        let compression = prepared.input.format.compression.unwrap_or(Compression::None);
                        bad_json_line(prepared.input.store.as_ref(), meta, compression).await
                    }
                    _ => None,
                };
                return Some(RunError::BadObject {
                    source_name: prepared.input.name.clone(),
                    url: prepared.input.location.url_of(&meta.location),
                    message: line.unwrap_or(message),
                });
            }
        }
        None
    }

    /// The result of a run that stopped after (or perhaps after) deciding to commit.
    fn unfinished(&self, error: String) -> RunResult {
        let mut result = self.result(None, Vec::new(), &[]);
        result.outcome = RunOutcome::Unfinished;
        result.error = Some(error);
        result.next_bookmark = None;
        result.run_properties = BTreeMap::new();
        result
    }

    fn result(&self, error: Option<String>, tables: Vec<TableChange>, outcomes: &[SinkOutcome]) -> RunResult {
        let mut rows_by_store: BTreeMap<String, u64> = BTreeMap::new();
        // A distributed sink's scans ran on the executors: their rows come with its figures.
        if self.workers.is_none() {
            for sink in &self.sinks {
                rows_read(&sink.plan, &mut rows_by_store);
            }
        }
        for figures in &self.figures {
            for (store, rows) in &figures.rows_by_store {
                *rows_by_store.entry(store.clone()).or_default() += rows;
            }
        }
        for sink in &self.database_sinks {
            rows_read(sink.plan(), &mut rows_by_store);
        }
        let sources = self
            .sources
            .iter()
            .map(|prepared| {
                (
                    prepared.input.name.clone(),
                    SourceMetrics {
                        rows: rows_by_store.get(&prepared.store_url).copied().unwrap_or(0) as i64,
                        bytes: prepared.selection.selected_bytes() as i64,
                        objects: prepared.selection.selected.len() as i64,
                        objects_deferred: (prepared.selection.deferred > 0)
                            .then_some(prepared.selection.deferred as i64),
                    },
                )
            })
            .chain(self.databases.iter().map(|database| {
                (
                    database.name.clone(),
                    SourceMetrics {
                        rows: database.rows() as i64,
                        ..SourceMetrics::default()
                    },
                )
            }))
            .chain(self.request.stream.iter().map(|stream| {
                (
                    stream.source.clone(),
                    SourceMetrics {
                        rows: stream.rows.num_rows() as i64,
                        bytes: stream.bytes as i64,
                        ..SourceMetrics::default()
                    },
                )
            }))
            .collect();
        let sinks = outcomes
            .iter()
            .map(|o| {
                (
                    o.sink.clone(),
                    SinkMetrics {
                        rows: o.rows as i64,
                        files: o.files as i64,
                        bytes: o.bytes as i64,
                        partitions_added: o.partitions_added.len() as i64,
                    },
                )
            })
            .chain(
                self.database_sinks
                    .iter()
                    .zip(&self.open_writes)
                    .filter(|_| error.is_none())
                    .filter_map(|(sink, open)| {
                        let open = open.as_ref()?;
                        Some((
                            sink.spec.name.clone(),
                            SinkMetrics {
                                rows: open.rows as i64,
                                ..SinkMetrics::default()
                            },
                        ))
                    }),
            )
            .collect();
        let spec = &self.request.spec;
        let started_from = match spec.bookmark.option {
            BookmarkOption::Disable => None,
            _ => self.request.bookmark.clone(),
        };
        let next_bookmark = match &self.request.stream {
            // A streaming batch's bookmark is its topic's offsets, whatever the bookmark option.
            Some(stream) => error.is_none().then(|| {
                job_bookmark(BTreeMap::from([(
                    stream.source.clone(),
                    SourceBookmark {
                        offsets: stream.next.clone(),
                        ..SourceBookmark::default()
                    },
                )]))
            }),
            None => self.next_bookmark(error.is_none()),
        };
        let run_properties = if error.is_none() {
            self.run_properties.clone()
        } else {
            BTreeMap::new()
        };
        RunResult {
            job: self.request.job_name.clone(),
            run_id: self.request.run_id.clone(),
            attempt: self.request.attempt,
            outcome: if error.is_none() {
                RunOutcome::Succeeded
            } else {
                RunOutcome::Failed
            },
            error,
            arguments: self.arguments.clone(),
            metrics: JobRunMetrics {
                sources,
                sinks,
                phase_seconds: self.phases.0.clone(),
                workers: self.workers.as_ref().map(|workers| WorkerMetrics {
                    executors: workers.count as i64,
                    slots_per_executor: workers.slots as i64,
                    stages: self.figures.iter().flat_map(|f| f.stages.iter().cloned()).collect(),
                }),
            },
            bookmark_option: spec.bookmark.option,
            started_from,
            next_bookmark,
            run_properties,
            tables,
            duration_seconds: self.started.elapsed().as_secs_f64(),
        }
    }

    /// The bookmark after a batch run's sources, when it moves.
    fn next_bookmark(&self, succeeded: bool) -> Option<JobBookmark> {
        let spec = &self.request.spec;
        (succeeded && spec.bookmark.option == BookmarkOption::Enable).then(|| {
            job_bookmark(
                self.sources
                    .iter()
                    .map(|p| (p.input.name.clone(), p.selection.next_bookmark()))
                    .chain(self.databases.iter().map(|d| (d.name.clone(), d.next_bookmark())))
                    .collect(),
            )
        })
    }
}

/// The waits between tries of a step of a decided commit (three tries, 1 s then 2 s apart):
/// after the decision a passing outage should not leave the commit for a settle attempt.
fn forward_delays() -> impl Iterator<Item = Duration> {
    [Duration::from_secs(1), Duration::from_secs(2)].into_iter()
}

/// Tries a step of a decided commit as [`forward_delays`] says.
async fn forward<T, E, F, Fut>(mut step: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut delays = forward_delays();
    loop {
        match step().await {
            Ok(value) => return Ok(value),
            Err(error) => match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(error),
            },
        }
    }
}

/// Adds the rows each source's scans produced, keyed by the scan's store URL.
fn rows_read(plan: &Arc<dyn ExecutionPlan>, rows: &mut BTreeMap<String, u64>) {
    if let Some(exec) = plan.downcast_ref::<DataSourceExec>()
        && let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>()
    {
        let produced = exec.metrics().and_then(|m| m.output_rows()).unwrap_or(0) as u64;
        *rows
            .entry(config.object_store_url.as_str().trim_end_matches('/').to_string())
            .or_default() += produced;
    }
    for child in plan.children() {
        rows_read(child, rows);
    }
}

/// A failed result for a run that could not even be planned.
pub fn failed_before_planning(request: &RunRequest, error: &RunError, elapsed: Duration) -> RunResult {
    RunResult {
        job: request.job_name.clone(),
        run_id: request.run_id.clone(),
        attempt: request.attempt,
        outcome: RunOutcome::Failed,
        error: Some(error.to_string()),
        arguments: BTreeMap::new(),
        metrics: JobRunMetrics::default(),
        bookmark_option: request.spec.bookmark.option,
        started_from: None,
        next_bookmark: None,
        run_properties: BTreeMap::new(),
        tables: Vec::new(),
        duration_seconds: elapsed.as_secs_f64(),
    }
}
