//! `kglue attempt`: one attempt of a Job run or a crawl, inside its Kubernetes Job (docs/runs.md,
//! "What the runner reports").
//!
//! The runner reads its Job or Crawler and the catalog from its namespace, does the work, writes
//! Tables with server-side apply, and reports through one `RunResult` named after and owned by
//! the attempt's Kubernetes Job. It never writes run status or bookmarks (brief §3): the operator
//! commits them from the RunResult. Whatever goes wrong short of the API server being unreachable
//! is still reported, as a Failed result that says what went wrong.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kglue_crds::crawler::CrawlMetrics;
use kglue_crds::job::BookmarkOption;
use kglue_crds::protocol::attempt::{AttemptArgs, SettleMode, run_labels};
use kglue_crds::protocol::ids::attempt_job_name;
use kglue_crds::run_result::{AttemptOutcome, CommitIntent, CommitSink, JobAttemptReport, RunOwnerKind};
use kglue_crds::{Crawler, Job, RunResult, RunResultSpec};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use crate::catalog::Catalog;
use crate::cluster::ClusterCatalog;
use crate::crawl::plan::{Action, CrawlPlan};
use crate::crawl::run::crawl;
use crate::etl::run::{self, Resources, RunOutcome, RunRequest};
use crate::etl::settle::{DecideError, Decider, clean_up, finish_commit};
use crate::etl::stream::{Progress, StreamRequest, run_stream};
use crate::etl::stream_metrics::{self, StreamMetrics};
use crate::etl::workers::Executors;
use crate::storage::{Credentials, Location, SecretsDir, StoreResolver};

/// The most characters of an error a RunResult keeps (the CRD's `maxLength` of `spec.error`).
const MAX_ERROR_CHARS: usize = 32768;

/// The most bytes of an error the termination message keeps: the kubelet keeps 4 KiB of the
/// file, and the outcome and a reporting failure need room too.
const TERMINATION_ERROR_BYTES: usize = 3 * 1024;

/// One attempt, as the operator's Kubernetes Job describes it: the `kglue attempt` command line
/// (`kglue_crds::protocol::attempt`, the one definition the operator renders and this parses).
pub type Attempt = AttemptArgs;

/// What stopped an attempt before its work began; the message goes into the Failed result.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The Job or Crawler is gone.
    #[error("{kind} {name} does not exist in namespace {namespace}")]
    NotFound {
        /// Job or Crawler.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The namespace.
        namespace: String,
    },
    /// The Job or Crawler could not be read.
    #[error("reading {kind} {name}: {source}")]
    Read {
        /// Job or Crawler.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The cause.
        source: Box<kube::Error>,
    },
    /// `--arguments` is not a JSON object of strings.
    #[error("the run's arguments are not a JSON object of strings: {0}")]
    Arguments(String),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] crate::cluster::CatalogReadError),
}

/// The RunResult could not be created.
#[derive(Debug, thiserror::Error)]
#[error("creating RunResult {name} in namespace {namespace}: {source}")]
pub struct ReportError {
    /// The RunResult's name.
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// The cause.
    pub source: Box<kube::Error>,
}

/// How an attempt ended, and what is left to report.
#[derive(Debug)]
pub enum AttemptEnd {
    /// A crawl, or a Job run that failed before deciding to commit: report this RunResult.
    Report(RunResultSpec),
    /// A Job run that decided to commit and finished: its Committing RunResult (created at the
    /// decision) is the report; the exit code 0 says the commit is complete.
    Committed(RunResultSpec),
    /// A Job run that decided to commit but could not finish; a settle attempt will.
    Unfinished(RunResultSpec),
    /// A settle attempt: what it did, or why it could not.
    Settled(Result<String, String>),
    /// A streaming attempt (its Streaming RunResult made when it started): stopped on request,
    /// with what it did, or failed.
    Streamed(Result<String, String>),
}

/// Runs the attempt. Never fails: an error becomes a Failed report (or, after the decision to
/// commit, an unfinished commit for a settle attempt to finish).
pub async fn run_attempt(client: &Client, attempt: &Attempt) -> AttemptEnd {
    let started = Instant::now();
    let end = match (attempt.command.kind, attempt.command.settle) {
        (RunOwnerKind::Job, Some(mode)) => return AttemptEnd::Settled(settle_attempt(client, attempt, mode).await),
        (RunOwnerKind::Job, None) => match job_attempt(client, attempt).await {
            Ok(end) => end,
            Err(streaming) => return AttemptEnd::Streamed(stream_attempt(client, attempt, *streaming).await),
        },
        (RunOwnerKind::Crawler, _) => AttemptEnd::Report(crawl_attempt(client, attempt).await),
    };
    // The attempt's wall time inside the runner, reading the catalog included (the ETL result's
    // own figure starts at planning).
    let stamp = |mut spec: RunResultSpec| {
        spec.duration_seconds = started.elapsed().as_secs_f64();
        spec.finished_at = Some(Time(Timestamp::now()));
        spec
    };
    match end {
        AttemptEnd::Report(spec) => AttemptEnd::Report(stamp(spec)),
        AttemptEnd::Committed(spec) => AttemptEnd::Committed(stamp(spec)),
        AttemptEnd::Unfinished(spec) => AttemptEnd::Unfinished(stamp(spec)),
        settled => settled,
    }
}

async fn get<K>(client: &Client, attempt: &Attempt, kind: &'static str) -> Result<K, AttemptError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), &attempt.pod.namespace)
        .get_opt(&attempt.command.name)
        .await
        .map_err(|source| AttemptError::Read {
            kind,
            name: attempt.command.name.clone(),
            source: Box::new(source),
        })?
        .ok_or_else(|| AttemptError::NotFound {
            kind,
            name: attempt.command.name.clone(),
            namespace: attempt.pod.namespace.clone(),
        })
}

/// Parses `--arguments`.
pub fn parse_arguments(attempt: &Attempt) -> Result<BTreeMap<String, String>, AttemptError> {
    attempt.command.arguments().map_err(AttemptError::Arguments)
}

/// What a Job attempt reads before it works: its Job, arguments and the namespace's catalog.
async fn read_job(client: &Client, attempt: &Attempt) -> Result<(Job, ClusterCatalog), AttemptError> {
    let job: Job = get(client, attempt, "Job").await?;
    let catalog = ClusterCatalog::read(
        client.clone(),
        &attempt.pod.namespace,
        RunOwnerKind::Job,
        &attempt.command.name,
    )
    .await?;
    Ok((job, catalog))
}

fn resolver(attempt: &Attempt, catalog: &ClusterCatalog) -> StoreResolver {
    // In the cluster a run reaches local folders only where the operator allows it: the pod's
    // own files (its token, mounted Secrets) are no data source.
    let local = attempt
        .command
        .allow_local_paths
        .iter()
        .filter_map(|path| Location::from_directory(path).ok())
        .collect();
    StoreResolver::new(
        catalog.view().connections().clone(),
        Credentials::from_process(SecretsDir(attempt.command.secrets_dir.clone())),
    )
    .with_local_paths(local)
}

/// What a Job attempt has read before it works.
struct Prepared {
    job: Job,
    arguments: BTreeMap<String, String>,
    catalog: ClusterCatalog,
}

/// A batch Job's attempt; a streaming Job's is handed back (`Err`) to [`stream_attempt`].
async fn job_attempt(client: &Client, attempt: &Attempt) -> Result<AttemptEnd, Box<Prepared>> {
    let prepared = async {
        let (job, catalog) = read_job(client, attempt).await?;
        let arguments = parse_arguments(attempt)?;
        Ok::<_, AttemptError>(Prepared {
            job,
            arguments,
            catalog,
        })
    }
    .await;
    let Prepared {
        job,
        arguments,
        mut catalog,
    } = match prepared {
        Ok(prepared) if prepared.job.spec.streaming.is_some() => return Err(Box::new(prepared)),
        Ok(prepared) => prepared,
        Err(error) => return Ok(AttemptEnd::Report(failed(attempt, error.to_string()))),
    };
    // The committed bookmark is the operator's, in status; a run with bookmarks disabled reads
    // everything whatever is there.
    let bookmark = match job.spec.bookmark.option {
        BookmarkOption::Disable => None,
        BookmarkOption::Enable | BookmarkOption::Pause => job.status.as_ref().and_then(|s| s.bookmark.clone()),
    };
    let resolver = resolver(attempt, &catalog);
    let (spill_dir, resources) = resources(attempt, &job);
    let request = RunRequest {
        job_name: attempt.command.name.clone(),
        spec: job.spec.clone(),
        run_id: attempt.command.run_id.clone(),
        attempt: attempt.command.attempt,
        arguments,
        bookmark,
        resources,
        stream: None,
    };
    let mut decider = ReportDecider {
        client: client.clone(),
        attempt: attempt.clone(),
    };
    let result = run::run(request, &mut catalog, &resolver, &mut decider).await;
    let _ = std::fs::remove_dir_all(&spill_dir);
    let spec = job_report(attempt, &result);
    Ok(match result.outcome {
        RunOutcome::Succeeded => AttemptEnd::Committed(spec),
        RunOutcome::Failed => AttemptEnd::Report(spec),
        RunOutcome::Unfinished => AttemptEnd::Unfinished(spec),
    })
}

/// The attempt's spill folder and what its work may use. The folder is the attempt's own under
/// the spill root, so that removing it afterwards never touches the mount point (an emptyDir) or
/// another process's files.
fn resources(attempt: &Attempt, job: &Job) -> (std::path::PathBuf, Resources) {
    let spill_dir = attempt
        .command
        .spill_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("kglue-{}-{}", attempt.command.run_id, attempt.command.attempt));
    let worker = attempt.command.resources().unwrap_or_else(|| {
        attempt
            .command
            .worker_size
            .unwrap_or(job.spec.worker_size)
            .default_resources()
    });
    let resources = Resources::for_resources(worker, spill_dir.clone());
    // A distributed attempt: its executor pods are of the same size, one task slot per CPU.
    let resources = match (attempt.command.workers, attempt.command.scheduler_port) {
        (Some(workers), Some(scheduler_port)) if workers > 1 => resources.with_workers(
            workers as usize,
            Executors::Pods {
                scheduler_port,
                slots: worker.cpu.max(1) as usize,
            },
        ),
        _ => resources,
    };
    (spill_dir, resources)
}

/// The field manager of a streaming attempt's progress in its RunResult's status.
pub const STREAM_MANAGER: &str = "kglue-stream";

/// A streaming Job's attempt (docs/streaming.md, "In a cluster"): its RunResult, outcome
/// Streaming, first, so the operator knows where to read progress; then batches until SIGTERM
/// (a stop or a roll: the operator suspends the attempt's Kubernetes Job) ends the stream after
/// the batch in progress, or an error does. Progress goes to the RunResult's status as it
/// changes. Returns what it did (exit 0) or the error (exit 1, in the termination message).
async fn stream_attempt(client: &Client, attempt: &Attempt, prepared: Prepared) -> Result<String, String> {
    let Prepared {
        job,
        arguments,
        mut catalog,
    } = prepared;
    let command = &attempt.command;
    let metrics = Arc::new(StreamMetrics::new(&command.name));
    if let Some(address) = &command.metrics_address {
        let bound = stream_metrics::start(address, metrics.clone()).await?;
        eprintln!("kglue: serving the stream's metrics on http://{bound}/metrics");
    }
    let object = result_object(attempt, base(attempt, AttemptOutcome::Streaming, None));
    report(client, &object).await.map_err(|e| e.to_string())?;

    let progress = Arc::new(Mutex::new(Progress::new(&command.run_id, command.attempt)));
    let snapshot = |progress: &Mutex<Progress>| progress.lock().map(|p| p.current().clone()).unwrap_or_default();
    let (publish, published) = tokio::sync::watch::channel(snapshot(&progress));
    let reporter = tokio::spawn(report_progress(
        Api::namespaced(client.clone(), &attempt.pod.namespace),
        attempt.pod.kubernetes_job.clone(),
        published,
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    {
        let (progress, publish) = (progress.clone(), publish.clone());
        tokio::spawn(async move {
            crate::etl::stream::terminated().await;
            eprintln!("kglue: stopping after the batch in progress");
            if let Ok(mut p) = progress.lock() {
                p.stopping();
                publish.send_replace(p.current().clone());
            }
            let _ = stop.send(true);
        });
    }
    let update = |change: &dyn Fn(&mut Progress)| {
        if let Ok(mut p) = progress.lock() {
            change(&mut p);
            publish.send_replace(p.current().clone());
        }
    };
    let resolver = resolver(attempt, &catalog);
    let (spill_dir, resources) = resources(attempt, &job);
    let request = StreamRequest {
        job_name: command.name.clone(),
        spec: job.spec.clone(),
        arguments,
        resources,
        until_caught_up: false,
        max_batches: None,
        stop: stopped,
    };
    let ended = run_stream(
        request,
        &mut catalog,
        &resolver,
        |batch| {
            println!(
                "batch {} ({}): {} records, {} bad; lag {}; {:.2}s",
                batch.batch,
                batch.run_id,
                batch.records,
                batch.bad_records,
                batch.lag.values().sum::<i64>(),
                batch.seconds
            );
            metrics.batch(batch);
            update(&|p| p.batch(batch));
        },
        |problem| {
            match problem {
                Some(problem) => eprintln!("kglue: {problem}; retrying"),
                None => eprintln!("kglue: Kafka answers again"),
            }
            metrics.problem(problem);
            update(&|p| p.problem(problem));
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&spill_dir);
    let outcome = match &ended {
        Ok(summary) => Ok(format!(
            "stream stopped after {} batch(es), {} record(s)",
            summary.batches, summary.records
        )),
        Err(error) => Err(error.to_string()),
    };
    update(&|p| p.ended(outcome.as_ref().map(|_| ()).map_err(String::as_str)));
    // The last progress written before the exit, within a bound: the exit code says the rest.
    drop(publish);
    let _ = tokio::time::timeout(Duration::from_secs(10), reporter).await;
    outcome.map_err(|error| cut_bytes(&error, TERMINATION_ERROR_BYTES).to_string())
}

/// Writes each new progress into the RunResult's status (server-side apply of
/// `status.streaming` only), skipping those superseded before their turn. A failed write is
/// logged and the next progress tried: the status is for people, the checkpoint is the truth.
async fn report_progress(
    api: Api<RunResult>,
    name: String,
    mut published: tokio::sync::watch::Receiver<kglue_crds::job::StreamProgress>,
) {
    let params = PatchParams::apply(STREAM_MANAGER).force();
    loop {
        let progress = published.borrow_and_update().clone();
        let patch = serde_json::json!({
            "apiVersion": <RunResult as kube::Resource>::api_version(&()),
            "kind": <RunResult as kube::Resource>::kind(&()),
            "status": {"streaming": progress},
        });
        if let Err(error) = api.patch_status(&name, &params, &Patch::Apply(&patch)).await {
            eprintln!("kglue: writing the stream's progress into RunResult {name}: {error}");
        }
        if published.changed().await.is_err() {
            // The stream ended: write what it said last, if that is not written yet.
            if published.has_changed().unwrap_or(false) {
                continue;
            }
            return;
        }
    }
}

/// Records a Job attempt's decision to commit as its RunResult, outcome Committing, with what
/// finishing takes: the operator reads it, and a settle attempt finishes from it.
pub struct ReportDecider {
    client: Client,
    attempt: Attempt,
}

#[async_trait::async_trait]
impl Decider for ReportDecider {
    async fn decide(&mut self, result: &run::RunResult, intent: &CommitIntent) -> Result<(), DecideError> {
        let mut spec = job_report(&self.attempt, result);
        spec.outcome = AttemptOutcome::Committing;
        spec.finished_at = Some(Time(Timestamp::now()));
        if let Some(job) = spec.job.as_mut() {
            job.commit = Some(intent.clone());
        }
        let object = result_object(&self.attempt, spec);
        let error = match report(&self.client, &object).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        // A refusal (4xx) wrote nothing. Anything else may have been written with its answer
        // lost: read it back to know.
        let refused =
            matches!(error.source.as_ref(), kube::Error::Api(status) if status.code < 500 && status.code != 429);
        if refused {
            return Err(DecideError::refused(error));
        }
        let api: Api<RunResult> = Api::namespaced(self.client.clone(), &self.attempt.pod.namespace);
        match api.get_opt(&self.attempt.pod.kubernetes_job).await {
            Ok(Some(found)) if found.spec.outcome == AttemptOutcome::Committing => Ok(()),
            Ok(_) => Err(DecideError::refused(error)),
            Err(read) => Err(DecideError {
                message: format!("{error}; reading it back: {read}"),
                maybe_recorded: true,
            }),
        }
    }
}

/// A settle attempt (docs/runs.md, "Exactly once"): finish the commit attempt `--attempt`
/// decided, from its Committing RunResult, or remove what an attempt that never decided left.
/// Returns what it did, or why it could not.
async fn settle_attempt(client: &Client, attempt: &Attempt, mode: SettleMode) -> Result<String, String> {
    let command = &attempt.command;
    let (job, mut catalog) = read_job(client, attempt).await.map_err(|e| e.to_string())?;
    let resolver = resolver(attempt, &catalog);
    let run_id = &command.run_id;
    match mode {
        SettleMode::Commit => {
            let name = attempt_job_name(&command.name, run_id, command.attempt);
            let api: Api<RunResult> = Api::namespaced(client.clone(), &attempt.pod.namespace);
            let decided = api
                .get_opt(&name)
                .await
                .map_err(|e| format!("reading RunResult {name}: {e}"))?
                .ok_or_else(|| format!("RunResult {name} does not exist: there is no decided commit to finish"))?;
            let intent = decided
                .spec
                .job
                .as_ref()
                .and_then(|job| job.commit.as_ref())
                .filter(|_| decided.spec.outcome == AttemptOutcome::Committing)
                .ok_or_else(|| {
                    format!(
                        "RunResult {name} is not a decided commit (outcome {:?})",
                        decided.spec.outcome
                    )
                })?;
            finish_commit(intent, run_id, &mut catalog, &resolver)
                .await
                .map_err(|e| format!("finishing the commit of run {run_id} attempt {}: {e}", command.attempt))?;
            Ok(format!(
                "finished the commit of run {run_id} attempt {}: {} sink(s), {} table(s)",
                command.attempt,
                intent.sinks.len(),
                intent.tables.len()
            ))
        }
        SettleMode::Cleanup => {
            let sinks: Vec<CommitSink> = job
                .spec
                .sinks
                .iter()
                .filter_map(|sink| {
                    let storage =
                        sink.storage_in(|t| catalog.view().table(&t.database, &t.table).map(|t| &t.spec.storage))?;
                    Some(CommitSink::of(sink, storage))
                })
                .collect();
            let cleaned = clean_up(&sinks, run_id, &resolver)
                .await
                .map_err(|e| format!("removing what run {run_id} attempt {} left: {e}", command.attempt))?;
            Ok(format!(
                "nothing of run {run_id} attempt {} was committed; removed {} staged object(s) and {} incomplete upload(s)",
                command.attempt, cleaned.staging_objects, cleaned.uploads_aborted
            ))
        }
    }
}

/// The report of a Job attempt from the ETL run's result.
pub fn job_report(attempt: &Attempt, result: &run::RunResult) -> RunResultSpec {
    RunResultSpec {
        owner_kind: RunOwnerKind::Job,
        owner_name: attempt.command.name.clone(),
        run_id: attempt.command.run_id.clone(),
        attempt: attempt.command.attempt,
        outcome: match result.outcome {
            RunOutcome::Succeeded => AttemptOutcome::Succeeded,
            RunOutcome::Failed => AttemptOutcome::Failed,
            RunOutcome::Unfinished => AttemptOutcome::Committing,
        },
        error: result.error.as_deref().map(cut_error),
        finished_at: None,
        duration_seconds: result.duration_seconds,
        job: Some(JobAttemptReport {
            metrics: result.metrics.clone(),
            started_from: result.started_from.clone(),
            next_bookmark: result.next_bookmark.clone(),
            run_properties: result.run_properties.clone(),
            commit: None,
        }),
        crawl: None,
        pod: None,
        delete_tables: Vec::new(),
    }
}

async fn crawl_attempt(client: &Client, attempt: &Attempt) -> RunResultSpec {
    let crawler: Crawler = match get(client, attempt, "Crawler").await {
        Ok(crawler) => crawler,
        Err(error) => return failed(attempt, error.to_string()),
    };
    let namespace = &attempt.pod.namespace;
    let mut catalog =
        match ClusterCatalog::read(client.clone(), namespace, RunOwnerKind::Crawler, &crawler.name_any()).await {
            // The runner Role cannot delete Tables: the report asks the operator to.
            Ok(catalog) => catalog.deferring_deletes(),
            Err(error) => return failed(attempt, error.to_string()),
        };
    let credentials = Credentials::from_process(SecretsDir(attempt.command.secrets_dir.clone()));
    match crawl(&crawler, &mut catalog, credentials, false).await {
        Ok(plan) => RunResultSpec {
            crawl: Some(crawl_metrics(&plan)),
            delete_tables: catalog.deferred_deletes().to_vec(),
            ..base(attempt, AttemptOutcome::Succeeded, None)
        },
        Err(error) => failed(attempt, error.to_string()),
    }
}

/// A crawl's figures, counted as `kglue crawl` prints them: tables by what happened to them,
/// partitions added, objects listed, read and skipped.
pub fn crawl_metrics(plan: &CrawlPlan) -> CrawlMetrics {
    let mut metrics = CrawlMetrics {
        objects_listed: plan.report.objects_listed as i64,
        objects_read: plan.report.objects_read as i64,
        objects_skipped: plan.report.skipped.len() as i64,
        ..CrawlMetrics::default()
    };
    for planned in &plan.tables {
        match planned.action {
            Action::Create => metrics.tables_created += 1,
            Action::Update(_) => metrics.tables_updated += 1,
            // Logged, drifted and conflicting tables were left as they are.
            Action::Unchanged | Action::Logged(_) | Action::Drift(_) | Action::Conflict(_) => {
                metrics.tables_unchanged += 1
            }
            Action::Deprecate | Action::Delete => metrics.tables_deprecated += 1,
        }
        if matches!(planned.action, Action::Create | Action::Update(_) | Action::Unchanged) {
            metrics.partitions_added += planned.partitions_added as i64;
        }
    }
    metrics
}

fn base(attempt: &Attempt, outcome: AttemptOutcome, error: Option<String>) -> RunResultSpec {
    RunResultSpec {
        owner_kind: attempt.command.kind,
        owner_name: attempt.command.name.clone(),
        run_id: attempt.command.run_id.clone(),
        attempt: attempt.command.attempt,
        outcome,
        error,
        finished_at: None,
        duration_seconds: 0.0,
        job: None,
        crawl: None,
        pod: None,
        delete_tables: Vec::new(),
    }
}

fn failed(attempt: &Attempt, error: String) -> RunResultSpec {
    base(attempt, AttemptOutcome::Failed, Some(cut_error(&error)))
}

/// An error cut to what the RunResult schema accepts, saying it was cut.
fn cut_error(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_CHARS - 40) {
        Some((at, _)) => format!("{} … (cut: {} bytes in all)", &error[..at], error.len()),
        None => error.to_string(),
    }
}

/// The RunResult object: named after the attempt's Kubernetes Job and owned by it, so it goes
/// with that Job and the operator can check that it belongs to the attempt. Not a controller
/// reference: the Job controller must not think it owns the result.
pub fn result_object(attempt: &Attempt, mut spec: RunResultSpec) -> RunResult {
    spec.pod = attempt.pod.reporting_pod();
    let labels = run_labels(attempt.command.kind, &attempt.command.name, &attempt.command.run_id);
    RunResult {
        metadata: ObjectMeta {
            name: Some(attempt.pod.kubernetes_job.clone()),
            namespace: Some(attempt.pod.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: attempt.pod.kubernetes_job.clone(),
                uid: attempt.pod.kubernetes_job_uid.clone(),
                controller: Some(false),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// Creates the RunResult. One that already exists is this attempt's (its name is the attempt's
/// Kubernetes Job, whose pod runs once: `backoffLimit: 0`), from a create whose answer was lost,
/// so it counts as reported. Errors other than a refusal are retried a few times: without a
/// report the operator can only record the attempt as Failed.
pub async fn report(client: &Client, result: &RunResult) -> Result<(), ReportError> {
    let namespace = result.metadata.namespace.clone().unwrap_or_default();
    let name = result.metadata.name.clone().unwrap_or_default();
    let api: Api<RunResult> = Api::namespaced(client.clone(), &namespace);
    let mut delay = Duration::from_millis(500);
    let mut tries = 0;
    loop {
        tries += 1;
        match api.create(&PostParams::default(), result).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.is_already_exists() => return Ok(()),
            Err(kube::Error::Api(status)) if status.code < 500 && status.code != 429 => {
                return Err(ReportError {
                    name,
                    namespace,
                    source: Box::new(kube::Error::Api(status)),
                });
            }
            Err(source) if tries >= 4 => {
                return Err(ReportError {
                    name,
                    namespace,
                    source: Box::new(source),
                });
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

/// The one-line summary for the termination-message file, which the operator reads when there
/// is no RunResult: the outcome, the start of the error, and why reporting failed if it did.
pub fn termination_message(spec: &RunResultSpec, report_error: Option<&str>) -> String {
    let mut message = match spec.outcome {
        AttemptOutcome::Succeeded => "Succeeded".to_string(),
        AttemptOutcome::Failed => "Failed".to_string(),
        AttemptOutcome::Committing => "Committing".to_string(),
        AttemptOutcome::Streaming => "Streaming".to_string(),
    };
    if let Some(error) = report_error {
        message.push_str(&format!(" (not reported: {})", cut_bytes(error, 512)));
    }
    if let Some(error) = &spec.error {
        message.push_str(": ");
        message.push_str(cut_bytes(error, TERMINATION_ERROR_BYTES));
    }
    // One line: the kubelet's file is read as text, and a newline would split the summary.
    message.replace('\n', " ")
}

/// The longest prefix of `text` of at most `bytes` bytes that ends on a character boundary.
fn cut_bytes(text: &str, bytes: usize) -> &str {
    if text.len() <= bytes {
        return text;
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use kglue_crds::crawler::CrawlMetrics;
    use kglue_crds::job::{JobRunMetrics, SinkMetrics};
    use std::path::PathBuf;

    use kglue_crds::protocol::attempt::{AttemptCommand, AttemptPod};
    use kglue_crds::{Table, TableSpec};
    use serde_json::json;

    use super::*;
    use crate::crawl::plan::{CrawlReport, PlannedTable};

    fn attempt(kind: RunOwnerKind) -> Attempt {
        Attempt {
            command: AttemptCommand {
                kind,
                name: "clean-orders".into(),
                run_id: "jr-3fa29c01d2".into(),
                attempt: 1,
                arguments: None,
                worker_size: None,
                cpus: None,
                memory_gib: None,
                secrets_dir: PathBuf::from("/var/run/secrets/kglue"),
                spill_dir: None,
                termination_log: PathBuf::from("/dev/termination-log"),
                settle: None,
                allow_local_paths: Vec::new(),
                metrics_address: None,
                workers: None,
                scheduler_port: None,
            },
            pod: AttemptPod {
                namespace: "sales".into(),
                kubernetes_job: "clean-orders-jr-3fa29c01d2-1".into(),
                kubernetes_job_uid: "0b6f0c4e-1111-2222-3333-444455556666".into(),
                pod_name: Some("clean-orders-jr-3fa29c01d2-1-x7k2q".into()),
                pod_uid: Some("7d1e0c4e-1111-2222-3333-444455556666".into()),
            },
        }
    }

    #[test]
    fn the_result_is_named_after_and_owned_by_the_attempts_job() {
        let attempt = attempt(RunOwnerKind::Job);
        let object = result_object(&attempt, failed(&attempt, "boom".into()));
        let value = serde_json::to_value(&object).expect("serializes");
        assert_eq!(value["apiVersion"], "kglue.dev/v1alpha1");
        assert_eq!(value["kind"], "RunResult");
        assert_eq!(value["metadata"]["name"], "clean-orders-jr-3fa29c01d2-1");
        assert_eq!(value["metadata"]["namespace"], "sales");
        assert_eq!(
            value["metadata"]["ownerReferences"],
            json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "clean-orders-jr-3fa29c01d2-1",
                    "uid": "0b6f0c4e-1111-2222-3333-444455556666", "controller": false}])
        );
        assert_eq!(
            value["metadata"]["labels"],
            json!({"kglue.dev/run-id": "jr-3fa29c01d2", "kglue.dev/owner-name": "clean-orders",
                   "kglue.dev/owner-kind": "Job"})
        );
        assert_eq!(value["spec"]["outcome"], "Failed");
        assert_eq!(value["spec"]["error"], "boom");
        assert_eq!(value["spec"]["attempt"], 1);
        assert_eq!(value["spec"]["ownerKind"], "Job");
        assert_eq!(
            value["spec"]["pod"],
            json!({"name": "clean-orders-jr-3fa29c01d2-1-x7k2q", "uid": "7d1e0c4e-1111-2222-3333-444455556666"})
        );
    }

    #[test]
    fn a_job_report_carries_metrics_and_bookmarks() {
        let result = run::RunResult {
            job: "clean-orders".into(),
            run_id: "jr-3fa29c01d2".into(),
            attempt: 1,
            outcome: RunOutcome::Succeeded,
            error: None,
            arguments: BTreeMap::new(),
            metrics: JobRunMetrics {
                sinks: BTreeMap::from([(
                    "out".to_string(),
                    SinkMetrics {
                        rows: 3,
                        files: 1,
                        bytes: 10,
                        partitions_added: 0,
                    },
                )]),
                ..JobRunMetrics::default()
            },
            bookmark_option: BookmarkOption::Enable,
            started_from: None,
            next_bookmark: Some(Default::default()),
            run_properties: BTreeMap::from([("through".to_string(), "2024-05-01".to_string())]),
            tables: Vec::new(),
            duration_seconds: 1.5,
        };
        let spec = job_report(&attempt(RunOwnerKind::Job), &result);
        assert_eq!(spec.outcome, AttemptOutcome::Succeeded);
        let job = spec.job.expect("job report");
        assert_eq!(job.metrics.sinks["out"].rows, 3);
        assert!(job.next_bookmark.is_some());
        assert_eq!(job.run_properties["through"], "2024-05-01");
        assert!(spec.crawl.is_none());
    }

    #[test]
    fn parse_arguments_wants_an_object_of_strings() {
        let with = |arguments: Option<&str>| {
            let mut attempt = attempt(RunOwnerKind::Job);
            attempt.command.arguments = arguments.map(str::to_string);
            parse_arguments(&attempt)
        };
        assert_eq!(
            with(Some(r#"{"day":"2024-05-01"}"#)).expect("valid"),
            BTreeMap::from([("day".to_string(), "2024-05-01".to_string())])
        );
        assert!(with(None).expect("none").is_empty());
        let error = with(Some(r#"{"day":1}"#)).expect_err("a number").to_string();
        assert!(
            error.starts_with("the run's arguments are not a JSON object of strings"),
            "{error}"
        );
    }

    #[test]
    fn the_termination_message_is_one_short_line() {
        let attempt = attempt(RunOwnerKind::Job);
        let long = format!("line one\nline two {}", "é".repeat(4000));
        let spec = failed(&attempt, long);
        let message = termination_message(&spec, Some("forbidden"));
        assert!(
            message.starts_with("Failed (not reported: forbidden): line one line two é"),
            "{message}"
        );
        assert!(!message.contains('\n'));
        assert!(message.len() <= 4096 - 512, "{} bytes", message.len());
        let ok = base(&attempt, AttemptOutcome::Succeeded, None);
        assert_eq!(termination_message(&ok, None), "Succeeded");
    }

    #[test]
    fn errors_are_cut_to_the_schema_limit() {
        let error = "x".repeat(MAX_ERROR_CHARS * 2);
        let cut = cut_error(&error);
        assert!(cut.chars().count() <= MAX_ERROR_CHARS, "{}", cut.chars().count());
        assert!(cut.ends_with(&format!("(cut: {} bytes in all)", error.len())));
        assert_eq!(cut_error("short"), "short");
    }

    #[test]
    fn crawl_metrics_count_tables_by_what_happened() {
        let table = |name: &str| {
            Table::new(
                name,
                TableSpec {
                    database_name: "raw".into(),
                    table_name: name.into(),
                    description: None,
                    storage: serde_json::from_value(json!({"location": "s3://b/x/", "format": "Csv"}))
                        .expect("storage"),
                    columns: Vec::new(),
                    partition_keys: Vec::new(),
                    schema_locked: false,
                    parameters: BTreeMap::new(),
                },
            )
        };
        let planned = |name: &str, action: Action, added: usize| PlannedTable {
            table: table(name),
            action,
            partitions_added: added,
            partitions: Default::default(),
        };
        let plan = CrawlPlan {
            tables: vec![
                planned("a", Action::Create, 3),
                planned("b", Action::Update(vec!["column x added".into()]), 2),
                planned("c", Action::Unchanged, 1),
                planned("d", Action::Drift("bad".into()), 5),
                planned("e", Action::Deprecate, 0),
            ],
            report: CrawlReport {
                objects_listed: 10,
                objects_read: 4,
                skipped: vec![("s3://b/x/_SUCCESS".into(), "marker".into())],
                ..CrawlReport::default()
            },
            ..CrawlPlan::default()
        };
        assert_eq!(
            crawl_metrics(&plan),
            CrawlMetrics {
                tables_created: 1,
                tables_updated: 1,
                tables_unchanged: 2,
                tables_deprecated: 1,
                partitions_added: 6,
                objects_listed: 10,
                objects_read: 4,
                objects_skipped: 1,
            }
        );
    }
}
