//! Distributed runs: a sink's plan split into stages across executors by Apache Ballista.
//!
//! The driver plans a run as a run in one pod does (sources, script, each sink's physical plan),
//! then wraps each file sink's plan in a [`StageExec`] and submits it to a Ballista scheduler as
//! a physical plan. Ballista cuts the plan at its exchanges (hash repartitions, merges) into
//! stages, runs each stage's partitions as tasks on the executors and moves rows between stages
//! through its shuffle files. The last stage is the `StageExec`: each task writes its
//! partition's rows as **staged** files, exactly as a stream of a one-pod run does
//! (`sink::write_stream`), and returns the list of files it wrote. The driver gathers those lists
//! into the sink's [`Staged`] and commits it as any run commits, so staging, the decision to
//! commit, bookmarks and retries are the same code in both modes.
//!
//! A task that is run again (its executor was lost) writes its files again under the same
//! staging folder; only the files named by the task attempt whose result the driver received are
//! committed, and the commit removes whatever else the staging folder holds.
//!
//! Scheduler and executors run kglue's code, so both know [`StageExec`] through [`KglueCodec`].
//! The driver hosts the scheduler; each executor is a process of its own (`kglue executor`):
//! started by the driver for `kglue run --workers N` ([`Executors::Processes`]), or a pod the
//! operator starts for a Job with `workers` once the driver's pod runs ([`Executors::Pods`]),
//! registering with the scheduler at that pod's IP. An executor has no catalog: the plan names
//! stores by URLs (`kglue://source-0`, `kglue-sink://sink1`), and every task carries, in the
//! session option `kglue.stores`, the location and Connection (spec included) behind each URL,
//! which the executor opens with the Connections' Secrets mounted beside it. It registers the
//! address it is reached at (`--advertise-host`, a pod's IP), where the driver and the other
//! executors fetch its task output over Arrow Flight.

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::protobuf::operator_metric::Metric;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::serde::protobuf::{ExecutorRegistration, GetJobMetricsParams, JobStageMetrics};
use ballista_core::serde::scheduler::{ExecutorOperatingSystemSpecification, ExecutorSpecification};
use ballista_core::serde::{BallistaCodec, BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use ballista_core::utils::{GrpcServerConfig, create_grpc_server};
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::execution_loop;
use ballista_executor::executor::Executor;
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::health::ExecutorHealth;
use ballista_executor::metrics::LoggingMetricsCollector;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_server::SchedulerServer;
use ballista_scheduler::state::execution_stage::ExecutionStage;
use datafusion::arrow::array::{Array, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SendableRecordBatchStream, SessionState, SessionStateBuilder, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, ChildrenPropertiesMode, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};
use datafusion::prelude::SessionConfig;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::StreamExt;
use kglue_crds::common::FormatSpec;
use kglue_crds::connection::ConnectionSpec;
use kglue_crds::job::{StageMetrics, WriteMode};
use kglue_crds::protocol::executor::{ExecutorCommand, Lifetime};
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::run::{Resources, engine_runtime};
use super::sink::{self, PartitionKey, SinkError, SinkTarget, Staged, StreamOutput, WriteLimits, WrittenFile};
use crate::storage::{Credentials, Location, StoreResolver};

/// How long an executor waits for the scheduler to accept connections.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// An executor that stops polling (killed, or its machine gone) is given up on after this long,
/// and its tasks run again elsewhere. Executors poll at least every 5 s.
const EXECUTOR_TIMEOUT: Duration = Duration::from_secs(15);

/// kglue's session options, which travel with every task to the executors (Ballista sends a
/// session's `entries()` and sets them on the other side).
#[derive(Debug, Clone, Default)]
pub struct KglueOptions {
    /// The run's stores as JSON: URL in the plan → location and Connection ([`StoreRef`]).
    pub stores: String,
}

const STORES_KEY: &str = "kglue.stores";

impl ConfigExtension for KglueOptions {
    const PREFIX: &'static str = "kglue";
}

impl ExtensionOptions for KglueOptions {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> DfResult<()> {
        match key {
            "stores" => {
                self.stores = value.to_string();
                Ok(())
            }
            _ => Err(DataFusionError::Configuration(format!("kglue has no option {key:?}"))),
        }
    }

    // Keys with the prefix, unlike `extensions_options!`'s, so the receiving side can set them.
    fn entries(&self) -> Vec<ConfigEntry> {
        vec![ConfigEntry {
            key: STORES_KEY.to_string(),
            value: Some(self.stores.clone()),
            description: "the run's stores: URL in the plan → location and Connection, as JSON",
        }]
    }
}

/// What a store URL of the plan stands for: a location, through a Connection or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreRef {
    /// `s3://bucket/prefix` or `file:///path`.
    pub location: String,
    /// The Connection the location is reached through, spec and all: an executor has no
    /// catalog, only the Secrets mounted beside it, which the spec names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<NamedConnection>,
}

/// A Connection as a task carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedConnection {
    /// Its name, which its Secrets' folders are found by.
    pub name: String,
    /// Its spec (endpoints and Secret references, never a secret).
    pub spec: ConnectionSpec,
}

/// Where a distributed run's executors come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Executors {
    /// Processes of this machine that the driver starts: `program executor …`, reading the
    /// Secrets of the run's Connections from `secrets_dir` (`kglue run --workers N`).
    Processes {
        /// The kglue binary.
        program: PathBuf,
        /// Where the Secrets that Connections refer to are.
        secrets_dir: PathBuf,
    },
    /// Pods the operator starts once the driver's pod runs (a Job with `workers`): they register
    /// with the scheduler, which listens on `scheduler_port` of every address of the pod.
    Pods {
        /// The scheduler's port.
        scheduler_port: u16,
        /// Task slots of each executor pod (its CPUs).
        slots: usize,
    },
}

/// The session settings of a distributed run: Ballista's (no round-robin repartitioning, which
/// its stages cannot carry; sort-merge joins, which spill, where DataFusion's hash join holds the
/// whole build side in one task) and kglue's codec, which scheduler and executors read plans with.
pub fn configure(config: SessionConfig) -> SessionConfig {
    config
        .upgrade_for_ballista()
        // The plan runs as the driver planned it, partition for partition: the adaptive planner
        // would re-plan stages and change their partitions, and the driver checks that it gets
        // one file list per partition of the plan it sent.
        .set_bool("ballista.planner.adaptive.enabled", false)
        .with_option_extension(KglueOptions::default())
        .with_ballista_physical_extension_codec(Arc::new(KglueCodec::default()))
}

/// A Ballista scheduler (in this process) and its executors (processes it starts, or pods the
/// operator starts), for one run. Dropping it kills the executor processes.
pub struct Workers {
    scheduler_url: String,
    scheduler: Scheduler,
    /// The scheduler's job state: the execution graphs, with each task's times and each shuffle
    /// partition's size.
    cluster: BallistaCluster,
    session_id: String,
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    /// The stores the plans name, as the executors open them.
    stores: Mutex<BTreeMap<String, StoreRef>>,
    /// The run's Connections, by name: their specs travel with the stores that use them.
    connections: BTreeMap<String, ConnectionSpec>,
    /// The executor processes this driver started; empty when they are pods.
    executors: Mutex<Vec<tokio::process::Child>>,
    /// Whether the executors are pods the operator started.
    pods: bool,
    /// Where executor processes keep their shuffle files: removed with them.
    shuffle_dir: Option<PathBuf>,
    /// Executors.
    pub count: usize,
    /// Task slots of each executor.
    pub slots: usize,
}

type Scheduler = SchedulerServer<datafusion_proto::protobuf::LogicalPlanNode, PhysicalPlanNode>;

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Workers({} executors × {} slots at {})",
            self.count, self.slots, self.scheduler_url
        )
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if let Ok(executors) = self.executors.get_mut() {
            for child in executors.iter_mut() {
                let _ = child.start_kill();
            }
        }
        if let Some(dir) = &self.shuffle_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Why the workers could not be started.
#[derive(Debug, thiserror::Error)]
#[error("starting {workers} workers: {message}")]
pub struct StartError {
    workers: usize,
    message: String,
}

/// How long a distributed attempt waits for its executor pods to register: they may wait for
/// room on the cluster's nodes first.
const PODS_WAIT: Duration = Duration::from_secs(600);

/// With executor pods, how long the scheduler may be without any live executor before the job
/// fails (a killed pod is replaced by its Kubernetes Job, and the replacement registers).
const NO_EXECUTOR_GRACE: Duration = Duration::from_secs(120);

impl Workers {
    /// Starts a scheduler in this process, reading plans with `state`'s codec, and the run's
    /// `resources.workers` executors as `executors` says: processes sharing this machine's task
    /// slots and memory, or pods that register on their own (waited for). `sources` are the
    /// stores the sources were mounted under, `connections` the run's Connections.
    pub async fn start(
        state: &SessionState,
        resources: &Resources,
        executors: &Executors,
        sources: BTreeMap<String, (Location, Option<String>)>,
        connections: BTreeMap<String, ConnectionSpec>,
        run_id: &str,
    ) -> Result<Self, StartError> {
        let count = resources.workers;
        let failed = |message: String| StartError {
            workers: count,
            message,
        };
        let bind = match executors {
            Executors::Processes { .. } => "127.0.0.1:0".to_string(),
            Executors::Pods { scheduler_port, .. } => format!("0.0.0.0:{scheduler_port}"),
        };
        let (scheduler_url, scheduler, cluster) = start_scheduler(state, &bind)
            .await
            .map_err(|e| failed(format!("the scheduler on {bind}: {e}")))?;
        let mut workers = Workers {
            scheduler_url,
            scheduler,
            cluster,
            session_id: session_id(),
            config: state.config().clone(),
            runtime: Arc::clone(state.runtime_env()),
            stores: Mutex::default(),
            connections,
            executors: Mutex::new(Vec::new()),
            pods: matches!(executors, Executors::Pods { .. }),
            shuffle_dir: None,
            count,
            slots: 1,
        };
        let stores = sources
            .into_iter()
            .map(|(url, (location, connection))| (url, workers.store_ref(&location, connection.as_deref())))
            .collect();
        workers.stores = Mutex::new(stores);
        match executors {
            Executors::Processes { program, secrets_dir } => {
                // The machine's task slots and memory shared out among the executors.
                workers.slots = (resources.target_partitions / count).max(1);
                // Ballista's executor would keep its shuffle files in the temporary directory:
                // they go into a folder of the run's own, removed with the executors.
                let shuffle_dir = resources.spill_dir.join("shuffle");
                std::fs::create_dir_all(&shuffle_dir).map_err(|e| failed(format!("{}: {e}", shuffle_dir.display())))?;
                workers.shuffle_dir = Some(shuffle_dir.clone());
                let command = ExecutorCommand {
                    scheduler: workers.scheduler_url.clone(),
                    slots: u32::try_from(workers.slots).unwrap_or(u32::MAX),
                    memory_bytes: (resources.memory_limit_bytes / count) as u64,
                    spill_dir: shuffle_dir,
                    secrets_dir: secrets_dir.clone(),
                    advertise_host: "127.0.0.1".into(),
                    lifetime: Lifetime::Stdin,
                    connect_timeout_seconds: CONNECT_TIMEOUT.as_secs(),
                    run_id: Some(run_id.to_string()),
                    allow_local_paths: Vec::new(),
                };
                let mut children = Vec::with_capacity(count);
                for _ in 0..count {
                    let child = tokio::process::Command::new(program)
                        .args(command.to_args())
                        // The executor stops when its stdin closes: when this process ends, however.
                        .stdin(Stdio::piped())
                        .stdout(Stdio::null())
                        .kill_on_drop(true)
                        .spawn()
                        .map_err(|e| failed(format!("{}: {e}", program.display())))?;
                    children.push(child);
                }
                workers.executors = Mutex::new(children);
            }
            Executors::Pods { slots, .. } => {
                workers.slots = *slots;
                let deadline = tokio::time::Instant::now() + PODS_WAIT;
                loop {
                    let alive = workers.alive_executors().await;
                    if alive >= count {
                        break;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(failed(format!(
                            "{alive} of {count} executor pods registered with the scheduler within {} s \
                             (kubectl get pods -l kglue.dev/run-id={run_id} shows them)",
                            PODS_WAIT.as_secs()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        Ok(workers)
    }

    /// Stops every executor process and waits until each has exited, so that no task of a failed
    /// job writes into a staging folder after the run cleaned it (Ballista cancels a failed job's
    /// other tasks on its own time). Executor pods end when this process does, and the operator
    /// starts no retry before every pod of the attempt has ended.
    pub async fn stop(self) {
        let executors = match self.executors.lock() {
            Ok(mut executors) => std::mem::take(&mut *executors),
            Err(_) => Vec::new(),
        };
        for mut child in executors {
            let _ = child.kill().await;
        }
    }

    /// The executors that polled the scheduler within [`EXECUTOR_TIMEOUT`].
    async fn alive_executors(&self) -> usize {
        let Ok(executors) = self.scheduler.state.executor_manager.get_executors_state().await else {
            return 0;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        executors
            .iter()
            .filter(|(_, heartbeat, _)| heartbeat.is_some_and(|at| now.saturating_sub(at) <= EXECUTOR_TIMEOUT))
            .count()
    }

    /// The store a plan URL stands for: `location`, through the Connection `connection`.
    fn store_ref(&self, location: &Location, connection: Option<&str>) -> StoreRef {
        StoreRef {
            location: location.to_string(),
            connection: connection.and_then(|name| {
                Some(NamedConnection {
                    name: name.to_string(),
                    spec: self.connections.get(name)?.clone(),
                })
            }),
        }
    }

    /// The session settings a job is submitted with: the run's, and the stores as they stand.
    fn job_config(&self) -> DfResult<SessionConfig> {
        let stores = self
            .stores
            .lock()
            .map_err(|_| DataFusionError::Internal("store map poisoned".into()))?;
        let json = serde_json::to_string(&*stores).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut config = self.config.clone();
        config.options_mut().set(STORES_KEY, &json)?;
        Ok(config)
    }

    /// Returns, saying why, once no executor is left to run the job's tasks: every executor
    /// process has exited, or no executor pod has polled the scheduler for
    /// [`NO_EXECUTOR_GRACE`]. While one runs, tasks may still finish (Ballista moves a lost
    /// executor's tasks to the others).
    async fn all_lost(&self) -> String {
        let mut none_since: Option<tokio::time::Instant> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if self.pods {
                if self.alive_executors().await > 0 {
                    none_since = None;
                    continue;
                }
                let since = *none_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= NO_EXECUTOR_GRACE {
                    return format!(
                        "no executor pod polled the scheduler for {} s",
                        NO_EXECUTOR_GRACE.as_secs()
                    );
                }
                continue;
            }
            let Ok(mut executors) = self.executors.lock() else {
                return "the executors' handles were poisoned".into();
            };
            let statuses: Vec<Option<String>> = executors
                .iter_mut()
                .map(|child| match child.try_wait() {
                    Ok(Some(status)) => Some(status.to_string()),
                    Ok(None) => None,
                    Err(e) => Some(e.to_string()),
                })
                .collect();
            if statuses.iter().all(Option::is_some) {
                return format!(
                    "every executor exited: {}",
                    statuses.into_iter().flatten().collect::<Vec<_>>().join("; ")
                );
            }
        }
    }

    /// Executes `plan` on the executors, each task writing its partition's rows under the
    /// sink's staging folder for `run_id`, and returns what they staged, as [`sink::stage`] does
    /// in one pod, with the figures of the job's stages.
    pub async fn stage(
        &self,
        target: &SinkTarget,
        plan: Arc<dyn ExecutionPlan>,
        run_id: &str,
        limits: &WriteLimits,
        connection: Option<&str>,
    ) -> Result<(Staged, JobFigures), SinkError> {
        let execute = |e: DataFusionError| SinkError::Execute {
            sink: target.name.clone(),
            source: Box::new(e),
        };
        // Checked here, where the message is clear, before any task writes.
        sink::writer_plan(target, &plan.schema(), run_id, limits, 1)?;
        let store_url = sink_store_url().map_err(execute)?;
        let url = url::Url::parse(store_url.as_str()).map_err(|e| SinkError::Task {
            sink: target.name.clone(),
            message: e.to_string(),
        })?;
        self.runtime.register_object_store(&url, Arc::clone(&target.store));
        let store = self.store_ref(&target.location, connection);
        if let Ok(mut stores) = self.stores.lock() {
            stores.insert(url.as_str().trim_end_matches('/').to_string(), store);
        }
        let spec = StageSpec {
            sink: target.name.clone(),
            store_url: store_url.as_str().to_string(),
            location: target.location.to_string(),
            format: target.format.clone(),
            partition_by: target.partition_by.clone(),
            target_file_bytes: target.target_file_bytes,
            write_mode: target.write_mode,
            run_id: run_id.to_string(),
            max_open_writers: limits.max_open_writers,
            max_buffered_bytes: limits.max_buffered_bytes,
            upload_buffer_bytes: limits.upload_buffer_bytes,
        };
        let streams = plan.output_partitioning().partition_count();
        let stage: Arc<dyn ExecutionPlan> = Arc::new(StageExec::new(count_source_rows(plan).map_err(execute)?, spec));
        let codec = KglueCodec::default();
        let config = self.job_config().map_err(execute)?;
        let collect = async {
            let mut results = execute_physical_plan::<PhysicalPlanNode>(
                self.scheduler_url.clone(),
                &config.ballista_config(),
                stage,
                &codec,
                self.session_id.clone(),
                config.clone(),
            )
            .await?;
            let mut outputs = Vec::new();
            while let Some(batch) = results.next().await {
                outputs.extend(TaskOutput::from_batch(&batch?)?);
            }
            Ok::<_, DataFusionError>(outputs)
        };
        let written = tokio::select! {
            written = collect => written.map_err(execute)?,
            lost = self.all_lost() => {
                return Err(execute(DataFusionError::Execution(format!("the job lost its executors before it ended: {lost}"))));
            }
        };
        let partitions = stage_partitions(&target.name, written, streams)?;
        let mut outputs = Vec::new();
        let mut peak_open = 0;
        let mut job = None;
        for written in partitions {
            peak_open = peak_open.max(written.peak_open_files);
            job = Some(written.job.clone());
            outputs.push((written.stream as usize, written.into_stream_output().map_err(execute)?));
        }
        outputs.sort_by_key(|(stream, _)| *stream);
        let mut staged = sink::merge(target, run_id, outputs);
        staged.peak_open_files = peak_open;
        let figures = match job {
            Some(job) => self.job_figures(&target.name, &job).await.map_err(execute)?,
            // A plan without partitions ran no task.
            None => JobFigures::default(),
        };
        Ok((staged, figures))
    }

    /// The figures of a finished job, from the scheduler.
    async fn job_figures(&self, sink: &str, job: &str) -> DfResult<JobFigures> {
        let unreachable = |e: &dyn fmt::Display| {
            DataFusionError::Execution(format!("reading job {job}'s figures from the scheduler: {e}"))
        };
        let mut client = SchedulerGrpcClient::connect(self.scheduler_url.clone())
            .await
            .map_err(|e| unreachable(&e))?;
        let stages = client
            .get_job_metrics(GetJobMetricsParams {
                job_id: job.to_string(),
            })
            .await
            .map_err(|e| unreachable(&e))?
            .into_inner()
            .stages;
        let graph = self
            .cluster
            .job_state()
            .get_execution_graph(&ballista_core::JobId::from(job.to_string()))
            .await
            .map_err(|e| unreachable(&e))?;
        let mut times = StageTimes::default();
        for (id, stage) in graph.iter().flat_map(|g| g.stages()) {
            let ExecutionStage::Successful(stage) = stage else {
                continue;
            };
            times.tasks.insert(
                *id,
                stage
                    .task_infos
                    .iter()
                    .map(|t| (t.start_exec_time, t.end_exec_time))
                    .collect(),
            );
            for (producer, output) in &stage.inputs {
                let bytes: u64 = output
                    .partition_locations
                    .values()
                    .flatten()
                    .filter_map(|l| l.partition_stats.num_bytes())
                    .sum();
                *times.shuffle_bytes.entry(*producer).or_default() += bytes;
            }
        }
        Ok(JobFigures::of(sink, &stages, &times))
    }
}

/// Starts a Ballista scheduler in this process listening on `bind` and returns the URL this
/// process reaches it at, with the server (whose state says which executors are alive) and its
/// cluster state (the jobs' execution graphs).
/// Standalone Ballista's, but giving up on a silent executor after [`EXECUTOR_TIMEOUT`] rather
/// than three minutes, and spreading a stage's tasks over the executors.
async fn start_scheduler(state: &SessionState, bind: &str) -> Result<(String, Scheduler, BallistaCluster), String> {
    let codec = BallistaCodec::new(
        state.config().ballista_logical_extension_codec(),
        state.config().ballista_physical_extension_codec(),
    );
    let session_config = state.config().clone();
    let session_state = state.clone();
    // The job's settings (the stores among them) become the session's, so the tasks carry them.
    // The run's catalog is shared, not replaced: a builder that creates the default catalog
    // registers a new, empty one over the run's, and the script's views were gone after the
    // first job (runPropertiesFrom found no relation).
    let session_builder = Arc::new(move |config: SessionConfig| {
        Ok(SessionStateBuilder::new_from_existing(session_state.clone())
            .with_config(config.with_create_default_catalog_and_schema(false))
            .build())
    });
    let config_producer: ConfigProducer = Arc::new(move || session_config.clone());
    let max_message = state.config().ballista_grpc_client_max_message_size();
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    // This process submits jobs over loopback, whatever address the executors use.
    let endpoint = format!("127.0.0.1:{port}");
    let cluster = BallistaCluster::new_memory(&endpoint, session_builder, config_producer);
    let config = SchedulerConfig {
        executor_timeout_seconds: EXECUTOR_TIMEOUT.as_secs(),
        expire_dead_executor_interval_seconds: 1,
        no_executors_grace_period_seconds: EXECUTOR_TIMEOUT.as_secs(),
        ..SchedulerConfig::default()
    }
    .with_scheduler_policy(ballista_core::config::TaskSchedulingPolicy::PullStaged)
    .with_task_distribution(TaskDistributionPolicy::RoundRobin);
    let metrics = ballista_scheduler::metrics::default_metrics_collector().map_err(|e| e.to_string())?;
    let mut server: Scheduler =
        SchedulerServer::new(endpoint.clone(), cluster.clone(), codec, Arc::new(config), metrics);
    server.init().await.map_err(|e| e.to_string())?;
    let service = SchedulerGrpcServer::new(server.clone())
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    tokio::spawn(
        create_grpc_server(&GrpcServerConfig::default())
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok((format!("http://{endpoint}"), server, cluster))
}

/// How long an executor pod keeps going once its scheduler stopped answering: the run's pod
/// ended, or is gone.
const SCHEDULER_GONE: Duration = Duration::from_secs(10);

/// Serves as one executor (`kglue executor`) of the scheduler `command` names, with its task
/// slots and memory, spilling and keeping shuffle files under its spill folder, opening the
/// stores each task's session names with the Secrets under `credentials`. Returns when the
/// executor should end: for [`Lifetime::Pod`], once the scheduler has not answered for
/// [`SCHEDULER_GONE`] after serving it; for [`Lifetime::Stdin`], never (the caller watches stdin).
pub async fn serve_executor(command: &ExecutorCommand, credentials: Credentials) -> Result<(), String> {
    let slots = usize::try_from(command.slots).unwrap_or(1).max(1);
    let mut resources = Resources::for_resources(
        kglue_crds::common::WorkerResources {
            cpu: command.slots.max(1),
            memory_gib: 1,
        },
        command.spill_dir.clone(),
    );
    resources.memory_limit_bytes = usize::try_from(command.memory_bytes).unwrap_or(usize::MAX);
    let local_paths = match command.lifetime {
        Lifetime::Stdin => None,
        Lifetime::Pod => Some(
            command
                .allow_local_paths
                .iter()
                .map(|path| {
                    Location::from_directory(path).map_err(|e| format!("--allow-local-path {}: {e}", path.display()))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let runtime = engine_runtime(&resources).map_err(|e| e.to_string())?;
    let config = configure(SessionConfig::new().with_target_partitions(resources.target_partitions));
    let opened: Arc<Mutex<BTreeMap<String, StoreRef>>> = Arc::default();
    let runtime_producer: RuntimeProducer = Arc::new(move |config: &SessionConfig| {
        open_stores(&runtime, config, &credentials, local_paths.as_deref(), &opened)?;
        Ok(Arc::clone(&runtime))
    });
    let config_producer: ConfigProducer = Arc::new(move || config.clone());
    let codec: BallistaCodec = BallistaCodec::new(
        Arc::new(BallistaLogicalExtensionCodec::default()),
        Arc::new(KglueCodec::default()),
    );
    let functions = BallistaFunctionRegistry::from(&SessionStateBuilder::new().with_default_features().build());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(command.connect_timeout_seconds);
    let scheduler = loop {
        match SchedulerGrpcClient::connect(command.scheduler.clone()).await {
            Ok(client) => break client,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "the scheduler at {} accepts no connection: {e}",
                    command.scheduler
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    // Where this executor's task output (shuffle files) lives, served to the others over Flight.
    let work_dir = command.spill_dir.join(format!("executor-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir).map_err(|e| format!("{}: {e}", work_dir.display()))?;
    let work_dir_text = work_dir.display().to_string();
    let bind = match command.lifetime {
        Lifetime::Stdin => "127.0.0.1:0",
        Lifetime::Pod => "0.0.0.0:0",
    };
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| format!("listening on {bind}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let registration = ExecutorRegistration {
        id: ballista_core::ids::new_instance_id(),
        host: Some(command.advertise_host.clone()),
        port: u32::from(port),
        // Tasks are pulled: the executor serves no gRPC of its own, only Flight on `port`.
        grpc_port: 0,
        specification: Some(ExecutorSpecification::default().with_vcores(command.slots).into()),
        os_info: Some(ExecutorOperatingSystemSpecification::default().into()),
        ballista_protocol_version: ballista_core::BALLISTA_PROTOCOL_VERSION,
    };
    let max_message = config_producer().ballista_grpc_client_max_message_size();
    let executor = Arc::new(Executor::with_default_execution_engine(
        registration,
        &work_dir_text,
        runtime_producer,
        config_producer,
        Arc::new(functions),
        Arc::new(LoggingMetricsCollector::default()),
        slots,
    ));
    let flight = FlightServiceServer::new(BallistaFlightService::new(work_dir_text))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    tokio::spawn(
        create_grpc_server(&GrpcServerConfig::default())
            .add_service(flight)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let health = ExecutorHealth::new();
    let polling = tokio::spawn(execution_loop::poll_loop(
        scheduler,
        executor,
        codec,
        None,
        None,
        health.clone(),
    ));
    let ended = match command.lifetime {
        Lifetime::Stdin => {
            let mut stdin = tokio::io::stdin();
            let mut buffer = [0u8; 64];
            while matches!(tokio::io::AsyncReadExt::read(&mut stdin, &mut buffer).await, Ok(n) if n > 0) {}
            Ok(())
        }
        Lifetime::Pod => scheduler_gone(&health).await,
    };
    polling.abort();
    let _ = std::fs::remove_dir_all(&work_dir);
    ended
}

/// Returns once the scheduler, having answered, has not answered for [`SCHEDULER_GONE`]; an
/// error if it never answers within [`SCHEDULER_GONE`] of the first try.
async fn scheduler_gone(health: &ExecutorHealth) -> Result<(), String> {
    let mut served = false;
    let mut silent_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if health.is_ready() {
            served = true;
            silent_since = tokio::time::Instant::now();
        } else if silent_since.elapsed() >= SCHEDULER_GONE {
            return if served {
                Ok(())
            } else {
                Err(format!(
                    "the scheduler did not answer a poll within {} s",
                    SCHEDULER_GONE.as_secs()
                ))
            };
        }
    }
}

/// Registers in `runtime` every store `config`'s `kglue.stores` names that is not registered
/// as it says yet, through the Connection each names, with the Secrets under `credentials`;
/// local folders only within `local_paths` when given.
fn open_stores(
    runtime: &RuntimeEnv,
    config: &SessionConfig,
    credentials: &Credentials,
    local_paths: Option<&[Location]>,
    opened: &Mutex<BTreeMap<String, StoreRef>>,
) -> DfResult<()> {
    let Some(options) = config.options().extensions.get::<KglueOptions>() else {
        return Ok(());
    };
    if options.stores.is_empty() {
        return Ok(());
    }
    let stores: BTreeMap<String, StoreRef> =
        serde_json::from_str(&options.stores).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let mut opened = opened
        .lock()
        .map_err(|_| DataFusionError::Internal("store map poisoned".into()))?;
    for (url, store) in stores {
        if opened.get(&url) == Some(&store) {
            continue;
        }
        let location: Location = store
            .location
            .parse()
            .map_err(|e: crate::storage::LocationError| DataFusionError::Plan(e.to_string()))?;
        let connections = store
            .connection
            .iter()
            .map(|c| (c.name.clone(), c.spec.clone()))
            .collect();
        let mut resolver = StoreResolver::new(connections, credentials.clone());
        if let Some(paths) = local_paths {
            resolver = resolver.with_local_paths(paths.to_vec());
        }
        let object_store = resolver
            .store(&location, store.connection.as_ref().map(|c| c.name.as_str()))
            .map_err(|e| DataFusionError::Plan(format!("{url} ({}): {e}", store.location)))?;
        let parsed = url::Url::parse(&url).map_err(|e| DataFusionError::Plan(format!("{url}: {e}")))?;
        runtime.register_object_store(&parsed, object_store);
        opened.insert(url, store);
    }
    Ok(())
}

/// An id, unique in this process, for a run's Ballista session.
fn session_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("kglue-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A URL, unique in this process, under which a sink's store is registered for the executors.
fn sink_store_url() -> DfResult<ObjectStoreUrl> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ObjectStoreUrl::parse(format!("kglue-sink://sink{n}"))
}

/// What a [`StageExec`] needs to write a sink's staged files on an executor: the sink's target
/// without its store (found in the executor's runtime under `store_url`) and the write limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StageSpec {
    sink: String,
    store_url: String,
    location: String,
    format: FormatSpec,
    partition_by: Vec<String>,
    target_file_bytes: u64,
    write_mode: WriteMode,
    run_id: String,
    max_open_writers: usize,
    max_buffered_bytes: usize,
    upload_buffer_bytes: usize,
}

impl StageSpec {
    fn target(&self, context: &TaskContext) -> DfResult<SinkTarget> {
        let store = context
            .runtime_env()
            .object_store(ObjectStoreUrl::parse(&self.store_url)?)?;
        let location: Location = self
            .location
            .parse()
            .map_err(|e: crate::storage::LocationError| DataFusionError::Plan(e.to_string()))?;
        Ok(SinkTarget {
            name: self.sink.clone(),
            store,
            location,
            format: self.format.clone(),
            partition_by: self.partition_by.clone(),
            target_file_bytes: self.target_file_bytes,
            write_mode: self.write_mode,
            // Multipart requests are the commit's, which the driver makes.
            s3: None,
        })
    }

    fn limits(&self) -> WriteLimits {
        WriteLimits {
            max_open_writers: self.max_open_writers,
            max_buffered_bytes: self.max_buffered_bytes,
            upload_buffer_bytes: self.upload_buffer_bytes,
        }
    }
}

/// The last stage of a distributed sink: writes each partition of its input as staged files and
/// outputs one row per partition, `(stream, written)`, `written` being the [`TaskOutput`] as JSON.
#[derive(Debug)]
pub struct StageExec {
    input: Arc<dyn ExecutionPlan>,
    spec: StageSpec,
    properties: Arc<PlanProperties>,
}

impl StageExec {
    fn new(input: Arc<dyn ExecutionPlan>, spec: StageSpec) -> Self {
        let partitions = input.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(task_output_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        StageExec {
            input,
            spec,
            properties,
        }
    }
}

fn task_output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("stream", DataType::UInt64, false),
        Field::new("written", DataType::Utf8, false),
    ]))
}

impl DisplayAs for StageExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StageExec: sink {} staged under {}",
            self.spec.sink, self.spec.location
        )
    }
}

impl ExecutionPlan for StageExec {
    fn name(&self) -> &str {
        "StageExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal("StageExec has one child".into()))?;
        Ok(Arc::new(StageExec::new(input, self.spec.clone())))
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let target = self.spec.target(&context)?;
        let task = context.task_id();
        let stream = stream_id(task.as_deref(), partition)?;
        let job = task.as_deref().and_then(job_of).unwrap_or_default().to_string();
        let stage_attempt = task
            .as_deref()
            .and_then(task_numbers)
            .map_or(0, |(attempt, _, _)| attempt);
        let streams = self.input.output_partitioning().partition_count();
        // Each task writes alone on its executor: the sink's bounds are shared out per stream as
        // a one-pod run shares them among its streams.
        let shared = sink::writer_plan(
            &target,
            &self.input.schema(),
            &self.spec.run_id,
            &self.spec.limits(),
            streams,
        )
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let reservation = MemoryConsumer::new(format!("sink {} stream {partition}", target.name))
            .with_can_spill(true)
            .register(context.memory_pool());
        let written = async move {
            let output = sink::write_stream(Arc::clone(&shared), stream, input, reservation)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let peak = shared.peak_open.load(Ordering::Relaxed) as u64;
            TaskOutput::of(&job, stage_attempt, stream, &output, peak).to_batch()
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            task_output_schema(),
            futures::stream::once(written),
        )))
    }
}

/// The number of the stream a task writes, which its files are named by: unique among the tasks
/// of the sink's job, attempts included (Ballista numbers a task's partitions from 0 within the
/// task, so the partition alone repeats). `task` is Ballista's task identity,
/// `TID <job>/<stage>.<stage attempt>/<task>.<task attempt>`.
fn stream_id(task: Option<&str>, partition: usize) -> DfResult<usize> {
    let parsed = task.and_then(task_numbers);
    match parsed {
        // Fixed widths after the stage attempt keep the digits unambiguous.
        Some((stage_attempt, task, task_attempt)) if task < 100_000 && task_attempt < 100 && partition < 1000 => {
            Ok(((stage_attempt * 100_000 + task) * 100 + task_attempt) * 1000 + partition)
        }
        _ => Err(DataFusionError::Internal(format!(
            "a staging task needs Ballista's task identity (TID <job>/<stage>.<attempt>/<task>.<attempt>) and at most 1000 partitions; it has {task:?}, partition {partition}"
        ))),
    }
}

/// The stage attempt, task and task attempt of a Ballista task identity.
fn task_numbers(task: &str) -> Option<(usize, usize, usize)> {
    let (_, rest) = task.strip_prefix("TID ")?.split_once('/')?;
    let (stage, task) = rest.split_once('/')?;
    let (_, stage_attempt) = stage.split_once('.')?;
    let (task, task_attempt) = task.split_once('.')?;
    Some((
        stage_attempt.parse().ok()?,
        task.parse().ok()?,
        task_attempt.parse().ok()?,
    ))
}

/// One file list per partition of the plan, from what the job's last stage returned. A stage
/// that ran again (an executor was lost and the shuffle files it held with it) can leave the
/// results of both attempts among the job's outputs: then the newest attempt's, when it covers
/// every partition. Anything else fails the sink rather than commit rows twice or lose some.
fn stage_partitions(sink: &str, written: Vec<TaskOutput>, partitions: usize) -> Result<Vec<TaskOutput>, SinkError> {
    if written.len() == partitions {
        return Ok(written);
    }
    let newest = written.iter().map(|w| w.stage_attempt).max().unwrap_or_default();
    let got = written.len();
    let latest: Vec<TaskOutput> = written.into_iter().filter(|w| w.stage_attempt == newest).collect();
    if latest.len() == partitions {
        return Ok(latest);
    }
    Err(SinkError::Task {
        sink: sink.to_string(),
        message: format!(
            "the executors returned {got} file lists for the {partitions} partitions of the plan ({} from the newest attempt of the last stage); failing the run rather than committing rows twice or losing some (a retry starts clean)",
            latest.len()
        ),
    })
}

/// The job of a Ballista task identity (`TID <job>/…`).
fn job_of(task: &str) -> Option<&str> {
    Some(task.strip_prefix("TID ")?.split_once('/')?.0)
}

/// What one task of a [`StageExec`] wrote, as it travels back to the driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskOutput {
    /// Ballista's job (one per sink and run).
    job: String,
    /// The attempt of the last stage the task belonged to.
    stage_attempt: usize,
    stream: u64,
    files: Vec<TaskFile>,
    partitions: Vec<TaskPartition>,
    early_flushes: u64,
    peak_open_files: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TaskFile {
    path: String,
    partition: usize,
    rows: u64,
    bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TaskPartition {
    rel: String,
    values: Vec<(String, Option<String>)>,
}

impl TaskOutput {
    fn of(job: &str, stage_attempt: usize, stream: usize, output: &StreamOutput, peak_open_files: u64) -> Self {
        TaskOutput {
            job: job.to_string(),
            stage_attempt,
            stream: stream as u64,
            files: output
                .files
                .iter()
                .map(|f| TaskFile {
                    path: f.path.to_string(),
                    partition: f.partition,
                    rows: f.rows,
                    bytes: f.bytes,
                })
                .collect(),
            partitions: output
                .partitions
                .iter()
                .map(|p| TaskPartition {
                    rel: p.rel.clone(),
                    values: p.values.clone(),
                })
                .collect(),
            early_flushes: output.early_flushes,
            peak_open_files,
        }
    }

    fn into_stream_output(self) -> DfResult<StreamOutput> {
        Ok(StreamOutput {
            files: self
                .files
                .into_iter()
                .map(|f| {
                    Ok(WrittenFile {
                        path: Path::parse(&f.path).map_err(|e| DataFusionError::External(Box::new(e)))?,
                        partition: f.partition,
                        rows: f.rows,
                        bytes: f.bytes,
                    })
                })
                .collect::<DfResult<_>>()?,
            partitions: self
                .partitions
                .into_iter()
                .map(|p| PartitionKey {
                    rel: p.rel,
                    values: p.values,
                })
                .collect(),
            early_flushes: self.early_flushes,
        })
    }

    fn to_batch(&self) -> DfResult<RecordBatch> {
        let json = serde_json::to_string(self).map_err(|e| DataFusionError::External(Box::new(e)))?;
        RecordBatch::try_new(
            task_output_schema(),
            vec![
                Arc::new(UInt64Array::from(vec![self.stream])),
                Arc::new(StringArray::from(vec![json])),
            ],
        )
        .map_err(DataFusionError::from)
    }

    fn from_batch(batch: &RecordBatch) -> DfResult<Vec<Self>> {
        let written = batch
            .column_by_name("written")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| DataFusionError::Internal("a staging task returned no file list".into()))?;
        (0..written.len())
            .map(|row| serde_json::from_str(written.value(row)).map_err(|e| DataFusionError::External(Box::new(e))))
            .collect()
    }
}

/// Encodes kglue's plan nodes ([`StageExec`]) and hands every other node to Ballista's codec.
#[derive(Debug, Default)]
pub struct KglueCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

/// The first bytes of an encoded [`StageExec`]; Ballista's nodes are protobuf messages, which
/// cannot start with it.
const STAGE_TAG: &[u8] = b"kglue.StageExec/1\n";
/// The first bytes of an encoded [`SourceRowsExec`], followed by its store URL.
const SOURCE_ROWS_TAG: &[u8] = b"kglue.SourceRowsExec/1\n";

impl PhysicalExtensionCodec for KglueCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(url) = buf.strip_prefix(SOURCE_ROWS_TAG) {
            let url = std::str::from_utf8(url).map_err(|e| DataFusionError::External(Box::new(e)))?;
            let [input] = inputs else {
                return Err(DataFusionError::Internal("SourceRowsExec has one input".into()));
            };
            return Ok(Arc::new(SourceRowsExec::new(Arc::clone(input), url.to_string())));
        }
        let Some(json) = buf.strip_prefix(STAGE_TAG) else {
            return self.ballista.try_decode(buf, inputs, ctx, proto_converter);
        };
        let spec: StageSpec = serde_json::from_slice(json).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let [input] = inputs else {
            return Err(DataFusionError::Internal(format!(
                "StageExec has one input, the plan gave {}",
                inputs.len()
            )));
        };
        Ok(Arc::new(StageExec::new(Arc::clone(input), spec)))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        if let Some(counted) = node.downcast_ref::<SourceRowsExec>() {
            buf.extend_from_slice(SOURCE_ROWS_TAG);
            buf.extend_from_slice(counted.store_url.as_bytes());
            return Ok(());
        }
        let Some(stage) = node.downcast_ref::<StageExec>() else {
            return self.ballista.try_encode(node, buf, proto_converter);
        };
        buf.extend_from_slice(STAGE_TAG);
        serde_json::to_writer(buf, &stage.spec).map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

/// Checks that `plan` can be sent to executors: every node of it is one DataFusion, Ballista or
/// kglue can encode (a database or Kafka source, or a table held in this process, cannot be).
pub fn check_plan(plan: &Arc<dyn ExecutionPlan>) -> Result<(), String> {
    use datafusion_proto::physical_plan::AsExecutionPlan;
    PhysicalPlanNode::try_from_physical_plan(Arc::clone(plan), &KglueCodec::default())
        .map(|_| ())
        .map_err(|e| format!("with workers > 1 the sink's plan runs on executors, and part of it cannot: {e}"))
}

/// What a distributed sink's job did, from the scheduler's figures of its stages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFigures {
    /// Rows each source's scans produced, keyed by the source's store URL (as in one pod).
    pub rows_by_store: BTreeMap<String, u64>,
    /// The job's stages, in order.
    pub stages: Vec<StageMetrics>,
}

/// What the scheduler's execution graph says of a job's stages besides their metrics, by stage
/// id: each successful task's start and end (milliseconds since the epoch), and the bytes each
/// stage wrote to the shuffle (summed over the partitions the stages after it read).
#[derive(Debug, Default)]
struct StageTimes {
    tasks: BTreeMap<usize, Vec<(u128, u128)>>,
    shuffle_bytes: BTreeMap<usize, u64>,
}

impl StageTimes {
    /// Seconds from stage `id`'s first task starting to its last ending.
    fn wall_seconds(&self, id: usize) -> Option<f64> {
        let tasks = self.tasks.get(&id)?;
        let start = tasks.iter().map(|(start, _)| *start).min()?;
        let end = tasks.iter().map(|(_, end)| *end).max()?;
        Some(end.saturating_sub(start) as f64 / 1000.0)
    }
}

impl JobFigures {
    fn of(sink: &str, stages: &[JobStageMetrics], times: &StageTimes) -> Self {
        let mut figures = JobFigures::default();
        for stage in stages {
            let mut compute_nanos = 0u64;
            // The rows of the stage's topmost operator of its own: under Ballista's shuffle
            // writer, and under the StageExec in the last stage.
            let mut handed_on: Option<(u32, u64)> = None;
            for operator in &stage.operators {
                let rows: u64 = operator
                    .metrics
                    .iter()
                    .filter_map(|m| match m.metric {
                        Some(Metric::OutputRows(rows)) => Some(rows),
                        _ => None,
                    })
                    .sum();
                compute_nanos += operator
                    .metrics
                    .iter()
                    .filter_map(|m| match &m.metric {
                        Some(Metric::ElapseTime(nanos)) => Some(*nanos),
                        Some(Metric::Time(time)) if WORK_TIMES.contains(&time.name.as_str()) => Some(time.value),
                        _ => None,
                    })
                    .sum::<u64>();
                if operator.operator_type == SOURCE_ROWS {
                    let url = operator.operator_desc.rsplit(' ').next().unwrap_or_default();
                    *figures.rows_by_store.entry(url.to_string()).or_default() += rows;
                }
                let own = !matches!(operator.operator_type.as_str(), "ShuffleWriterExec" | "StageExec");
                if own && handed_on.is_none_or(|(depth, _)| operator.depth < depth) {
                    handed_on = Some((operator.depth, rows));
                }
            }
            figures.stages.push(StageMetrics {
                sink: sink.to_string(),
                stage: i64::from(stage.stage_id),
                tasks: i64::from(stage.partitions),
                rows: handed_on.map_or(0, |(_, rows)| rows) as i64,
                compute_seconds: compute_nanos as f64 / 1e9,
                wall_seconds: times.wall_seconds(stage.stage_id as usize),
                shuffle_bytes: times
                    .shuffle_bytes
                    .get(&(stage.stage_id as usize))
                    .map(|bytes| *bytes as i64),
            });
        }
        figures
    }
}

/// The times operators measure besides `elapsed_compute` that are work, not waiting: a scan's
/// decoding of its files and a shuffle writer's writing. (A scan's `time_elapsed_scanning_total`
/// includes the time it waits for the operators above it.)
const WORK_TIMES: [&str; 2] = ["time_elapsed_processing", "write_time"];

/// The name of [`SourceRowsExec`], which the scheduler's figures carry.
const SOURCE_ROWS: &str = "SourceRowsExec";

/// Wraps every scan of a source's objects in a [`SourceRowsExec`], so the rows each source
/// produced come back with the job's figures (the executors' scans are not the driver's).
fn count_source_rows(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let url = node
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
            .map(|config| config.object_store_url.as_str().trim_end_matches('/').to_string());
        Ok(match url {
            Some(url) => Transformed::yes(Arc::new(SourceRowsExec::new(node, url)) as Arc<dyn ExecutionPlan>),
            None => Transformed::no(node),
        })
    })
    .map(|transformed| transformed.data)
}

/// Passes a source scan's rows through, counting them (its `output_rows`).
#[derive(Debug)]
struct SourceRowsExec {
    input: Arc<dyn ExecutionPlan>,
    store_url: String,
    metrics: ExecutionPlanMetricsSet,
}

impl SourceRowsExec {
    fn new(input: Arc<dyn ExecutionPlan>, store_url: String) -> Self {
        SourceRowsExec {
            input,
            store_url,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for SourceRowsExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        // The URL last: the figures find it after the last space.
        write!(f, "{SOURCE_ROWS}: rows read from {}", self.store_url)
    }
}

impl ExecutionPlan for SourceRowsExec {
    fn name(&self) -> &str {
        SOURCE_ROWS
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal("SourceRowsExec has one child".into()))?;
        Ok(Arc::new(SourceRowsExec::new(input, self.store_url.clone())))
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let schema = input.schema();
        let counted = input.map(move |batch| {
            if let Ok(batch) = &batch {
                baseline.record_output(batch.num_rows());
            }
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, counted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballista_core::serde::protobuf::{NamedTime, OperatorMetric, OperatorWithMetrics};
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::physical_plan::AsExecutionPlan;

    #[test]
    fn every_task_and_attempt_writes_its_own_stream() {
        let id = |task: &str, partition| stream_id(Some(task), partition).expect(task);
        let ids = [
            id("TID aBc1234/3.0/0.0", 0),
            id("TID aBc1234/3.0/0.0", 1),
            id("TID aBc1234/3.0/1.0", 0),
            id("TID aBc1234/3.0/0.1", 0),
            id("TID aBc1234/3.1/0.0", 0),
            id("TID aBc1234/3.0/10.0", 0),
        ];
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{ids:?}");
        assert!(
            stream_id(None, 0).is_err(),
            "outside Ballista there is no task to name files by"
        );
        assert!(stream_id(Some("TID a/1.0/x.0"), 0).is_err());
        assert_eq!(job_of("TID aBc1234/3.0/0.0"), Some("aBc1234"));
    }

    #[test]
    fn a_rerun_stage_gives_its_newest_attempts_files_or_the_sink_fails() {
        let output = |stage_attempt, stream| TaskOutput {
            job: "j".into(),
            stage_attempt,
            stream,
            files: Vec::new(),
            partitions: Vec::new(),
            early_flushes: 0,
            peak_open_files: 0,
        };
        let streams = |kept: Vec<TaskOutput>| kept.iter().map(|o| o.stream).collect::<Vec<_>>();
        // One list per partition: kept as they are, even from different attempts.
        let kept = stage_partitions("s", vec![output(0, 1), output(1, 2)], 2).expect("kept");
        assert_eq!(streams(kept), [1, 2]);
        // The stage ran twice and both attempts' lists came back: the newest attempt's.
        let kept = stage_partitions("s", vec![output(0, 1), output(1, 2), output(1, 3)], 2).expect("kept");
        assert_eq!(streams(kept), [2, 3]);
        // Too many with no complete newest attempt, or too few: the sink fails.
        let error = stage_partitions("s", vec![output(0, 1), output(0, 4), output(1, 2)], 2).expect_err("refused");
        assert!(
            error.to_string().contains("3 file lists for the 2 partitions"),
            "{error}"
        );
        assert!(stage_partitions("s", vec![output(0, 1)], 2).is_err());
    }

    /// A plan node DataFusion's protobuf cannot carry, as a database or Kafka source is.
    #[derive(Debug)]
    struct InProcess(SchemaRef);

    impl datafusion::physical_plan::streaming::PartitionStream for InProcess {
        fn schema(&self) -> &SchemaRef {
            &self.0
        }

        fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
            Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.0),
                futures::stream::empty(),
            ))
        }
    }

    #[test]
    fn a_plan_executors_cannot_run_is_refused_before_it_runs() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let source = datafusion::physical_plan::streaming::StreamingTableExec::try_new(
            Arc::clone(&schema),
            vec![Arc::new(InProcess(Arc::clone(&schema)))],
            None,
            Vec::new(),
            false,
            None,
        )
        .expect("plan");
        let error = check_plan(&(Arc::new(source) as Arc<dyn ExecutionPlan>)).expect_err("refused");
        assert!(error.contains("with workers > 1"), "{error}");
        let encodable: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(schema));
        assert!(check_plan(&encodable).is_ok());
    }

    fn spec() -> StageSpec {
        StageSpec {
            sink: "detail".into(),
            store_url: "kglue-sink://sink7".into(),
            location: "s3://bucket/curated/detail".into(),
            format: serde_json::from_value(serde_json::json!({"format": "Parquet", "compression": "Zstd"}))
                .expect("format"),
            partition_by: vec!["ship_month".into()],
            target_file_bytes: 64 << 20,
            write_mode: WriteMode::OverwritePartitions,
            run_id: "r1".into(),
            max_open_writers: 32,
            max_buffered_bytes: 1 << 20,
            upload_buffer_bytes: 5 << 20,
        }
    }

    #[test]
    fn the_staged_writer_and_the_row_counter_travel_to_executors_intact() {
        let scan: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(Arc::new(Schema::new(vec![
            Field::new("ship_month", DataType::Utf8, true),
            Field::new("revenue", DataType::Float64, true),
        ]))));
        let counted: Arc<dyn ExecutionPlan> = Arc::new(SourceRowsExec::new(scan, "kglue://source-0".into()));
        let plan: Arc<dyn ExecutionPlan> = Arc::new(StageExec::new(counted, spec()));
        let codec = KglueCodec::default();
        let node = PhysicalPlanNode::try_from_physical_plan(Arc::clone(&plan), &codec).expect("encode");
        let ctx = SessionContext::new();
        let decoded = node.try_into_physical_plan(&ctx.task_ctx(), &codec).expect("decode");
        let stage = decoded.downcast_ref::<StageExec>().expect("a StageExec");
        assert_eq!(stage.spec, spec());
        let counter = stage.input.downcast_ref::<SourceRowsExec>().expect("a SourceRowsExec");
        assert_eq!(counter.store_url, "kglue://source-0");
        assert!(counter.input.downcast_ref::<EmptyExec>().is_some());
        assert!(check_plan(&plan).is_ok());
    }

    #[test]
    fn a_stages_figures_count_source_rows_and_work_but_not_waiting() {
        let metric = |metric| OperatorMetric {
            partition: None,
            metric: Some(metric),
        };
        let operator = |depth, kind: &str, desc: &str, metrics: Vec<OperatorMetric>| OperatorWithMetrics {
            depth,
            operator_type: kind.into(),
            operator_desc: desc.into(),
            metrics,
        };
        let time = |name: &str, seconds: u64| {
            metric(Metric::Time(NamedTime {
                name: name.into(),
                value: seconds * 1_000_000_000,
            }))
        };
        let scan = JobStageMetrics {
            stage_id: 1,
            partitions: 2,
            operators: vec![
                operator(
                    0,
                    "ShuffleWriterExec",
                    "ShuffleWriterExec",
                    vec![metric(Metric::OutputRows(90)), time("write_time", 1)],
                ),
                operator(
                    1,
                    "FilterExec",
                    "FilterExec: x > 1",
                    vec![
                        metric(Metric::OutputRows(90)),
                        metric(Metric::ElapseTime(2_000_000_000)),
                    ],
                ),
                operator(
                    2,
                    SOURCE_ROWS,
                    "SourceRowsExec: rows read from kglue://source-0",
                    vec![metric(Metric::OutputRows(100))],
                ),
                operator(
                    3,
                    "DataSourceExec",
                    "DataSourceExec: …",
                    vec![
                        time("time_elapsed_processing", 4),
                        time("time_elapsed_scanning_total", 60),
                    ],
                ),
            ],
        };
        let last = JobStageMetrics {
            stage_id: 2,
            partitions: 2,
            operators: vec![
                operator(
                    0,
                    "ShuffleWriterExec",
                    "ShuffleWriterExec",
                    vec![metric(Metric::OutputRows(2))],
                ),
                operator(1, "StageExec", "StageExec: sink s", vec![]),
                operator(2, "AggregateExec", "AggregateExec", vec![metric(Metric::OutputRows(7))]),
            ],
        };
        let times = StageTimes {
            tasks: BTreeMap::from([(1, vec![(1_000, 3_500), (1_200, 4_000)]), (2, vec![(4_100, 4_600)])]),
            shuffle_bytes: BTreeMap::from([(1, 4096)]),
        };
        let figures = JobFigures::of("s", &[scan, last], &times);
        assert_eq!(figures.stages[0].wall_seconds, Some(3.0), "first start to last end");
        assert_eq!(figures.stages[0].shuffle_bytes, Some(4096));
        assert_eq!(figures.stages[1].wall_seconds, Some(0.5));
        assert_eq!(
            figures.stages[1].shuffle_bytes, None,
            "the last stage writes files, not a shuffle"
        );
        assert_eq!(
            figures.rows_by_store,
            BTreeMap::from([("kglue://source-0".to_string(), 100)])
        );
        assert_eq!(figures.stages.len(), 2);
        assert_eq!((figures.stages[0].rows, figures.stages[0].tasks), (90, 2));
        assert_eq!(
            figures.stages[0].compute_seconds, 7.0,
            "scanning time waits on the filter: not work"
        );
        assert_eq!(
            figures.stages[1].rows, 7,
            "the last stage's rows are those written, not the file lists"
        );
    }
}
