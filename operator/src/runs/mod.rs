//! Runs of Jobs and Crawlers (docs/runs.md): start, stop and bookmark requests read from
//! annotations, one Kubernetes Job per attempt, the runner's RunResult read back, and the run
//! history and bookmark written to status — exactly once per attempt.
//!
//! The pipeline, per object: read (a fresh GET of the object, its attempts' Kubernetes Jobs, the
//! reports of finished ones) → decide ([`machine::decide`], pure) → apply (create and delete
//! Kubernetes Jobs) → status (server-side apply under [`RUNS_MANAGER`], with the object's
//! `resourceVersion` as a precondition, so a stale or second operator cannot commit twice) →
//! remove the handled annotations → Events and metrics.

pub mod batch;
pub mod machine;
pub mod request;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job as BatchJob;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kglue_crds::common::{RunRecord, RunState, Schedule, StartedBy, StartedByKind};
use kglue_crds::connection::S3CredentialsSecretRef;
use kglue_crds::job::BookmarkOption;
use kglue_crds::run_result::{RunOwnerKind, RunResult};
use kglue_crds::{Connection, Crawler, Job, Table};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use self::batch::{AttemptSpec, LABEL_OWNER_UID, Owner, attempt_state, build_job};
use self::machine::{Bookmarks, Limits, Observed, Report, decide};
use self::request::{StartBody, StartRequest, read_requests};
use crate::controllers::{Context, Error};
use crate::schedule::CronSchedule;

pub use self::batch::{RunnerSettings, WorkerSizes};

/// The field manager of the run history and bookmark in status (the conditions are
/// `kglue-operator`'s), so the two writers never clear each other's fields.
pub const RUNS_MANAGER: &str = "kglue-operator-runs";

/// A kind whose objects run: Job and Crawler.
pub trait Runnable:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The figures of one run.
    type Metrics: Clone + PartialEq + Serialize + Send + Sync;
    /// Job or Crawler.
    const KIND: RunOwnerKind;
    /// The run id prefix.
    const RUN_PREFIX: &'static str;
    /// `status.runs`.
    fn runs(&self) -> Vec<RunRecord<Self::Metrics>>;
    /// The limits of the spec.
    fn limits(&self, settings: &RunnerSettings) -> Limits;
    /// The bookmark state (Jobs).
    fn bookmarks(&self) -> Option<Bookmarks>;
    /// The pod's size and deadline.
    fn worker(&self) -> (kglue_crds::common::WorkerSize, i32);
    /// The names of the Connections a run reaches data through; `tables` are the namespace's.
    fn connections(&self, tables: &[Table]) -> Vec<String>;
    /// The figures of a report.
    fn metrics(result: &RunResult) -> Option<Self::Metrics>;
    /// The object's own schedule (a Crawler's `spec.schedule`).
    fn schedule(&self) -> Option<&Schedule> {
        None
    }
    /// The status field showing the schedule's next tick, and its value as read.
    fn next_scheduled(&self) -> (&'static str, Option<Time>) {
        ("", None)
    }
}

impl Runnable for Job {
    type Metrics = kglue_crds::job::JobRunMetrics;
    const KIND: RunOwnerKind = RunOwnerKind::Job;
    const RUN_PREFIX: &'static str = "jr-";

    fn runs(&self) -> Vec<RunRecord<Self::Metrics>> {
        self.status.as_ref().map(|s| s.runs.clone()).unwrap_or_default()
    }

    fn limits(&self, settings: &RunnerSettings) -> Limits {
        Limits {
            max_concurrent: usize::try_from(self.spec.max_concurrent_runs).unwrap_or(1),
            max_retries: self.spec.max_retries,
            history: usize::try_from(self.spec.run_history_limit).unwrap_or(10),
            retry_backoff: settings.retry_backoff,
            timeout_minutes: self.spec.timeout_minutes,
        }
    }

    fn bookmarks(&self) -> Option<Bookmarks> {
        let status = self.status.clone().unwrap_or_default();
        Some(Bookmarks {
            serialize: self.spec.bookmark.option != BookmarkOption::Disable,
            current: status.bookmark,
            history: status.bookmark_history,
        })
    }

    fn worker(&self) -> (kglue_crds::common::WorkerSize, i32) {
        (self.spec.worker_size, self.spec.timeout_minutes)
    }

    fn connections(&self, tables: &[Table]) -> Vec<String> {
        let table_refs = self
            .spec
            .sources
            .iter()
            .filter_map(|s| s.table.as_ref())
            .chain(self.spec.sinks.iter().filter_map(|s| s.table.as_ref()));
        let from_tables = table_refs.filter_map(|r| {
            tables
                .iter()
                .find(|t| t.spec.database_name == r.database && t.spec.table_name == r.table)
                .and_then(|t| t.spec.storage.connection.clone())
        });
        let direct = crate::controllers::job::connection_refs(self)
            .into_iter()
            .map(|(name, _)| name.to_string());
        direct.chain(from_tables).collect()
    }

    fn metrics(result: &RunResult) -> Option<Self::Metrics> {
        result.spec.job.as_ref().map(|j| j.metrics.clone())
    }
}

impl Runnable for Crawler {
    type Metrics = kglue_crds::crawler::CrawlMetrics;
    const KIND: RunOwnerKind = RunOwnerKind::Crawler;
    const RUN_PREFIX: &'static str = "cr-";

    fn runs(&self) -> Vec<RunRecord<Self::Metrics>> {
        self.status.as_ref().map(|s| s.runs.clone()).unwrap_or_default()
    }

    fn limits(&self, settings: &RunnerSettings) -> Limits {
        // A crawler runs one crawl at a time and is not retried, as in Glue.
        Limits {
            max_concurrent: 1,
            max_retries: 0,
            history: usize::try_from(self.spec.run_history_limit).unwrap_or(10),
            retry_backoff: settings.retry_backoff,
            timeout_minutes: self.worker().1,
        }
    }

    fn bookmarks(&self) -> Option<Bookmarks> {
        None
    }

    fn worker(&self) -> (kglue_crds::common::WorkerSize, i32) {
        (self.spec.worker_size, self.spec.timeout_minutes.unwrap_or(2880))
    }

    fn connections(&self, _tables: &[Table]) -> Vec<String> {
        crate::controllers::crawler::connection_refs(self)
            .into_iter()
            .map(|(name, _)| name.to_string())
            .collect()
    }

    fn metrics(result: &RunResult) -> Option<Self::Metrics> {
        result.spec.crawl.clone()
    }

    fn schedule(&self) -> Option<&Schedule> {
        self.spec.schedule.as_ref()
    }

    fn next_scheduled(&self) -> (&'static str, Option<Time>) {
        (
            "nextScheduledCrawl",
            self.status.as_ref().and_then(|s| s.next_scheduled_crawl.clone()),
        )
    }
}

/// Publishes `events` about `reference`. An Event is a courtesy: a failure is logged, not returned,
/// so it never fails (and repeats) a reconcile whose writes have landed.
pub async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    events: &[machine::RunEvent],
    action: &str,
) {
    for event in events {
        let event = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.into(),
            note: Some(event.note.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, reference).await {
            tracing::warn!(object = ?reference.name, namespace = ?reference.namespace, %error, "publishing an Event failed");
        }
    }
}

/// Writes `status` fields of `object` by server-side apply under `manager`, with the object's
/// `resourceVersion` as a precondition: a decision made from a stale read (or by a second
/// operator) is refused by the API server instead of recorded twice.
pub async fn apply_status<K>(api: &Api<K>, object: &K, manager: &str, status: Value) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": object.meta().name, "resourceVersion": object.meta().resource_version},
        "status": status,
    });
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch_status(&name, &PatchParams::apply(manager).force(), &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// Removes the annotations `keys` (requests that are now recorded) from `name`.
pub async fn remove_annotations<K>(api: &Api<K>, name: &str, keys: &[String]) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    // Scheduled starts have no annotation.
    let removals: serde_json::Map<String, Value> = keys
        .iter()
        .filter(|key| !key.is_empty())
        .map(|key| (key.clone(), Value::Null))
        .collect();
    if removals.is_empty() {
        return Ok(());
    }
    api.patch_metadata(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": removals}})),
    )
    .await?;
    Ok(())
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// Reads, decides and applies the runs of `name`. `blocked` is the Stalled message when the
/// object cannot run. Returns when to look again without a watch event.
pub async fn reconcile_runs<K: Runnable>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    blocked: Option<String>,
) -> Result<Option<Duration>, Error> {
    let Some(settings) = ctx.runner.as_ref() else {
        return Ok(None);
    };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    // A fresh read, not the watch cache: decisions must start from the last committed history.
    let Some(object) = api.get_opt(name).await? else {
        return Ok(None);
    };
    let annotations = object.meta().annotations.clone().unwrap_or_default();
    let mut requests = read_requests(&annotations);
    let runs = object.runs();

    // The object's own schedule: a due tick is one more start request, its id derived from the
    // tick, so it starts one run however often this is decided.
    let (next_field, next_seen) = object.next_scheduled();
    let mut next_tick: Option<Timestamp> = None;
    if let Some(schedule) = object.schedule().filter(|_| blocked.is_none()) {
        let created = object
            .meta()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now);
        let (due, next) = scheduled_start(schedule, &runs, created, Timestamp::now());
        requests.starts.extend(due);
        next_tick = next;
    }
    let next_changed = !next_field.is_empty() && next_tick.map(Time) != next_seen;
    let until_tick =
        next_tick.map(|t| Duration::from_secs_f64(t.duration_since(Timestamp::now()).as_secs_f64().max(0.1)));

    let idle = runs.iter().all(|r| r.state.is_final());
    if idle && requests.starts.is_empty() && requests.stops.is_empty() && requests.bookmark.is_none() && !next_changed {
        return Ok(until_tick);
    }
    let uid = object.meta().uid.clone().unwrap_or_default();

    // The attempts' Kubernetes Jobs, and for finished ones the report and the pods.
    let jobs_api: Api<BatchJob> = Api::namespaced(ctx.client.clone(), namespace);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let results_api: Api<RunResult> = Api::namespaced(ctx.client.clone(), namespace);
    let listed = jobs_api
        .list(&ListParams::default().labels(&format!("{LABEL_OWNER_UID}={uid}")))
        .await?;
    let mut jobs = BTreeMap::new();
    let mut reports = BTreeMap::new();
    for job in listed.items {
        let job_name = job.name_any();
        let finished = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.status == "True" && matches!(c.type_.as_str(), "Complete" | "Failed" | "FailureTarget"))
            });
        let pods = if finished {
            pods_api
                .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job_name}")))
                .await?
                .items
        } else {
            Vec::new()
        };
        let state = attempt_state(&job, &pods);
        if finished && let Some(result) = results_api.get_opt(&job_name).await? {
            let job_uid = job.metadata.uid.clone().unwrap_or_default();
            let owned = result
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Job" && o.uid == job_uid);
            if owned {
                reports.insert(
                    job_name.clone(),
                    Report {
                        outcome: result.spec.outcome,
                        error: result.spec.error.clone(),
                        metrics: K::metrics(&result),
                        next_bookmark: result.spec.job.as_ref().and_then(|j| j.next_bookmark.clone()),
                        run_properties: result
                            .spec
                            .job
                            .as_ref()
                            .map(|j| j.run_properties.clone())
                            .unwrap_or_default(),
                    },
                );
            } else {
                tracing::warn!(%namespace, result = %job_name, "ignoring a RunResult not owned by its attempt's Job");
            }
        }
        jobs.insert(job_name, state);
    }

    let bookmarks = object.bookmarks();
    let decision = decide(Observed {
        now: Timestamp::now(),
        name: name.to_string(),
        uid: uid.clone(),
        run_prefix: K::RUN_PREFIX,
        runs: runs.clone(),
        requests,
        jobs,
        reports,
        blocked,
        limits: object.limits(settings),
        bookmarks: bookmarks.clone(),
    });
    let mut new_runs = decision.runs.clone();

    // Apply: launch and stop attempts.
    if !decision.launch.is_empty() {
        let tables: Vec<Table> = if K::KIND == RunOwnerKind::Job {
            Api::<Table>::namespaced(ctx.client.clone(), namespace)
                .list(&ListParams::default())
                .await?
                .items
        } else {
            Vec::new()
        };
        let connections_api: Api<Connection> = Api::namespaced(ctx.client.clone(), namespace);
        let mut secret_refs: Vec<S3CredentialsSecretRef> = Vec::new();
        let mut wanted = object.connections(&tables);
        wanted.sort();
        wanted.dedup();
        for connection in &wanted {
            if let Some(connection) = connections_api.get_opt(connection).await?
                && let Some(secret) = connection.spec.s3.and_then(|s3| s3.credentials_secret_ref)
            {
                secret_refs.push(secret);
            }
        }
        let (worker, timeout_minutes) = object.worker();
        let spec = AttemptSpec {
            worker,
            timeout_minutes,
            secrets: secret_refs.iter().collect(),
        };
        let owner = Owner {
            kind: K::KIND,
            name: name.to_string(),
            namespace: namespace.to_string(),
            uid: uid.clone(),
        };
        for launch in &decision.launch {
            let job = build_job(&owner, launch, &spec, settings);
            match jobs_api.create(&PostParams::default(), &job).await {
                Ok(_) => {}
                // Created by an earlier reconcile whose status write did not land: the same
                // attempt, already started.
                Err(error) if is_status(&error, 409) => {}
                Err(kube::Error::Api(status)) if (400..500).contains(&status.code) && status.code != 429 => {
                    if let Some(record) = new_runs
                        .iter_mut()
                        .find(|r| r.id == launch.run_id && r.attempt == launch.attempt)
                    {
                        record.state = RunState::Error;
                        record.completed_at =
                            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
                        record.message = Some(format!(
                            "the Kubernetes Job {} could not be created: {}",
                            launch.job_name, status.message
                        ));
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
    for job_name in &decision.delete {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match jobs_api.delete(job_name, &params).await {
            Ok(_) => {}
            Err(error) if is_status(&error, 404) => {}
            Err(error) => return Err(error.into()),
        }
    }

    // Status: one write for the history and the bookmark, conditional on what was read.
    if new_runs != runs || decision.bookmarks.is_some() || next_changed {
        let mut status = serde_json::Map::new();
        status.insert("runs".into(), json!(new_runs));
        if let (false, Some(next)) = (next_field.is_empty(), next_tick) {
            status.insert(next_field.into(), json!(Time(next)));
        }
        if let Some(state) = decision.bookmarks.as_ref().or(bookmarks.as_ref()) {
            if let Some(current) = &state.current {
                status.insert("bookmark".into(), json!(current));
            }
            if !state.history.is_empty() {
                status.insert("bookmarkHistory".into(), json!(state.history));
            }
        }
        apply_status(&api, &object, RUNS_MANAGER, Value::Object(status)).await?;
    }

    // The requests are recorded: remove their annotations.
    remove_annotations(&api, name, &decision.handled).await?;

    let kind = K::KIND.as_str();
    for (state, seconds) in &decision.finished {
        ctx.metrics.run_finished(kind, &format!("{state:?}"), *seconds);
    }
    publish(ctx, &object.object_ref(&()), &decision.events, "Run").await;
    for record in new_runs.iter().filter(|r| !runs.contains(r)) {
        tracing::info!(%kind, %name, %namespace, run = %record.id, attempt = record.attempt, state = ?record.state, "run");
    }

    // Active attempts are followed through their Kubernetes Jobs' watch events; the periodic
    // look is a safety net.
    let active = new_runs.iter().any(|r| !r.state.is_final());
    let after = match (decision.requeue_after, active) {
        (Some(after), _) => Some(after),
        (None, true) => Some(Duration::from_secs(60)),
        (None, false) => None,
    };
    Ok([after, until_tick].into_iter().flatten().min())
}

/// The request id of the scheduled run for `tick`.
pub fn schedule_request_id(tick: Timestamp) -> String {
    format!("schedule-{}", tick.as_second())
}

/// For an object with its own schedule: the start request of the tick due now, if any, and the
/// next tick. The last tick handled is the newest scheduled run in the history (its request id
/// holds the tick), else the object's creation; a tick fires at most a minute late, so an operator
/// that was down does not make up for missed ticks.
pub fn scheduled_start<M>(
    schedule: &Schedule,
    runs: &[RunRecord<M>],
    created: Timestamp,
    now: Timestamp,
) -> (Option<StartRequest>, Option<Timestamp>) {
    let Ok(cron) = CronSchedule::parse(&schedule.cron, schedule.time_zone.as_deref()) else {
        return (None, None);
    };
    let to_chrono = |t: Timestamp| chrono::DateTime::from_timestamp(t.as_second(), 0).unwrap_or_default();
    let handled = runs
        .iter()
        .filter(|r| r.started_by.kind == StartedByKind::Schedule)
        .filter_map(|r| r.request_id.as_deref()?.strip_prefix("schedule-")?.parse::<i64>().ok())
        .max()
        .and_then(|seconds| Timestamp::from_second(seconds).ok())
        .unwrap_or(created);
    let late_allowed = chrono::Duration::from_std(crate::triggers::decide::ON_TIME).unwrap_or_default();
    let plan = cron.plan(to_chrono(handled), to_chrono(now), late_allowed);
    let next = plan.next.and_then(|t| Timestamp::from_second(t.timestamp()).ok());
    let due = plan
        .fire
        .and_then(|tick| Timestamp::from_second(tick.timestamp()).ok())
        .map(|tick| StartRequest {
            annotation: String::new(),
            id: schedule_request_id(tick),
            body: Ok(StartBody {
                arguments: BTreeMap::new(),
                started_by: StartedBy {
                    kind: StartedByKind::Schedule,
                    name: None,
                },
            }),
        });
    (due, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("an RFC 3339 time")
    }

    fn scheduled_run(tick: &str) -> RunRecord<()> {
        RunRecord {
            id: "cr-1".into(),
            attempt: 0,
            request_id: Some(schedule_request_id(at(tick))),
            started_by: StartedBy {
                kind: StartedByKind::Schedule,
                name: None,
            },
            arguments: BTreeMap::new(),
            state: RunState::Succeeded,
            started_at: None,
            completed_at: None,
            duration_seconds: None,
            not_before: None,
            kubernetes_job: None,
            message: None,
            metrics: None,
            run_properties: BTreeMap::new(),
        }
    }

    #[test]
    fn a_crawlers_schedule_starts_one_run_per_tick() {
        let hourly = Schedule {
            cron: "0 * * * *".into(),
            time_zone: None,
        };
        let created = at("2030-01-01T00:30:00Z");
        let (due, next) = scheduled_start::<()>(&hourly, &[], created, at("2030-01-01T00:59:00Z"));
        assert!(due.is_none());
        assert_eq!(next, Some(at("2030-01-01T01:00:00Z")));

        let (due, _) = scheduled_start::<()>(&hourly, &[], created, at("2030-01-01T01:00:03Z"));
        let due = due.expect("the 01:00 tick is due");
        assert_eq!(due.id, "schedule-1893459600");
        assert!(due.annotation.is_empty(), "no annotation to remove");
        assert_eq!(due.body.expect("a body").started_by.kind, StartedByKind::Schedule);

        // Recorded: the same tick does not start again.
        let runs = [scheduled_run("2030-01-01T01:00:00Z")];
        let (again, next) = scheduled_start(&hourly, &runs, created, at("2030-01-01T01:00:30Z"));
        assert!(again.is_none());
        assert_eq!(next, Some(at("2030-01-01T02:00:00Z")));

        // Down from 01:00 to 03:20: 02:00 and 03:00 are too late.
        let (late, _) = scheduled_start(&hourly, &runs, created, at("2030-01-01T03:20:00Z"));
        assert!(late.is_none());
    }
}
