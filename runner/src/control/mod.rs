//! The `kglue` commands that drive runs in the cluster: start, stop, list runs, reset or rewind a
//! bookmark, read a run's log. Each writes the annotations of docs/runs.md and reads status, so
//! anything the CLI does can be done with `kubectl annotate` and `kubectl get` too; the operator
//! alone acts on them. Workflows and Triggers have their commands in [`pipelines`].

pub mod pipelines;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kglue_crds::common::{RunRecord, RunState};
use kglue_crds::crawler::CrawlMetrics;
use kglue_crds::job::JobRunMetrics;
use kglue_crds::run_result::RunOwnerKind;
use kglue_crds::{Crawler, Job};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kube::{Client, Config};
use serde_json::{Value, json};

/// The prefix of a start request's annotation key.
pub const START_PREFIX: &str = "run.kglue.dev/";
/// The prefix of a stop request's annotation key.
pub const STOP_PREFIX: &str = "stop.kglue.dev/";
/// Reset a Job's bookmark.
pub const BOOKMARK_RESET: &str = "bookmark.kglue.dev/reset";
/// Rewind a Job's bookmark (value: a run id, or empty for the last committing run).
pub const BOOKMARK_REWIND: &str = "bookmark.kglue.dev/rewind";

/// The field manager of the CLI's annotation writes.
const FIELD_MANAGER: &str = "kglue-cli";

/// How long `kglue start` waits for the operator to record the request.
const RECORD_TIMEOUT: Duration = Duration::from_secs(30);

/// The widest message the runs table shows.
const MESSAGE_CHARS: usize = 60;

/// What can go wrong driving runs in the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The kubeconfig could not be read or the client not built.
    #[error("cannot reach the cluster: {0}")]
    Connect(String),
    /// A request id or run id does not fit an annotation key.
    #[error(
        "{what} {id:?} cannot be used: {reason} (1–63 letters, digits, '-', '_', '.', starting and ending with a letter or digit)"
    )]
    InvalidId {
        /// "request id" or "run id".
        what: &'static str,
        /// The id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// `--arg` given for a Crawler.
    #[error("a crawler takes no arguments; --arg is for jobs")]
    ArgumentsForCrawler,
    /// The Job or Crawler does not exist.
    #[error("{kind} {name} does not exist in namespace {namespace}")]
    NotFound {
        /// Job or Crawler.
        kind: &'static str,
        /// The name.
        name: String,
        /// The namespace.
        namespace: String,
    },
    /// The API server refused or failed a request.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The cause.
        source: Box<kube::Error>,
    },
    /// The operator did not record a start request in time.
    #[error(
        "the operator has not recorded request {request_id} within {seconds} s (is kglue-operator running? `kubectl describe` the object for Events); the request stays in place"
    )]
    NotRecorded {
        /// The request id.
        request_id: String,
        /// How long we waited.
        seconds: u64,
    },
    /// The run is not in the object's history.
    #[error("{kind} {name} has no run {run_id} in status.runs")]
    RunNotFound {
        /// Job or Crawler.
        kind: &'static str,
        /// The name.
        name: String,
        /// The run id.
        run_id: String,
    },
    /// The object has no runs at all.
    #[error("{kind} {name} has no runs yet")]
    NoRuns {
        /// Job or Crawler.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A run has no Kubernetes Job (yet, or any more).
    #[error("run {run_id} (attempt {attempt}) has no Kubernetes Job: it is {state:?}")]
    NoKubernetesJob {
        /// The run id.
        run_id: String,
        /// The attempt.
        attempt: i32,
        /// Its state.
        state: RunState,
    },
    /// The Kubernetes Job has no pods (not started, or removed after `--run-ttl`).
    #[error(
        "Kubernetes Job {job} has no pods (not started yet, or removed with the Job after the operator's --run-ttl)"
    )]
    NoPods {
        /// The Kubernetes Job.
        job: String,
    },
    /// The operator handled a request without doing what it asked.
    #[error("{what}")]
    Refused {
        /// What happened.
        what: String,
    },
    /// status.runs could not be read or printed.
    #[error("status.runs: {0}")]
    Json(#[from] serde_json::Error),
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ControlError {
    let what = what.into();
    move |source| ControlError::Api {
        what,
        source: Box::new(source),
    }
}

/// A client for the current kubeconfig context (or the pod's service account) and the namespace
/// to use: `namespace` if given, else the context's, else `default`.
pub async fn connect(namespace: Option<String>) -> Result<(Client, String), ControlError> {
    let config = Config::infer()
        .await
        .map_err(|e| ControlError::Connect(e.to_string()))?;
    let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| ControlError::Connect(e.to_string()))?;
    Ok((client, namespace))
}

/// Checks that `id` can be the name part of an annotation key: 1–63 letters, digits, `-`, `_`,
/// `.`, starting and ending with a letter or digit (the rule the operator applies too).
pub fn validate_id(what: &'static str, id: &str) -> Result<(), ControlError> {
    let invalid = |reason: &str| ControlError::InvalidId {
        what,
        id: id.to_string(),
        reason: reason.to_string(),
    };
    if id.is_empty() {
        return Err(invalid("it is empty"));
    }
    if id.len() > 63 {
        return Err(invalid(&format!("it is {} characters long", id.len())));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(invalid(&format!("{bad:?} is not allowed")));
    }
    let bytes = id.as_bytes();
    if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return Err(invalid("it must start and end with a letter or digit"));
    }
    Ok(())
}

/// A request id: `cli-<unix seconds>-<6 hex digits>`. The clock keeps ids sortable; the random
/// part keeps two starts in the same second apart.
pub fn new_request_id(now: Timestamp, random: u32) -> String {
    format!("cli-{}-{:06x}", now.as_second(), random & 0xff_ffff)
}

/// 32 random bits without a dependency: std's `RandomState` is keyed from the OS's randomness
/// for each process; the clock and pid are hashed in so that two ids in one process differ too.
pub fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i128(Timestamp::now().as_nanosecond());
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}

/// The value of a start annotation: the run's arguments and who started it.
pub fn start_value(arguments: &BTreeMap<String, String>, user: Option<&str>) -> String {
    let mut started_by = json!({"kind": "Manual"});
    if let Some(user) = user.filter(|u| !u.is_empty()) {
        started_by["name"] = json!(user);
    }
    let mut value = json!({"startedBy": started_by});
    if !arguments.is_empty() {
        value["arguments"] = json!(arguments);
    }
    value.to_string()
}

/// A JSON merge patch that sets one annotation.
pub fn annotation_patch(key: &str, value: &str) -> Value {
    json!({"metadata": {"annotations": {key: value}}})
}

/// The merge patch of a start request.
pub fn start_patch(request_id: &str, arguments: &BTreeMap<String, String>, user: Option<&str>) -> Value {
    annotation_patch(&format!("{START_PREFIX}{request_id}"), &start_value(arguments, user))
}

/// The merge patch of a stop request.
pub fn stop_patch(run_id: &str) -> Value {
    annotation_patch(&format!("{STOP_PREFIX}{run_id}"), "")
}

/// The merge patch of a bookmark reset.
pub fn bookmark_reset_patch() -> Value {
    annotation_patch(BOOKMARK_RESET, "")
}

/// The merge patch of a bookmark rewind (`None`: to where the last committing run started).
pub fn bookmark_rewind_patch(to_run: Option<&str>) -> Value {
    annotation_patch(BOOKMARK_REWIND, to_run.unwrap_or(""))
}

/// What the CLI needs of a Job or Crawler: its runs (metrics left as JSON, so one code path
/// serves both kinds) and how many retries a failed run gets.
struct Runs {
    records: Vec<RunRecord<Value>>,
    max_retries: i32,
}

fn kind_name(kind: RunOwnerKind) -> &'static str {
    kind.as_str()
}

async fn read_runs(client: &Client, namespace: &str, kind: RunOwnerKind, name: &str) -> Result<Runs, ControlError> {
    let not_found = || ControlError::NotFound {
        kind: kind_name(kind),
        name: name.to_string(),
        namespace: namespace.to_string(),
    };
    let what = format!("reading {} {name}", kind_name(kind));
    let (runs, max_retries) = match kind {
        RunOwnerKind::Job => {
            let job = Api::<Job>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(api_error(what))?
                .ok_or_else(not_found)?;
            let runs = job.status.map(|s| serde_json::to_value(s.runs)).transpose()?;
            (runs, job.spec.max_retries)
        }
        RunOwnerKind::Crawler => {
            let crawler = Api::<Crawler>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(api_error(what))?
                .ok_or_else(not_found)?;
            (crawler.status.map(|s| serde_json::to_value(s.runs)).transpose()?, 0)
        }
    };
    let records = match runs {
        Some(runs) => serde_json::from_value(runs)?,
        None => Vec::new(),
    };
    Ok(Runs { records, max_retries })
}

/// Sets annotations on `name` with a JSON merge patch; a missing object is [`ControlError::NotFound`].
async fn annotate<K>(
    client: &Client,
    namespace: &str,
    kind: &'static str,
    name: &str,
    patch: &Value,
) -> Result<(), ControlError>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match Api::<K>::namespaced(client.clone(), namespace)
        .patch_metadata(name, &params, &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Err(ControlError::NotFound {
            kind,
            name: name.to_string(),
            namespace: namespace.to_string(),
        }),
        Err(error) => Err(api_error(format!("annotating {kind} {name}"))(error)),
    }
}

async fn merge_patch(
    client: &Client,
    namespace: &str,
    kind: RunOwnerKind,
    name: &str,
    patch: &Value,
) -> Result<(), ControlError> {
    match kind {
        RunOwnerKind::Job => annotate::<Job>(client, namespace, kind_name(kind), name, patch).await,
        RunOwnerKind::Crawler => annotate::<Crawler>(client, namespace, kind_name(kind), name, patch).await,
    }
}

/// `kglue start`: asks for a run, prints the request id and, once the operator recorded it, the
/// run id; with `wait`, follows the run to its end. Returns whether the run succeeded (or, not
/// waiting, whether the request was recorded).
#[allow(clippy::too_many_arguments)]
pub async fn start(
    client: &Client,
    namespace: &str,
    kind: RunOwnerKind,
    name: &str,
    request_id: Option<String>,
    arguments: BTreeMap<String, String>,
    user: Option<&str>,
    wait: bool,
) -> Result<bool, ControlError> {
    if kind == RunOwnerKind::Crawler && !arguments.is_empty() {
        return Err(ControlError::ArgumentsForCrawler);
    }
    let request_id = request_id.unwrap_or_else(|| new_request_id(Timestamp::now(), random_u32()));
    validate_id("request id", &request_id)?;
    merge_patch(
        client,
        namespace,
        kind,
        name,
        &start_patch(&request_id, &arguments, user),
    )
    .await?;
    println!("request {request_id}: start {} {name}", kind_name(kind).to_lowercase());

    let started = Instant::now();
    let run_id = loop {
        let runs = read_runs(client, namespace, kind, name).await?;
        if let Some(record) = runs
            .records
            .iter()
            .find(|r| r.request_id.as_deref() == Some(request_id.as_str()))
        {
            break record.id.clone();
        }
        if started.elapsed() >= RECORD_TIMEOUT {
            let error = ControlError::NotRecorded {
                request_id,
                seconds: RECORD_TIMEOUT.as_secs(),
            };
            if wait {
                return Err(error);
            }
            eprintln!("kglue: {error}");
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!("run {run_id}");
    if !wait {
        return Ok(true);
    }
    let mut last: Option<(i32, RunState)> = None;
    loop {
        let runs = read_runs(client, namespace, kind, name).await?;
        let Some(newest) = runs.records.iter().filter(|r| r.id == run_id).max_by_key(|r| r.attempt) else {
            return Err(ControlError::RunNotFound {
                kind: kind_name(kind),
                name: name.to_string(),
                run_id,
            });
        };
        if last != Some((newest.attempt, newest.state)) {
            last = Some((newest.attempt, newest.state));
            println!("run {run_id} attempt {}: {:?}", newest.attempt, newest.state);
        }
        if run_is_over(newest, runs.max_retries) {
            if let Some(message) = &newest.message {
                println!("{message}");
            }
            return Ok(newest.state == RunState::Succeeded);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Whether a run's newest attempt is final and no retry follows it (a Failed attempt below
/// `maxRetries` is retried as a new attempt of the same run).
pub fn run_is_over<M>(newest: &RunRecord<M>, max_retries: i32) -> bool {
    newest.state.is_final() && !(newest.state == RunState::Failed && newest.attempt < max_retries)
}

/// `kglue stop`: asks the operator to stop a run.
pub async fn stop(
    client: &Client,
    namespace: &str,
    kind: RunOwnerKind,
    name: &str,
    run_id: &str,
) -> Result<(), ControlError> {
    validate_id("run id", run_id)?;
    merge_patch(client, namespace, kind, name, &stop_patch(run_id)).await?;
    println!(
        "stop requested: run {run_id} of {} {name}",
        kind_name(kind).to_lowercase()
    );
    Ok(())
}

/// `kglue bookmark reset|rewind job NAME`: asks the operator to reset or rewind a Job's
/// bookmark (refused, with a Warning Event, while a run is active).
pub async fn bookmark(client: &Client, namespace: &str, name: &str, patch: &Value) -> Result<(), ControlError> {
    merge_patch(client, namespace, RunOwnerKind::Job, name, patch).await?;
    println!(
        "bookmark request written on job {name}; the operator applies it unless a run is active (`kubectl describe kgjob {name}` shows a Warning Event then)"
    );
    Ok(())
}

/// How `kglue runs` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsOutput {
    /// A table for people.
    Table,
    /// status.runs as JSON.
    Json,
}

/// `kglue runs`: prints the run history.
pub async fn runs(
    client: &Client,
    namespace: &str,
    kind: RunOwnerKind,
    name: &str,
    output: RunsOutput,
) -> Result<(), ControlError> {
    let runs = read_runs(client, namespace, kind, name).await?;
    match output {
        RunsOutput::Json => println!("{}", serde_json::to_string_pretty(&runs.records)?),
        RunsOutput::Table => print!("{}", render_runs(kind, &runs.records)),
    }
    Ok(())
}

/// The figures column of a run: rows read and written for a job, tables for a crawl.
fn summary(kind: RunOwnerKind, metrics: Option<&Value>) -> String {
    let Some(metrics) = metrics else {
        return String::new();
    };
    match kind {
        RunOwnerKind::Job => match serde_json::from_value::<JobRunMetrics>(metrics.clone()) {
            Ok(m) => format!(
                "{} read / {} written",
                m.sources.values().map(|s| s.rows).sum::<i64>(),
                m.sinks.values().map(|s| s.rows).sum::<i64>()
            ),
            Err(_) => String::new(),
        },
        RunOwnerKind::Crawler => match serde_json::from_value::<CrawlMetrics>(metrics.clone()) {
            Ok(m) => format!(
                "{} created, {} updated, {} unchanged",
                m.tables_created, m.tables_updated, m.tables_unchanged
            ),
            Err(_) => String::new(),
        },
    }
}

fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let whole = seconds.round() as u64;
        if whole < 3600 {
            format!("{}m{:02}s", whole / 60, whole % 60)
        } else {
            format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
        }
    }
}

fn cut_chars(text: &str, chars: usize) -> String {
    // One line per run: a multi-line error is shown up to its first line break.
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(chars.saturating_sub(1)) {
        Some((at, _)) if line.chars().count() > chars => format!("{}…", &line[..at]),
        _ if line.len() < text.trim_end().len() => format!("{line} …"),
        _ => line.to_string(),
    }
}

/// The run history as a table, newest first as in status.
pub fn render_runs(kind: RunOwnerKind, records: &[RunRecord<Value>]) -> String {
    let figures = match kind {
        RunOwnerKind::Job => "ROWS",
        RunOwnerKind::Crawler => "TABLES",
    };
    let mut rows: Vec<[String; 8]> = vec![[
        "RUN".into(),
        "ATTEMPT".into(),
        "STATE".into(),
        "STARTED BY".into(),
        "STARTED".into(),
        "DURATION".into(),
        figures.into(),
        "MESSAGE".into(),
    ]];
    for record in records {
        let started_by = match &record.started_by.name {
            Some(name) => format!("{:?}/{name}", record.started_by.kind),
            None => format!("{:?}", record.started_by.kind),
        };
        rows.push([
            record.id.clone(),
            record.attempt.to_string(),
            format!("{:?}", record.state),
            started_by,
            record
                .started_at
                .as_ref()
                .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default(),
            record.duration_seconds.map(duration).unwrap_or_default(),
            summary(kind, record.metrics.as_ref()),
            record
                .message
                .as_deref()
                .map(|m| cut_chars(m, MESSAGE_CHARS))
                .unwrap_or_default(),
        ]);
    }
    if records.is_empty() {
        return "no runs\n".into();
    }
    render_table(&rows)
}

/// Rows as aligned columns, the last column unpadded.
pub fn render_table<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row.as_ref()) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let row = row.as_ref();
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `kglue logs`: prints the log of the newest attempt of a run (or of the newest run), read
/// from its pod through the API server. When the log cannot be read (the node is gone, the
/// kubelet does not serve logs), says so and prints the pod's termination message instead.
pub async fn logs(
    client: &Client,
    namespace: &str,
    kind: RunOwnerKind,
    name: &str,
    run_id: Option<&str>,
) -> Result<(), ControlError> {
    let runs = read_runs(client, namespace, kind, name).await?;
    let record = match run_id {
        Some(run_id) => runs
            .records
            .iter()
            .filter(|r| r.id == run_id)
            .max_by_key(|r| r.attempt)
            .ok_or_else(|| ControlError::RunNotFound {
                kind: kind_name(kind),
                name: name.to_string(),
                run_id: run_id.to_string(),
            })?,
        None => runs.records.first().ok_or_else(|| ControlError::NoRuns {
            kind: kind_name(kind),
            name: name.to_string(),
        })?,
    };
    let Some(job) = &record.kubernetes_job else {
        return Err(ControlError::NoKubernetesJob {
            run_id: record.id.clone(),
            attempt: record.attempt,
            state: record.state,
        });
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut found = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .map_err(api_error(format!("listing the pods of Kubernetes Job {job}")))?
        .items;
    if found.is_empty() {
        return Err(ControlError::NoPods { job: job.clone() });
    }
    found.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let several = found.len() > 1;
    for pod in &found {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        if several {
            println!("==> pod {pod_name} <==");
        }
        match pods.logs(&pod_name, &LogParams::default()).await {
            Ok(text) => print!("{text}"),
            Err(error) => {
                eprintln!("kglue: cannot read the log of pod {pod_name}: {error}");
                match termination_messages(pod) {
                    messages if messages.is_empty() => eprintln!("kglue: pod {pod_name} has no termination message"),
                    messages => {
                        eprintln!("kglue: the termination message of pod {pod_name}:");
                        for message in messages {
                            println!("{message}");
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The termination messages of a pod's containers (the current or the last state).
fn termination_messages(pod: &Pod) -> Vec<String> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| {
            let terminated = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))?;
            let message = terminated.message.clone().unwrap_or_default();
            Some(format!(
                "{}: exit code {}{}{}",
                c.name,
                terminated.exit_code,
                terminated
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kglue_crds::common::{StartedBy, StartedByKind};

    use super::*;

    #[test]
    fn request_ids_follow_the_annotation_rules() {
        for good in ["a", "backfill-may", "cli-1714557600-3fa2c1", "A_1.b", &"x".repeat(63)] {
            assert!(validate_id("request id", good).is_ok(), "{good}");
        }
        for (bad, reason) in [
            ("", "it is empty"),
            (&*"x".repeat(64), "64 characters"),
            ("-start", "start and end"),
            ("end.", "start and end"),
            ("has space", "' ' is not allowed"),
            ("slash/ed", "'/' is not allowed"),
            ("ünïcode", "is not allowed"),
        ] {
            let error = validate_id("request id", bad).expect_err(bad).to_string();
            assert!(error.contains(reason), "{bad}: {error}");
            assert!(error.starts_with("request id"), "{error}");
        }
    }

    #[test]
    fn new_request_ids_are_valid_and_carry_the_time() {
        let now: Timestamp = "2024-05-01T10:00:00Z".parse().expect("time");
        let id = new_request_id(now, 0xdead_beef);
        assert_eq!(id, "cli-1714557600-adbeef");
        assert!(validate_id("request id", &id).is_ok());
        assert_eq!(new_request_id(now, 1), "cli-1714557600-000001");
        assert_ne!(random_u32(), random_u32(), "two draws differ");
    }

    #[test]
    fn start_patch_sets_one_annotation_with_arguments_and_user() {
        let arguments = BTreeMap::from([("day".to_string(), "2024-05-01".to_string())]);
        let patch = start_patch("backfill-may", &arguments, Some("alice"));
        let value = patch["metadata"]["annotations"]["run.kglue.dev/backfill-may"]
            .as_str()
            .expect("a string value");
        assert_eq!(
            serde_json::from_str::<Value>(value).expect("JSON"),
            json!({"arguments": {"day": "2024-05-01"}, "startedBy": {"kind": "Manual", "name": "alice"}})
        );
        assert_eq!(patch["metadata"]["annotations"].as_object().map(|o| o.len()), Some(1));
        // No user, no arguments: what a hand-written request would say.
        assert_eq!(
            start_value(&BTreeMap::new(), None),
            r#"{"startedBy":{"kind":"Manual"}}"#
        );
        assert_eq!(
            start_value(&BTreeMap::new(), Some("")),
            r#"{"startedBy":{"kind":"Manual"}}"#
        );
    }

    #[test]
    fn stop_and_bookmark_patches() {
        assert_eq!(
            stop_patch("jr-3fa29c01d2"),
            json!({"metadata": {"annotations": {"stop.kglue.dev/jr-3fa29c01d2": ""}}})
        );
        assert_eq!(
            bookmark_reset_patch(),
            json!({"metadata": {"annotations": {"bookmark.kglue.dev/reset": ""}}})
        );
        assert_eq!(
            bookmark_rewind_patch(Some("jr-1")),
            json!({"metadata": {"annotations": {"bookmark.kglue.dev/rewind": "jr-1"}}})
        );
        assert_eq!(
            bookmark_rewind_patch(None),
            json!({"metadata": {"annotations": {"bookmark.kglue.dev/rewind": ""}}})
        );
    }

    fn record(id: &str, attempt: i32, state: RunState) -> RunRecord<Value> {
        RunRecord {
            id: id.into(),
            attempt,
            request_id: None,
            started_by: StartedBy {
                kind: StartedByKind::Manual,
                name: Some("alice".into()),
            },
            arguments: BTreeMap::new(),
            state,
            started_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2024-05-01T10:00:00Z".parse().expect("time"),
            )),
            completed_at: None,
            duration_seconds: Some(125.0),
            not_before: None,
            kubernetes_job: None,
            message: None,
            metrics: None,
            run_properties: BTreeMap::new(),
        }
    }

    #[test]
    fn runs_table_aligns_columns_and_cuts_messages() {
        let mut failed = record("jr-0000000002", 1, RunState::Failed);
        failed.message = Some(format!("sink out: {}\nsecond line", "x".repeat(100)));
        failed.metrics = Some(json!({"sources": {"in": {"rows": 10, "bytes": 1, "objects": 1}}}));
        let mut ok = record("jr-0000000001", 0, RunState::Succeeded);
        ok.started_by = StartedBy {
            kind: StartedByKind::Schedule,
            name: None,
        };
        ok.duration_seconds = Some(1.84);
        ok.metrics = Some(json!({
            "sources": {"a": {"rows": 5, "bytes": 1, "objects": 1}, "b": {"rows": 7, "bytes": 1, "objects": 1}},
            "sinks": {"out": {"rows": 12, "files": 1, "bytes": 1, "partitionsAdded": 0}}
        }));
        let table = render_runs(RunOwnerKind::Job, &[failed, ok]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert_eq!(
            lines[0],
            "RUN             ATTEMPT   STATE       STARTED BY     STARTED                DURATION   ROWS                   MESSAGE"
        );
        assert_eq!(
            lines[1],
            format!(
                "jr-0000000002   1         Failed      Manual/alice   2024-05-01T10:00:00Z   2m05s      10 read / 0 written    sink out: {}…",
                "x".repeat(49)
            )
        );
        assert_eq!(
            lines[2],
            "jr-0000000001   0         Succeeded   Schedule       2024-05-01T10:00:00Z   1.8s       12 read / 12 written"
        );
        assert_eq!(render_runs(RunOwnerKind::Crawler, &[]), "no runs\n");
    }

    #[test]
    fn crawler_runs_show_tables() {
        let mut crawl = record("cr-0000000001", 0, RunState::Running);
        crawl.metrics = Some(json!({"tablesCreated": 1, "tablesUpdated": 2, "tablesUnchanged": 3,
            "tablesDeprecated": 0, "partitionsAdded": 4, "objectsListed": 5, "objectsRead": 5, "objectsSkipped": 0}));
        crawl.message = Some("short\nmore".into());
        let table = render_runs(RunOwnerKind::Crawler, &[crawl]);
        assert!(table.lines().next().is_some_and(|l| l.contains("TABLES")), "{table}");
        assert!(table.contains("1 created, 2 updated, 3 unchanged   short …"), "{table}");
    }

    #[test]
    fn a_failed_attempt_with_retries_left_is_not_over() {
        assert!(!run_is_over(&record("r", 0, RunState::Failed), 2));
        assert!(run_is_over(&record("r", 2, RunState::Failed), 2));
        assert!(run_is_over(&record("r", 0, RunState::Timeout), 2));
        assert!(!run_is_over(&record("r", 0, RunState::Running), 0));
        assert!(run_is_over(&record("r", 0, RunState::Succeeded), 0));
    }

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(duration(1.84), "1.8s");
        assert_eq!(duration(125.0), "2m05s");
        assert_eq!(duration(3.0 * 3600.0 + 120.0), "3h02m");
    }
}
