//! The cluster commands for Jobs and Crawlers: start, stop, runs, logs and bookmark requests.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kglue_crds::common::{RunRecord, RunState};
use kglue_crds::crawler::CrawlMetrics;
use kglue_crds::job::JobRunMetrics;
use kglue_crds::protocol::requests::Request;
use kglue_crds::run_result::RunOwnerKind;
use kglue_crds::{Crawler, Job};
use kube::Client;
use kube::api::{Api, ListParams, LogParams};
use serde_json::Value;

use super::render::{MESSAGE_CHARS, cut_chars, duration, render_table};
use super::{
    Cluster, Console, ControlError, RECORD_TIMEOUT, RunsOutput, StartOptions, annotate, api_error, put_start, put_stop,
    read_object,
};

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
    let (runs, max_retries) = match kind {
        RunOwnerKind::Job => {
            let job: Job = read_object(client, namespace, kind_name(kind), name).await?;
            (
                job.status.map(|s| serde_json::to_value(s.runs)).transpose()?,
                job.spec.max_retries,
            )
        }
        RunOwnerKind::Crawler => {
            let crawler: Crawler = read_object(client, namespace, kind_name(kind), name).await?;
            (crawler.status.map(|s| serde_json::to_value(s.runs)).transpose()?, 0)
        }
    };
    let records = match runs {
        Some(runs) => serde_json::from_value(runs)?,
        None => Vec::new(),
    };
    Ok(Runs { records, max_retries })
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
pub async fn start(
    cluster: &Cluster,
    kind: RunOwnerKind,
    name: &str,
    options: StartOptions,
    console: &mut Console<'_>,
) -> Result<bool, ControlError> {
    let (client, namespace) = (&cluster.client, cluster.namespace.as_str());
    if kind == RunOwnerKind::Crawler && !options.arguments.is_empty() {
        return Err(ControlError::ArgumentsForCrawler);
    }
    let wait = options.wait;
    let what = format!("start {} {name}", kind_name(kind).to_lowercase());
    let request_id = put_start(options, &what, console, async |patch| {
        merge_patch(client, namespace, kind, name, patch).await
    })
    .await?;

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
            writeln!(console.err, "kglue: {error}")?;
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    writeln!(console.out, "run {run_id}")?;
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
            writeln!(
                console.out,
                "run {run_id} attempt {}: {:?}",
                newest.attempt, newest.state
            )?;
        }
        if run_is_over(newest, runs.max_retries) {
            if let Some(message) = &newest.message {
                writeln!(console.out, "{message}")?;
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
    cluster: &Cluster,
    kind: RunOwnerKind,
    name: &str,
    run_id: &str,
    console: &mut Console<'_>,
) -> Result<(), ControlError> {
    let (client, namespace) = (&cluster.client, cluster.namespace.as_str());
    let what = format!("{} {name}", kind_name(kind).to_lowercase());
    put_stop(run_id, &what, console, async |patch| {
        merge_patch(client, namespace, kind, name, patch).await
    })
    .await
}

/// `kglue bookmark reset|rewind job NAME`: asks the operator to reset or rewind a Job's
/// bookmark (refused, with a Warning Event, while a run is active).
pub async fn bookmark(
    cluster: &Cluster,
    name: &str,
    request: &Request,
    console: &mut Console<'_>,
) -> Result<(), ControlError> {
    let (client, namespace) = (&cluster.client, cluster.namespace.as_str());
    merge_patch(client, namespace, RunOwnerKind::Job, name, &request.to_patch()).await?;
    writeln!(
        console.out,
        "bookmark request written on job {name}; the operator applies it unless a run is active (`kubectl describe kgjob {name}` shows a Warning Event then)"
    )?;
    Ok(())
}

/// `kglue runs`: prints the run history.
pub async fn runs(
    cluster: &Cluster,
    kind: RunOwnerKind,
    name: &str,
    output: RunsOutput,
    console: &mut Console<'_>,
) -> Result<(), ControlError> {
    let (client, namespace) = (&cluster.client, cluster.namespace.as_str());
    let runs = read_runs(client, namespace, kind, name).await?;
    match output {
        RunsOutput::Json => writeln!(console.out, "{}", serde_json::to_string_pretty(&runs.records)?)?,
        RunsOutput::Table => write!(console.out, "{}", render_runs(kind, &runs.records))?,
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

/// `kglue logs`: prints the log of the newest attempt of a run (or of the newest run), read
/// from its pod through the API server. When the log cannot be read (the node is gone, the
/// kubelet does not serve logs), says so and prints the pod's termination message instead.
pub async fn logs(
    cluster: &Cluster,
    kind: RunOwnerKind,
    name: &str,
    run_id: Option<&str>,
    console: &mut Console<'_>,
) -> Result<(), ControlError> {
    let (client, namespace) = (&cluster.client, cluster.namespace.as_str());
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
            writeln!(console.out, "==> pod {pod_name} <==")?;
        }
        match pods.logs(&pod_name, &LogParams::default()).await {
            Ok(text) => write!(console.out, "{text}")?,
            Err(error) => {
                writeln!(console.err, "kglue: cannot read the log of pod {pod_name}: {error}")?;
                match termination_messages(pod) {
                    messages if messages.is_empty() => {
                        writeln!(console.err, "kglue: pod {pod_name} has no termination message")?
                    }
                    messages => {
                        writeln!(console.err, "kglue: the termination message of pod {pod_name}:")?;
                        for message in messages {
                            writeln!(console.out, "{message}")?;
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
    use std::collections::BTreeMap;

    use kglue_crds::common::{StartedBy, StartedByKind};
    use serde_json::json;

    use super::*;

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
            settle_attempts: None,
            failures_in_a_row: None,
            message: None,
            metrics: None,
            executors: None,
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
}
