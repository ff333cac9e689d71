//! Runs of Jobs and Crawlers (docs/runs.md): start, stop and bookmark requests read from
//! annotations, one Kubernetes Job per attempt, the runner's RunResult read back, and the run
//! history and bookmark written to status — exactly once per attempt.
//!
//! [`reconcile_runs`] is a pipeline: [`read`] (a fresh GET of the object, its attempts' Kubernetes
//! Jobs and the reports of finished ones) → [`machine::decide`] (pure) → [`act`] (create and delete
//! Kubernetes Jobs) → [`record`] (status by server-side apply under [`RUNS_MANAGER`], with the
//! object's `resourceVersion` as a precondition, so a stale or second operator cannot commit
//! twice; then the handled annotations removed, Events and metrics).

pub mod batch;
pub mod machine;
pub mod runnable;
pub mod scheduled;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job as BatchJob;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kglue_crds::Table;
use kglue_crds::common::{ExecutorCount, RunRecord, RunState, cap_run_message};
use kglue_crds::connection::{SecretKeyUse, secret_consents};
use kglue_crds::crawler::CRAWLER_LABEL;
use kglue_crds::job::{StreamProgress, StreamState};
use kglue_crds::protocol::attempt::{LABEL_OWNER_UID, SettleMode};
use kglue_crds::protocol::executor::LABEL_EXECUTOR_OF;
use kglue_crds::protocol::ids::is_attempt_pod_name;
use kglue_crds::protocol::requests::Requests;
use kglue_crds::run_result::{AttemptOutcome, RunResult};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::{Value, json};

use self::batch::{
    AttemptSpec, ExecutorsStep, Owner, StreamAttempt, attempt_state, build_executors, build_job, executor_count,
    executors_job_name, executors_step, executors_wanted, stale_stream, with_executors,
};
use self::machine::{AttemptJob, Decision, Observed, Report, decide, followed_jobs};
pub use self::runnable::Runnable;
use self::scheduled::scheduled_start;
use crate::context::{ActOn, Context, Error, created, is_status};
use crate::settings::RunnerSettings;
use crate::writes::{apply_status, publish, remove_annotations};

/// The field manager of the run history and bookmark in status (the conditions are
/// `kglue-operator`'s), so the two writers never clear each other's fields.
pub const RUNS_MANAGER: &str = "kglue-operator-runs";

/// How long an active run waits for a look without a watch event: a safety net, since attempts are
/// followed through their Kubernetes Jobs' watch events.
const ACTIVE_RECHECK: Duration = Duration::from_secs(60);

/// How often an active stream's progress is copied from its RunResult into the Job's
/// `status.streaming`: the status lags the runner by at most this.
const STREAM_RECHECK: Duration = Duration::from_secs(10);

/// How soon a distributed attempt whose pod has no IP yet, or whose executor pods are ending, is
/// looked at again.
const EXECUTORS_RECHECK: Duration = Duration::from_secs(1);

/// The object's own schedule as this reconcile sees it.
struct Tick {
    /// The status field that shows the next tick (empty: the kind has no schedule).
    field: &'static str,
    /// The next tick.
    next: Option<Timestamp>,
    /// Whether the next tick differs from what status shows.
    changed: bool,
}

impl Tick {
    /// How long until the next tick.
    fn wait(&self) -> Option<Duration> {
        self.next
            .map(|t| Duration::from_secs_f64(t.duration_since(Timestamp::now()).as_secs_f64().max(0.1)))
    }
}

/// [`reconcile_runs`] as the Job and Crawler controllers call it after their conditions.
pub fn reconcile<K: Runnable>(on: ActOn<'_>) -> futures::future::BoxFuture<'_, Result<Option<Duration>, Error>> {
    Box::pin(reconcile_runs::<K>(on))
}

/// Reads, decides, acts and records the runs of `name`. `blocked` is the Stalled message when the
/// object cannot run. Returns when to look again without a watch event.
pub async fn reconcile_runs<K: Runnable>(on: ActOn<'_>) -> Result<Option<Duration>, Error> {
    let (ctx, namespace, name, blocked) = (on.ctx, on.namespace, on.name, on.blocked);
    // Nothing to decide as the cache has the object: no fresh read. Whatever makes something to
    // decide (a start request, a run's end) is a write, and its watch event reconciles again.
    if ctx.runner.is_some()
        && let Some(cached) = K::informer(&ctx.informers).get(namespace, name)
        && let Ok(cached) = &cached.0
        && let (_, tick, true) = pending(cached, blocked.is_none())
    {
        return Ok(tick.wait());
    }
    let (Some(settings), Some((api, object))) = (ctx.runner.as_ref(), ctx.fresh::<K>(namespace, name).await?) else {
        return Ok(None);
    };
    let (requests, tick, idle) = pending(&object, blocked.is_none());
    if idle {
        return Ok(tick.wait());
    }
    let runs = object.runs();
    let (observed, deletes, executors) = read(ctx, namespace, &object, requests, blocked, settings).await?;
    let reported = observed.progress.clone();
    let decision = decide(observed);
    let mut new_runs = act(ctx, namespace, &object, &decision, settings).await?;
    for run in &mut new_runs {
        run.executors = match (&run.kubernetes_job, run.state.is_final()) {
            (Some(job), false) => executors.counts.get(job).copied(),
            _ => None,
        };
    }
    let streaming = object
        .stream_window()
        .and_then(|_| stream_status(object.stream_progress(), &new_runs, &reported));
    delete_crawled_away(ctx, namespace, &object, &runs, &new_runs, &deletes).await?;
    let shown = Shown { tick: &tick, streaming };
    record(ctx, &api, &object, &runs, &new_runs, &decision, shown).await?;
    retire(ctx, namespace, &decision.retire, settings).await?;

    let active = new_runs.iter().any(|r| !r.state.is_final());
    let recheck = if object.stream_window().is_some() {
        STREAM_RECHECK
    } else {
        ACTIVE_RECHECK
    };
    let after = decision.requeue_after.or(active.then_some(recheck));
    // A distributed attempt's pod without an IP yet (its executors are created once it has one),
    // or an ended attempt whose executor pods are still ending.
    let after = match executors.waiting {
        true => Some(after.map_or(EXECUTORS_RECHECK, |a| a.min(EXECUTORS_RECHECK))),
        false => after,
    };
    Ok([after, tick.wait()].into_iter().flatten().min())
}

/// The start requests of `object`, its schedule's tick, and whether there is nothing to decide
/// (every run final, no request, the shown next tick right).
fn pending<K: Runnable>(object: &K, may_fire: bool) -> (Requests, Tick, bool) {
    let mut requests = Requests::from_annotations(object.annotations());
    let runs = object.runs();
    let tick = own_schedule(object, &runs, &mut requests, may_fire);
    let idle = runs.iter().all(|r| r.state.is_final()) && requests.is_empty() && !tick.changed;
    (requests, tick, idle)
}

/// The object's own schedule: a due tick is one more start request, its id derived from the tick,
/// so it starts one run however often this is decided. A Stalled object's schedule does not fire.
fn own_schedule<K: Runnable>(
    object: &K,
    runs: &[RunRecord<K::Metrics>],
    requests: &mut Requests,
    may_fire: bool,
) -> Tick {
    let (field, shown) = object.next_scheduled();
    let mut next = None;
    if let Some(schedule) = object.schedule().filter(|_| may_fire) {
        let (due, following) = scheduled_start(schedule, runs, created(object.meta()), Timestamp::now());
        requests.starts.extend(due);
        next = following;
    }
    Tick {
        field,
        next,
        changed: !field.is_empty() && next.map(Time) != shown,
    }
}

/// Reads what the decision depends on: the object's attempts' Kubernetes Jobs and, for finished
/// ones, their pods and the runner's report (a RunResult counts only when it is the attempt's own:
/// [`foreign_result`]). Also returns, per attempt, the Tables its report asks to delete.
async fn read<K: Runnable>(
    ctx: &Context,
    namespace: &str,
    object: &K,
    requests: Requests,
    blocked: Option<String>,
    settings: &RunnerSettings,
) -> Result<(Observed<K::Metrics>, TableDeletes, Executors), Error> {
    let uid = object.meta().uid.clone().unwrap_or_default();
    let jobs_api: Api<BatchJob> = ctx.api(namespace);
    let pods_api: Api<Pod> = ctx.api(namespace);
    let results_api: Api<RunResult> = ctx.api(namespace);
    let listed = jobs_api
        .list(&ListParams::default().labels(&format!("{LABEL_OWNER_UID}={uid}")))
        .await?;
    let mut jobs = BTreeMap::new();
    let mut reports = BTreeMap::new();
    let mut deletes = TableDeletes::new();
    let mut unretired = BTreeSet::new();
    let mut progress = BTreeMap::new();
    let mut stale = BTreeSet::new();
    let mut waiting_executors = false;
    let mut executor_counts = BTreeMap::new();
    let streaming = object.stream_window().is_some();
    let followed = followed_jobs(&object.name_any(), &object.runs());
    for job in listed.items {
        let job_name = job.name_any();
        let finished_without_ttl = job
            .spec
            .as_ref()
            .is_some_and(|s| s.ttl_seconds_after_finished.is_none())
            && finished(&job);
        if !followed.contains(&job_name) {
            // Its run is recorded (or it is a cleanup attempt): no pods or report to read, only
            // whether it still waits for its TTL.
            if finished_without_ttl {
                unretired.insert(job_name);
            }
            continue;
        }
        let distributed = executors_wanted(&job).is_some();
        // A distributed attempt's pod is read while it runs too: its IP is the scheduler's.
        let pods = if ending(&job) || distributed {
            pods_api
                .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job_name}")))
                .await?
                .items
        } else {
            Vec::new()
        };
        let mut state = attempt_state(&job, &pods);
        if distributed {
            let executors = follow_executors(ctx, namespace, object, &job, &pods, settings).await?;
            let count = executor_count(&job, &executors.pods);
            // Executors still starting: looked at again soon, so the run shows them running.
            waiting_executors |= count.is_some_and(|c| c.running < c.requested) && !ending(&job);
            if let Some(count) = count {
                executor_counts.insert(job_name.clone(), count);
            }
            let held = with_executors(state.clone(), &executors.pods);
            // Executor pods are not watched (their Job is the attempt's, not the object's): an
            // attempt held open by them, or waiting for its pod's IP, is looked at again soon.
            waiting_executors |= executors.waiting || held != state;
            state = held;
        }
        let over = matches!(
            state,
            AttemptJob::Complete | AttemptJob::Failed { .. } | AttemptJob::Suspended
        );
        // A stream's RunResult is read while it runs too: its status holds the progress.
        if (over || streaming)
            && let Some(result) = results_api.get_opt(&job_name).await?
        {
            match foreign_result(&result, &job, &pods) {
                None if result.spec.outcome == AttemptOutcome::Streaming => {
                    if let Some(reported) = result.status.and_then(|s| s.streaming) {
                        progress.insert(job_name.clone(), reported);
                    }
                }
                None => {
                    reports.insert(job_name.clone(), report::<K>(&result));
                    deletes.insert(job_name.clone(), result.spec.delete_tables.clone());
                }
                Some(why) => {
                    tracing::warn!(%namespace, result = %job_name, %why, "ignoring a RunResult that is not its attempt's");
                }
            }
        }
        if streaming && stale_stream(&job, object.meta().generation) {
            stale.insert(job_name.clone());
        }
        if finished_without_ttl {
            unretired.insert(job_name.clone());
        }
        jobs.insert(job_name, state);
    }
    let observed = Observed {
        now: Timestamp::now(),
        name: object.name_any(),
        uid,
        run_prefix: K::KIND.run_prefix(),
        runs: object.runs(),
        requests,
        jobs,
        reports,
        unretired,
        blocked,
        limits: object.limits(settings),
        bookmarks: object.bookmarks(),
        progress,
        stale,
    };
    let executors = Executors {
        waiting: waiting_executors,
        counts: executor_counts,
    };
    Ok((observed, deletes, executors))
}

/// What the read saw of distributed attempts' executor pods.
struct Executors {
    /// Whether one waits for its pod's IP, its executors to start or to end: look again soon.
    waiting: bool,
    /// Each distributed attempt's executor pods, by its Kubernetes Job.
    counts: BTreeMap<String, ExecutorCount>,
}

/// The Tables (object names) each attempt's report asks to delete, by the attempt's Kubernetes Job.
type TableDeletes = BTreeMap<String, Vec<String>>;

/// Deletes the Tables that the crawls this reconcile records as Succeeded found without data
/// (`deleteBehavior: DeleteFromDatabase`): the runner reports them, since its Role cannot delete
/// Tables. Only a Table labelled as this crawler's is deleted; another is left, with a warning.
/// Before the status write: an operator that stops in between deletes again (a 404 is done) when
/// it records the crawl.
async fn delete_crawled_away<K: Runnable>(
    ctx: &Context,
    namespace: &str,
    object: &K,
    before: &[RunRecord<K::Metrics>],
    after: &[RunRecord<K::Metrics>],
    deletes: &TableDeletes,
) -> Result<(), Error> {
    let name = object.name_any();
    let tables: Api<Table> = ctx.api(namespace);
    let newly_succeeded = after.iter().filter(|run| {
        run.state == RunState::Succeeded && !before.iter().any(|b| b.id == run.id && b.state == RunState::Succeeded)
    });
    for run in newly_succeeded {
        let Some(listed) = run.kubernetes_job.as_ref().and_then(|job| deletes.get(job)) else {
            continue;
        };
        for table in listed {
            // Read fresh (rare: only crawls that delete), so a Table the cache has not seen yet
            // is deleted too.
            let Some(found) = tables.get_opt(table).await? else {
                continue;
            };
            if found.labels().get(CRAWLER_LABEL) != Some(&name) {
                tracing::warn!(%namespace, crawler = %name, %table, "not deleting a Table that is not this crawler's");
                continue;
            }
            match tables.delete(table, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(%namespace, crawler = %name, %table, run = %run.id, "deleted a Table whose data disappeared")
                }
                Err(error) if is_status(&error, 404) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok(())
}

/// Why `result` is not the report of attempt `job`, if it is not: it must be owned by the
/// attempt's Kubernetes Job and name as its creator (`spec.pod`, which the chart's admission
/// policy holds to the creating token's pod) a pod of that Job: one of `pods`, the attempt's pods
/// as listed, or, once they are gone, a pod named as the Job controller names the Job's pods.
fn foreign_result(result: &RunResult, job: &BatchJob, pods: &[Pod]) -> Option<String> {
    let job_name = job.name_any();
    let job_uid = job.metadata.uid.clone().unwrap_or_default();
    let owned = result
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Job" && o.uid == job_uid);
    if !owned {
        return Some(format!("not owned by Kubernetes Job {job_name} ({job_uid})"));
    }
    let Some(pod) = &result.spec.pod else {
        return Some("no spec.pod: not created by a run's pod".into());
    };
    if !is_attempt_pod_name(&job_name, &pod.name) {
        return Some(format!("pod {} is not a pod of {job_name}", pod.name));
    }
    let listed = pods.iter().any(|p| p.metadata.uid.as_deref() == Some(pod.uid.as_str()));
    if !pods.is_empty() && !listed {
        return Some(format!("pod {} ({}) is not among {job_name}'s pods", pod.name, pod.uid));
    }
    None
}

/// Whether a Kubernetes Job has finished (condition Complete or Failed): the TTL applies to it.
fn finished(job: &BatchJob) -> bool {
    conditions_true(job, &["Complete", "Failed"])
}

fn conditions_true(job: &BatchJob, types: &[&str]) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.status == "True" && types.contains(&c.type_.as_str()))
        })
}

/// Whether a Kubernetes Job has finished or is ending (past its deadline, or suspended): then
/// its pods are read, to know whether they are gone and how the runner ended.
fn ending(job: &BatchJob) -> bool {
    let suspended = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
    suspended || conditions_true(job, &["Complete", "Failed", "FailureTarget"])
}

fn report<K: Runnable>(result: &RunResult) -> Report<K::Metrics> {
    let job = result.spec.job.as_ref();
    Report {
        outcome: result.spec.outcome,
        error: result.spec.error.clone(),
        metrics: K::metrics(result),
        next_bookmark: job.and_then(|j| j.next_bookmark.clone()),
        run_properties: job.map(|j| j.run_properties.clone()).unwrap_or_default(),
    }
}

/// What an attempt of `object` needs to know besides its launch.
async fn attempt_spec<'a, K: Runnable>(
    ctx: &Context,
    namespace: &str,
    object: &'a K,
) -> Result<AttemptSpec<'a>, Error> {
    let secrets = credentials_secrets(ctx, namespace, object).await?;
    let (worker, timeout_minutes) = object.worker();
    Ok(AttemptSpec {
        worker,
        timeout_minutes,
        secrets,
        service_account: object.service_account(),
        stream: object.stream_window().map(|window_seconds| StreamAttempt {
            window_seconds,
            generation: object.meta().generation.unwrap_or(0),
        }),
        executors: object.executors(),
    })
}

/// The object `object`'s runs belong to.
fn owner_of<K: Runnable>(namespace: &str, object: &K) -> Owner {
    Owner {
        kind: K::KIND,
        name: object.name_any(),
        namespace: namespace.to_string(),
        uid: object.meta().uid.clone().unwrap_or_default(),
    }
}

/// A distributed attempt's executor pods as [`follow_executors`] left them.
struct ExecutorPods {
    /// Their pods (ended ones too).
    pods: Vec<Pod>,
    /// Whether they wait for the attempt's pod to have an IP.
    waiting: bool,
}

/// Creates the executor pods of distributed attempt Job `driver` once its pod (`driver_pods`) has
/// an IP, deletes them once it ends (`batch::executors_step`), and returns their pods.
async fn follow_executors<K: Runnable>(
    ctx: &Context,
    namespace: &str,
    object: &K,
    driver: &BatchJob,
    driver_pods: &[Pod],
    settings: &RunnerSettings,
) -> Result<ExecutorPods, Error> {
    let jobs_api: Api<BatchJob> = ctx.api(namespace);
    let pods_api: Api<Pod> = ctx.api(namespace);
    let driver_name = driver.name_any();
    let name = executors_job_name(&driver_name);
    let exists = jobs_api.get_opt(&name).await?.is_some();
    let mut waiting = false;
    match executors_step(driver, driver_pods, ending(driver), exists) {
        ExecutorsStep::Nothing => {}
        ExecutorsStep::Wait => waiting = true,
        ExecutorsStep::Create { scheduler, workers } => {
            let spec = attempt_spec(ctx, namespace, object).await?;
            let job = build_executors(
                &owner_of(namespace, object),
                driver,
                workers,
                &scheduler,
                &spec,
                settings,
            );
            match jobs_api.create(&PostParams::default(), &job).await {
                Ok(_) => tracing::info!(%namespace, job = %name, %scheduler, workers, "executor pods created"),
                Err(error) if is_status(&error, 409) => {}
                Err(error) => return Err(error.into()),
            }
        }
        ExecutorsStep::Delete => {
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match jobs_api.delete(&name, &params).await {
                Ok(_) => {}
                Err(error) if is_status(&error, 404) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    let pods = pods_api
        .list(&ListParams::default().labels(&format!("{LABEL_EXECUTOR_OF}={driver_name}")))
        .await?
        .items;
    Ok(ExecutorPods { pods, waiting })
}

/// Creates the Kubernetes Jobs of the attempts to launch, suspends those of runs asked to stop and
/// deletes those of stopped runs.
/// Returns the runs to record: the decision's, with an attempt the API server refused to create
/// ended as Error.
async fn act<K: Runnable>(
    ctx: &Context,
    namespace: &str,
    object: &K,
    decision: &Decision<K::Metrics>,
    settings: &RunnerSettings,
) -> Result<Vec<RunRecord<K::Metrics>>, Error> {
    let mut runs = decision.runs.clone();
    let jobs_api: Api<BatchJob> = ctx.api(namespace);
    if !decision.launch.is_empty() {
        let spec = attempt_spec(ctx, namespace, object).await?;
        let owner = owner_of(namespace, object);
        for launch in &decision.launch {
            let job = build_job(&owner, launch, &spec, settings);
            match jobs_api.create(&PostParams::default(), &job).await {
                Ok(_) => {}
                // Created by an earlier reconcile whose status write did not land: the same
                // attempt, already started.
                Err(error) if is_status(&error, 409) => {}
                // A cleanup attempt follows a recorded run: its refusal changes nothing there.
                Err(kube::Error::Api(status)) if launch.settle == Some(SettleMode::Cleanup) => {
                    tracing::warn!(%namespace, job = %launch.job_name, error = %status.message, "a cleanup attempt could not be created");
                }
                Err(kube::Error::Api(status)) if (400..500).contains(&status.code) && status.code != 429 => {
                    if let Some(record) = runs
                        .iter_mut()
                        .find(|r| r.id == launch.run_id && r.attempt == launch.attempt)
                    {
                        record.state = RunState::Error;
                        record.completed_at = Some(Time(Timestamp::now()));
                        record.message = Some(cap_run_message(&format!(
                            "the Kubernetes Job {} could not be created: {}",
                            launch.job_name, status.message
                        )));
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
    for job_name in &decision.suspend {
        let patch = Patch::Merge(json!({"spec": {"suspend": true}}));
        match jobs_api.patch(job_name, &PatchParams::default(), &patch).await {
            Ok(_) => {}
            Err(error) if is_status(&error, 404) => {}
            Err(error) => return Err(error.into()),
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
    Ok(runs)
}

/// Gives the finished Kubernetes Jobs of recorded runs their TTL (`--run-ttl-seconds`): from
/// now on they, their pods and their RunResults may go. Only after the status write: a Job
/// retired before its run is recorded could vanish with the only record of how it ended.
async fn retire(ctx: &Context, namespace: &str, jobs: &[String], settings: &RunnerSettings) -> Result<(), Error> {
    let api: Api<BatchJob> = ctx.api(namespace);
    let patch = Patch::Merge(json!({"spec": {"ttlSecondsAfterFinished": settings.ttl_seconds}}));
    for name in jobs {
        match api.patch(name, &PatchParams::default(), &patch).await {
            Ok(_) => {}
            Err(error) if is_status(&error, 404) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// The credentials Secrets of the Connections a run of `object` reaches data through.
async fn credentials_secrets<K: Runnable>(
    ctx: &Context,
    namespace: &str,
    object: &K,
) -> Result<Vec<SecretKeyUse>, Error> {
    let cached_tables = if K::READS_TABLES {
        ctx.informers.tables.in_namespace(namespace)
    } else {
        Vec::new()
    };
    let tables: Vec<&Table> = cached_tables.iter().filter_map(|guard| guard.0.as_ref().ok()).collect();
    consenting_secrets(ctx, namespace, object.connections(&tables)).await
}

/// The Secret keys the Connections `connections` (names in `namespace`) read, from those Secrets
/// that consent to being used by Connections: what a run's or a session's pod mounts. A
/// Connection not in the shared cache is skipped (the object referring to it is Stalled, or will
/// be).
pub async fn consenting_secrets(
    ctx: &Context,
    namespace: &str,
    mut connections: Vec<String>,
) -> Result<Vec<SecretKeyUse>, Error> {
    connections.sort();
    connections.dedup();
    let secrets_api: Api<Secret> = ctx.api(namespace);
    let mut secrets = Vec::new();
    for name in &connections {
        // The shared cache: the Connection's spec as the last watch event had it.
        let Some(guard) = ctx.informers.connections.get(namespace, name) else {
            continue;
        };
        let Ok(connection) = &guard.0 else { continue };
        let uses = connection.spec.secret_keys();
        let names: std::collections::BTreeSet<&str> = uses.iter().map(|u| u.secret.as_str()).collect();
        for secret in names {
            // Only a Secret that lets Connections use it is mounted (its labels, never its
            // values, are read): a Connection cannot hand any Secret of the namespace to its
            // endpoint.
            let consents = secrets_api
                .get_metadata_opt(secret)
                .await?
                .is_some_and(|meta| secret_consents(meta.metadata.labels.as_ref()));
            if consents {
                secrets.extend(uses.iter().filter(|u| u.secret == secret).cloned());
            } else {
                tracing::warn!(%namespace, connection = %name, %secret, "not mounting a Secret without the consent label");
            }
        }
    }
    Ok(secrets)
}

/// A streaming Job's `status.streaming`: what the newest attempt that reported said last
/// (`reported`, by Kubernetes Job name), or what status shows when no attempt reports now. An
/// attempt that ended without saying so (killed) is shown as its run record ended. Pure.
pub fn stream_status<M>(
    shown: Option<&StreamProgress>,
    runs: &[RunRecord<M>],
    reported: &BTreeMap<String, StreamProgress>,
) -> Option<StreamProgress> {
    let found = runs.iter().find_map(|run| {
        let progress = reported.get(run.kubernetes_job.as_deref()?)?;
        Some((run, progress.clone()))
    });
    let Some((run, mut progress)) = found else {
        return shown.cloned();
    };
    let said_it_ended = matches!(progress.state, StreamState::Stopped | StreamState::Failed);
    if run.state.is_final() && !said_it_ended {
        progress.state = if run.state == RunState::Stopped {
            StreamState::Stopped
        } else {
            StreamState::Failed
        };
        progress.message = run.message.clone();
        progress.since = run.completed_at.as_ref().map(|t| MicroTime(t.0));
    }
    Some(progress)
}

/// What status shows besides the runs and the bookmark.
struct Shown<'a> {
    /// The schedule's next tick.
    tick: &'a Tick,
    /// A streaming Job's `status.streaming`.
    streaming: Option<StreamProgress>,
}

/// Records the decision: one status write for the history, the bookmark, the next tick and a
/// stream's progress, conditional on what was read; then the handled requests' annotations go,
/// and metrics, Events and logs follow.
async fn record<K: Runnable>(
    ctx: &Context,
    api: &Api<K>,
    object: &K,
    before: &[RunRecord<K::Metrics>],
    runs: &[RunRecord<K::Metrics>],
    decision: &Decision<K::Metrics>,
    shown: Shown<'_>,
) -> Result<(), Error> {
    let Shown { tick, streaming } = shown;
    let stream_changed = streaming.as_ref() != object.stream_progress();
    if runs != before || decision.bookmarks.is_some() || tick.changed || stream_changed {
        let mut status = serde_json::Map::new();
        status.insert("runs".into(), json!(runs));
        if let Some(streaming) = streaming {
            status.insert("streaming".into(), json!(streaming));
        }
        if let (false, Some(next)) = (tick.field.is_empty(), tick.next) {
            status.insert(tick.field.into(), json!(Time(next)));
        }
        if let Some(state) = decision.bookmarks.clone().or_else(|| object.bookmarks()) {
            if let Some(current) = &state.current {
                status.insert("bookmark".into(), json!(current));
            }
            if !state.history.is_empty() {
                status.insert("bookmarkHistory".into(), json!(state.history));
            }
        }
        apply_status(api, object, RUNS_MANAGER, Value::Object(status)).await?;
    }
    let name = object.name_any();
    remove_annotations(api, &name, &decision.handled).await?;

    let kind = K::KIND.as_str();
    for (state, seconds) in &decision.finished {
        ctx.metrics.run_finished(kind, &format!("{state:?}"), *seconds);
    }
    publish(ctx, &object.object_ref(&()), &decision.events, "Run").await;
    let namespace = object.namespace().unwrap_or_default();
    for record in runs.iter().filter(|r| !before.contains(r)) {
        tracing::info!(%kind, %name, %namespace, run = %record.id, attempt = record.attempt, state = ?record.state, "run");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    use super::*;

    fn job(conditions: &[(&str, &str)]) -> BatchJob {
        BatchJob {
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(type_, status)| JobCondition {
                            type_: type_.to_string(),
                            status: status.to_string(),
                            ..JobCondition::default()
                        })
                        .collect(),
                ),
                ..JobStatus::default()
            }),
            ..BatchJob::default()
        }
    }

    #[test]
    fn status_streaming_shows_the_newest_reporting_attempt_and_an_unsaid_end() {
        let record = |attempt: i32, state: RunState, job: &str| RunRecord::<()> {
            id: "jr-1".into(),
            attempt,
            request_id: None,
            started_by: kglue_crds::common::StartedBy {
                kind: kglue_crds::common::StartedByKind::Manual,
                name: None,
            },
            arguments: BTreeMap::new(),
            state,
            started_at: None,
            completed_at: Some(Time(Timestamp::from_second(1_800_000_000).expect("valid"))),
            duration_seconds: None,
            not_before: None,
            kubernetes_job: Some(job.into()),
            settle_attempts: None,
            failures_in_a_row: None,
            message: Some("the attempt's pod ended: exit code 137".into()),
            metrics: None,
            executors: None,
            run_properties: BTreeMap::new(),
        };
        let progress = |attempt: i32, state: StreamState| StreamProgress {
            attempt,
            state,
            batches: 3,
            ..StreamProgress::default()
        };
        let shown = progress(0, StreamState::Running);
        // Nothing reports: status stays as shown.
        assert_eq!(
            stream_status(Some(&shown), &[record(0, RunState::Running, "a0")], &BTreeMap::new()),
            Some(shown.clone())
        );
        // The newest attempt that reports wins.
        let reported = BTreeMap::from([
            ("a0".to_string(), progress(0, StreamState::Failed)),
            ("a1".to_string(), progress(1, StreamState::Outage)),
        ]);
        let runs = [record(1, RunState::Running, "a1"), record(0, RunState::Failed, "a0")];
        assert_eq!(
            stream_status(None, &runs, &reported).map(|p| (p.attempt, p.state)),
            Some((1, StreamState::Outage))
        );
        // Killed before it could say so: shown as its run record ended.
        let killed = [record(1, RunState::Failed, "a1")];
        let status = stream_status(None, &killed, &reported).expect("a status");
        assert_eq!(status.state, StreamState::Failed);
        assert_eq!(
            status.message.as_deref(),
            Some("the attempt's pod ended: exit code 137")
        );
        assert_eq!(status.batches, 3, "its figures stay");
    }

    #[test]
    fn a_job_is_ending_by_a_true_final_condition() {
        assert!(!ending(&job(&[])));
        assert!(!ending(&job(&[("Complete", "False")])));
        assert!(ending(&job(&[("Complete", "True")])));
        assert!(ending(&job(&[("FailureTarget", "True")])));
        assert!(matches!(
            attempt_state(&job(&[("Complete", "True")]), &[]),
            AttemptJob::Complete
        ));
    }

    fn result(owner_uid: &str, pod: Option<(&str, &str)>) -> RunResult {
        let mut result: RunResult = serde_json::from_value(json!({
            "apiVersion": "kglue.dev/v1alpha1", "kind": "RunResult",
            "metadata": {"name": "etl-jr-0123456789-0", "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "etl-jr-0123456789-0", "uid": owner_uid}]},
            "spec": {"ownerKind": "Job", "ownerName": "etl", "runId": "jr-0123456789", "attempt": 0,
                     "outcome": "Succeeded"}
        }))
        .expect("a RunResult");
        result.spec.pod = pod.map(|(name, uid)| kglue_crds::run_result::ReportingPod {
            name: name.into(),
            uid: uid.into(),
        });
        result
    }

    fn pod(name: &str, uid: &str) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn a_result_counts_only_from_one_of_the_attempts_own_pods() {
        let mut attempt = job(&[("Complete", "True")]);
        attempt.metadata.name = Some("etl-jr-0123456789-0".into());
        attempt.metadata.uid = Some("job-uid".into());
        let pods = [pod("etl-jr-0123456789-0-x7k2q", "pod-uid")];
        let own = result("job-uid", Some(("etl-jr-0123456789-0-x7k2q", "pod-uid")));
        assert_eq!(foreign_result(&own, &attempt, &pods), None);
        // Its pods gone: the name alone, as the admission policy checked it.
        assert_eq!(foreign_result(&own, &attempt, &[]), None);

        let why = |result: &RunResult, pods: &[Pod]| foreign_result(result, &attempt, pods).unwrap_or_default();
        assert!(
            why(
                &result("other-uid", Some(("etl-jr-0123456789-0-x7k2q", "pod-uid"))),
                &pods
            )
            .contains("not owned")
        );
        assert!(why(&result("job-uid", None), &pods).contains("no spec.pod"));
        // Another attempt's pod, and a pod of that name that is not the attempt's.
        assert!(
            why(
                &result("job-uid", Some(("etl-jr-0123456789-1-x7k2q", "pod-uid"))),
                &pods
            )
            .contains("is not a pod of etl-jr-0123456789-0")
        );
        assert!(
            why(
                &result("job-uid", Some(("etl-jr-0123456789-0-aaaaa", "other-pod"))),
                &pods
            )
            .contains("is not among")
        );
    }
}
