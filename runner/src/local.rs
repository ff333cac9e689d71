//! The local commands' work, on a laptop or in CI, with a directory of manifests as the catalog
//! (brief §3, one manifest, two places): `kglue crawl --catalog DIR` ([`crawl_dir`]), `kglue run`
//! ([`run_job`]: the bookmark file, the spill folder, planning or explaining, the run) and the
//! bookmark file's show, reset and rewind ([`change_bookmark_file`]). Nothing here prints: the CLI
//! renders what these return.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::jiff::Timestamp;
use kglue_crds::{Crawler, Job};
use kube::ResourceExt;

use crate::catalog::{CatalogError, DirCatalog};
use crate::crawl::plan::CrawlPlan;
use crate::crawl::run::{CrawlRunError, crawl};
use crate::etl::bookmark::{BookmarkFile, BookmarkFileError};
use crate::etl::run::{self, Resources, RunOutcome, RunRequest, RunResult, plan_run};
use crate::etl::settle::{DirLedger, finish_commit};
use crate::etl::workers::Executors;
use crate::manifest::{ManifestError, read_one};
use crate::storage::{Credentials, SecretsDir, StoreResolver};

/// What can stop a local command.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The manifest given with `-f` is unreadable or not one object of its kind.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The catalog directory could not be read or written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The crawl failed.
    #[error(transparent)]
    Crawl(#[from] CrawlRunError),
    /// The bookmark file could not be read or written.
    #[error(transparent)]
    Bookmarks(#[from] BookmarkFileError),
    /// The record of a decided commit could not be read or removed.
    #[error("the record of a decided commit: {0}")]
    Ledger(String),
    /// A streaming job stopped on an error.
    #[error(transparent)]
    Stream(#[from] crate::etl::stream::StreamError),
    /// `kglue bookmark rewind --bookmarks FILE` without `--to-run`.
    #[error("rewinding a bookmark file needs --to-run ID (`kglue bookmark show --bookmarks FILE` lists the runs)")]
    RewindNeedsRun,
    /// `--workers N`: this binary's path, which the executors are started from, is unknown.
    #[error("finding the kglue binary to start the executors with: {0}")]
    ExecutorProgram(std::io::Error),
}

/// Reads the single Crawler of a manifest file.
pub fn read_crawler(path: &Path) -> Result<Crawler, ManifestError> {
    read_one(path)
}

/// Reads the single Job of a manifest file.
pub fn read_job(path: &Path) -> Result<Job, ManifestError> {
    read_one(path)
}

/// Crawls with `crawler` against the catalog in `catalog_dir`; with `dry_run`, only plans. New and
/// changed Tables are written there, one object per file.
pub async fn crawl_dir(
    crawler: &Crawler,
    catalog_dir: &Path,
    credentials: Credentials,
    dry_run: bool,
) -> Result<CrawlPlan, LocalError> {
    let mut catalog = DirCatalog::load(catalog_dir)?;
    Ok(crawl(crawler, &mut catalog, credentials, dry_run).await?)
}

/// A local run of a Job manifest (`kglue run`).
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// The Job.
    pub job: Job,
    /// The catalog directory.
    pub catalog: PathBuf,
    /// The run's arguments.
    pub arguments: BTreeMap<String, String>,
    /// The file that keeps the bookmark between runs; `None`: no bookmark is read or saved.
    pub bookmarks: Option<PathBuf>,
    /// The run id; `None`: a new one from the clock ([`new_run_id`]).
    pub run_id: Option<String>,
    /// The attempt recorded in the result.
    pub attempt: i32,
    /// Where the engine spills; `None`: a folder of this run's in the system's temporary
    /// directory, removed afterwards.
    pub spill_dir: Option<PathBuf>,
    /// Where the Secrets that Connections refer to are.
    pub secrets_dir: PathBuf,
    /// Executor processes (`kglue executor`, see `etl::workers`) to spread a batch run's plans
    /// over; 1 runs them in this process alone, as a pod does.
    pub workers: usize,
}

/// What a local run produced.
#[derive(Debug)]
pub enum LocalRunOutput {
    /// `--explain`: the sources selected and each sink's physical plan; nothing was written.
    Explained(String),
    /// The run's result (Succeeded or Failed); a succeeded run's bookmark is saved to the file.
    Ran(Box<RunResult>),
}

/// A local run's resources: its worker size's, spread over `run.workers` executor processes of
/// this binary (`kglue executor`) when there are several.
fn resources(run: &LocalRun, spill_dir: &std::path::Path) -> Result<Resources, LocalError> {
    let resources = Resources::for_worker(run.job.spec.worker_size, spill_dir.to_path_buf());
    if run.workers <= 1 {
        return Ok(resources);
    }
    let executors = Executors::Processes {
        program: std::env::current_exe().map_err(LocalError::ExecutorProgram)?,
        secrets_dir: run.secrets_dir.clone(),
    };
    Ok(resources.with_workers(run.workers, executors))
}

/// Runs (or, with `explain`, plans and explains) a Job against a catalog directory, reading and
/// committing its bookmark in the bookmark file.
pub async fn run_job(run: LocalRun, explain: bool) -> Result<LocalRunOutput, LocalError> {
    let mut catalog = DirCatalog::load(&run.catalog)?;
    let resolver = StoreResolver::new(
        catalog.connections().clone(),
        Credentials::from_process(SecretsDir(run.secrets_dir.clone())),
    );
    let mut bookmark_file = match &run.bookmarks {
        Some(path) => BookmarkFile::load(path)?,
        None => BookmarkFile::default(),
    };
    let run_id = run.run_id.clone().unwrap_or_else(new_run_id);
    let spill_dir = run
        .spill_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("kglue-spill-{run_id}")));
    let request = RunRequest {
        job_name: run.job.name_any(),
        spec: run.job.spec.clone(),
        run_id: run_id.clone(),
        attempt: run.attempt,
        arguments: run.arguments.clone(),
        bookmark: bookmark_file.bookmark.clone(),
        resources: resources(&run, &spill_dir)?,
        stream: None,
    };
    if explain {
        let started = std::time::Instant::now();
        return Ok(match plan_run(request, &catalog, &resolver).await {
            Ok(planned) => LocalRunOutput::Explained(planned.explain()),
            Err((request, error)) => LocalRunOutput::Ran(Box::new(run::failed_before_planning(
                &request,
                &error,
                started.elapsed(),
            ))),
        });
    }
    // A run that decided to commit and was cut short is finished, not run again: its record in
    // the catalog directory says what it committed (docs/etl.md, "Sinks and idempotent writes").
    let mut ledger = DirLedger::new(&run.catalog);
    let result = match ledger.recorded(&run_id).map_err(LocalError::Ledger)? {
        Some(recorded) => match finish_commit(&recorded.intent, &run_id, &mut catalog, &resolver).await {
            Ok(()) => recorded.result,
            Err(error) => RunResult {
                outcome: RunOutcome::Unfinished,
                error: Some(format!("finishing the commit run {run_id} decided: {error}")),
                next_bookmark: None,
                ..recorded.result
            },
        },
        None => run::run(request, &mut catalog, &resolver, &mut ledger).await,
    };
    let _ = std::fs::remove_dir_all(&spill_dir);
    if result.outcome == RunOutcome::Succeeded {
        if let (Some(path), Some(next)) = (&run.bookmarks, &result.next_bookmark) {
            bookmark_file.commit(&run_id, result.started_from.clone(), next.clone(), Timestamp::now());
            bookmark_file.save(path)?;
        }
        ledger.remove(&run_id).map_err(LocalError::Ledger)?;
    }
    Ok(LocalRunOutput::Ran(Box::new(result)))
}

/// Runs a streaming Job (`spec.streaming`) against a catalog directory until it is stopped
/// (`stop` set to true: Ctrl-C), caught up (`until_caught_up`), `max_batches` are done, or it
/// fails. Its checkpoint, not a bookmark file, keeps its place (docs/streaming.md).
pub async fn run_stream(
    run: LocalRun,
    until_caught_up: bool,
    max_batches: Option<u64>,
    stop: tokio::sync::watch::Receiver<bool>,
    on_batch: impl FnMut(&crate::etl::stream::BatchReport),
    on_problem: impl FnMut(Option<&str>),
) -> Result<crate::etl::stream::StreamSummary, LocalError> {
    let mut catalog = DirCatalog::load(&run.catalog)?;
    let resolver = StoreResolver::new(
        catalog.connections().clone(),
        Credentials::from_process(SecretsDir(run.secrets_dir.clone())),
    );
    let spill_dir = run
        .spill_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("kglue-spill-{}", new_run_id())));
    let request = crate::etl::stream::StreamRequest {
        job_name: run.job.name_any(),
        spec: run.job.spec.clone(),
        arguments: run.arguments.clone(),
        resources: Resources::for_worker(run.job.spec.worker_size, spill_dir.clone()),
        until_caught_up,
        max_batches,
        stop,
    };
    let summary = crate::etl::stream::run_stream(request, &mut catalog, &resolver, on_batch, on_problem).await;
    let _ = std::fs::remove_dir_all(&spill_dir);
    Ok(summary?)
}

/// A run id from the clock: sortable, unique per microsecond, and made of the characters output
/// file names allow.
pub fn new_run_id() -> String {
    let now = Timestamp::now();
    format!("run-{}-{:06}", now.strftime("%Y%m%dt%H%M%S"), now.subsec_microsecond())
}

/// The run result for people.
pub fn render_run(result: &RunResult) -> String {
    let mut text = format!(
        "run {} of job {}: {:?} in {:.2}s\n",
        result.run_id, result.job, result.outcome, result.duration_seconds
    );
    for (name, source) in &result.metrics.sources {
        let _ = writeln!(
            text,
            "  source {name}: {} rows, {} objects, {} bytes read",
            source.rows, source.objects, source.bytes
        );
    }
    for (name, sink) in &result.metrics.sinks {
        let _ = writeln!(
            text,
            "  sink {name}: {} rows, {} files, {} bytes written, {} partitions added",
            sink.rows, sink.files, sink.bytes, sink.partitions_added
        );
    }
    for table in &result.tables {
        let _ = writeln!(
            text,
            "  table {}: {} ({} partitions added)",
            table.table, table.action, table.partitions_added
        );
    }
    if !result.metrics.phase_seconds.is_empty() {
        let phases: Vec<String> = result
            .metrics
            .phase_seconds
            .iter()
            .map(|(phase, seconds)| format!("{phase} {seconds:.2}s"))
            .collect();
        let _ = writeln!(text, "  phases: {}", phases.join(", "));
    }
    if let Some(workers) = &result.metrics.workers {
        let _ = writeln!(
            text,
            "  workers: {} executors, {} task slots each",
            workers.executors, workers.slots_per_executor
        );
        for stage in &workers.stages {
            let _ = write!(
                text,
                "  stage {} of sink {}: {} tasks, {} rows, {:.2}s of work",
                stage.stage, stage.sink, stage.tasks, stage.rows, stage.compute_seconds
            );
            if let Some(wall) = stage.wall_seconds {
                let _ = write!(text, " in {wall:.2}s");
            }
            if let Some(bytes) = stage.shuffle_bytes {
                let _ = write!(text, ", {bytes} bytes shuffled");
            }
            text.push('\n');
        }
    }
    if let Some(next) = &result.next_bookmark {
        for (name, bookmark) in &next.sources {
            let _ = writeln!(
                text,
                "  bookmark {name}: watermark {}, {} recent keys",
                bookmark.watermark.as_ref().map(|w| w.0.to_string()).unwrap_or_default(),
                bookmark.recent_keys.len()
            );
        }
    }
    if let Some(error) = &result.error {
        let _ = writeln!(text, "  error: {error}");
    }
    text
}

/// A change to a bookmark file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookmarkChange {
    /// None: show it.
    Show,
    /// Forget the bookmark.
    Reset,
    /// Move it back to where a run started (`None`: refused, a file needs the run).
    Rewind(Option<String>),
}

/// Applies `change` to the bookmark file at `path` (saved unless only shown) and returns it.
pub fn change_bookmark_file(path: &Path, change: BookmarkChange) -> Result<BookmarkFile, LocalError> {
    let mut file = BookmarkFile::load(path)?;
    match &change {
        BookmarkChange::Show => return Ok(file),
        BookmarkChange::Reset => file.reset(),
        BookmarkChange::Rewind(Some(run)) => file.rewind(run, path)?,
        BookmarkChange::Rewind(None) => return Err(LocalError::RewindNeedsRun),
    }
    file.save(path)?;
    Ok(file)
}
