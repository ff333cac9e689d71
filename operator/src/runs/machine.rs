//! The run state machine: from what the operator observed (the run history in status, the
//! requests in annotations, the Kubernetes Jobs of the attempts and the runners' reports) to what
//! it must do (create or delete Kubernetes Jobs) and the new history and bookmark. Pure, so every
//! transition is unit-tested without a cluster; `super::reconcile_runs` does the I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kglue_crds::common::{RunRecord, RunState};
use kglue_crds::job::{BookmarkHistoryEntry, JobBookmark};
use kglue_crds::run_result::AttemptOutcome;

use super::request::{BookmarkRequest, Requests, attempt_job_name, run_id};

/// How many replaced bookmarks `status.bookmarkHistory` keeps.
pub const BOOKMARK_HISTORY: usize = 10;

/// The longest a retry waits.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(300);

/// What the Kubernetes Job of an attempt is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptJob {
    /// Created; no pod running yet.
    Pending,
    /// A pod is running.
    Running,
    /// Finished successfully (condition Complete).
    Complete,
    /// Finished unsuccessfully (condition Failed).
    Failed {
        /// The condition's reason (`DeadlineExceeded` for a timeout).
        reason: String,
        /// What the pod said: exit code, reason, termination message.
        detail: String,
    },
}

/// What a runner reported for an attempt (its RunResult, owner checked).
#[derive(Clone, Debug, PartialEq)]
pub struct Report<M> {
    /// Succeeded or Failed.
    pub outcome: AttemptOutcome,
    /// The error of a failed attempt.
    pub error: Option<String>,
    /// The attempt's figures.
    pub metrics: Option<M>,
    /// The bookmark to commit (Jobs with bookmark option Enable).
    pub next_bookmark: Option<JobBookmark>,
    /// The run properties a Job run set.
    pub run_properties: BTreeMap<String, String>,
}

/// The bookmark part of a Job's status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bookmarks {
    /// Whether runs read from a bookmark (option Enable or Pause): then they run one at a time.
    pub serialize: bool,
    /// The committed bookmark.
    pub current: Option<JobBookmark>,
    /// Replaced bookmarks, newest first.
    pub history: Vec<BookmarkHistoryEntry>,
}

/// The limits of the object's spec and the operator's settings.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `maxConcurrentRuns` (1 for Crawlers).
    pub max_concurrent: usize,
    /// `maxRetries` (0 for Crawlers).
    pub max_retries: i32,
    /// `runHistoryLimit`.
    pub history: usize,
    /// The first retry's delay; each further retry doubles it.
    pub retry_backoff: Duration,
    /// `timeoutMinutes`, for the Timeout message.
    pub timeout_minutes: i32,
}

/// Everything the decision depends on.
#[derive(Clone, Debug)]
pub struct Observed<M> {
    /// The current time.
    pub now: Timestamp,
    /// The object's name and UID (run ids and Kubernetes Job names derive from them).
    pub name: String,
    /// The object's UID.
    pub uid: String,
    /// `jr-` or `cr-`.
    pub run_prefix: &'static str,
    /// `status.runs`, newest first.
    pub runs: Vec<RunRecord<M>>,
    /// The requests in the annotations.
    pub requests: Requests,
    /// The Kubernetes Jobs of attempts, by name.
    pub jobs: BTreeMap<String, AttemptJob>,
    /// Reports of finished attempts, by Kubernetes Job name.
    pub reports: BTreeMap<String, Report<M>>,
    /// Why runs cannot start now (the object is Stalled), if so.
    pub blocked: Option<String>,
    /// The limits.
    pub limits: Limits,
    /// The bookmark state (Jobs only).
    pub bookmarks: Option<Bookmarks>,
}

/// Something worth a Kubernetes Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunEvent {
    /// Whether it is a Warning.
    pub warning: bool,
    /// CamelCase reason: RunStarted, RunSucceeded, RunFailed, RunTimeout, RunStopped, RunRetrying,
    /// RunError, BookmarkReset, BookmarkRewound, BookmarkRefused.
    pub reason: &'static str,
    /// What happened.
    pub note: String,
}

/// An attempt to start: its Kubernetes Job's name and the record it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    /// The Kubernetes Job's name.
    pub job_name: String,
    /// The run id.
    pub run_id: String,
    /// The attempt.
    pub attempt: i32,
    /// The run's arguments.
    pub arguments: BTreeMap<String, String>,
}

/// What to do.
#[derive(Clone, Debug)]
pub struct Decision<M> {
    /// The new `status.runs`, newest first.
    pub runs: Vec<RunRecord<M>>,
    /// Kubernetes Jobs to create.
    pub launch: Vec<Launch>,
    /// Kubernetes Jobs to delete (stopped runs).
    pub delete: Vec<String>,
    /// The new bookmark state, when it changed.
    pub bookmarks: Option<Bookmarks>,
    /// Annotations whose requests are now recorded in `runs` (or refused), to remove.
    pub handled: Vec<String>,
    /// Events to publish.
    pub events: Vec<RunEvent>,
    /// When to look again without a watch event (a retry's backoff).
    pub requeue_after: Option<Duration>,
    /// Runs that reached a final state in this decision, with their duration, for the metrics.
    pub finished: Vec<(RunState, f64)>,
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn active(state: RunState) -> bool {
    matches!(state, RunState::Starting | RunState::Running | RunState::Stopping)
}

/// The delay before retry `attempt` (1 for the first retry): `base`, doubling, capped.
pub fn retry_delay(base: Duration, attempt: i32) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 16)).unwrap_or(0);
    base.saturating_mul(1u32 << exponent).min(MAX_RETRY_BACKOFF)
}

fn finish<M>(record: &mut RunRecord<M>, state: RunState, message: Option<String>, now: Timestamp) -> f64 {
    record.state = state;
    if message.is_some() {
        record.message = message;
    }
    record.completed_at = Some(time(now));
    let seconds = record
        .started_at
        .as_ref()
        .map(|started| now.duration_since(started.0).as_secs_f64().max(0.0))
        .unwrap_or(0.0);
    record.duration_seconds = Some((seconds * 1000.0).round() / 1000.0);
    seconds
}

/// Decides. Pure.
pub fn decide<M: Clone>(observed: Observed<M>) -> Decision<M> {
    let Observed {
        now,
        name,
        uid,
        run_prefix,
        mut runs,
        requests,
        jobs,
        mut reports,
        blocked,
        limits,
        bookmarks,
    } = observed;
    let mut decision = Decision {
        runs: Vec::new(),
        launch: Vec::new(),
        delete: Vec::new(),
        bookmarks: None,
        handled: Vec::new(),
        events: Vec::new(),
        requeue_after: None,
        finished: Vec::new(),
    };
    let mut bookmark_state = bookmarks.clone();
    let stops: std::collections::BTreeSet<&str> = requests.stops.iter().map(|(_, run)| run.as_str()).collect();

    // 1. New start requests become Waiting runs (or Error runs when unreadable). A request whose
    //    run is already recorded was handled before the operator could remove its annotation.
    for request in &requests.starts {
        decision.handled.push(request.annotation.clone());
        if runs.iter().any(|r| r.request_id.as_deref() == Some(&request.id)) {
            continue;
        }
        let id = run_id(run_prefix, &uid, &request.id);
        let body = request.body.clone();
        let (started_by, arguments) = match &body {
            Ok(body) => (body.started_by.clone(), body.arguments.clone()),
            Err(_) => (super::request::StartBody::default().started_by, BTreeMap::new()),
        };
        let mut record = RunRecord {
            id: id.clone(),
            attempt: 0,
            request_id: Some(request.id.clone()),
            started_by,
            arguments,
            state: RunState::Waiting,
            started_at: Some(time(now)),
            completed_at: None,
            duration_seconds: None,
            not_before: None,
            kubernetes_job: None,
            message: None,
            metrics: None,
            run_properties: BTreeMap::new(),
        };
        if let Err(message) = body {
            end(&mut decision, &mut record, RunState::Error, message, now);
        }
        runs.insert(0, record);
    }

    // 2. Advance every active or waiting attempt from what its Kubernetes Job and report say.
    let mut retries: Vec<RunRecord<M>> = Vec::new();
    for record in runs.iter_mut().filter(|r| !r.state.is_final()) {
        let job_name = attempt_job_name(&name, &record.id, record.attempt);
        let stop = stops.contains(record.id.as_str());
        let job = jobs.get(&job_name);
        match (record.state, job) {
            (RunState::Waiting, None) if stop => {
                end(
                    &mut decision,
                    record,
                    RunState::Stopped,
                    "stopped before it started".into(),
                    now,
                );
            }
            (RunState::Waiting, None) => {}
            (RunState::Stopping, None) => {
                end(
                    &mut decision,
                    record,
                    RunState::Stopped,
                    "stopped on request".into(),
                    now,
                );
            }
            (_, None) => {
                let message = format!(
                    "the Kubernetes Job {job_name} was deleted before the attempt finished; the run's outputs were not committed"
                );
                end(&mut decision, record, RunState::Error, message, now);
            }
            (_, Some(AttemptJob::Pending | AttemptJob::Running)) if stop || record.state == RunState::Stopping => {
                // An attempt that already finished is recorded as it ended instead: a completed
                // one has committed its outputs, so its bookmark must be committed too.
                record.state = RunState::Stopping;
                record.kubernetes_job = Some(job_name.clone());
                decision.delete.push(job_name);
            }
            (_, Some(AttemptJob::Pending)) => {
                record.state = RunState::Starting;
                record.kubernetes_job = Some(job_name);
            }
            (_, Some(AttemptJob::Running)) => {
                record.state = RunState::Running;
                record.kubernetes_job = Some(job_name);
            }
            (_, Some(AttemptJob::Complete)) => {
                record.kubernetes_job = Some(job_name.clone());
                match reports.remove(&job_name) {
                    Some(report) if report.outcome == AttemptOutcome::Succeeded => {
                        record.metrics = report.metrics;
                        record.run_properties = report.run_properties;
                        let seconds = finish(record, RunState::Succeeded, None, now);
                        decision.finished.push((RunState::Succeeded, seconds));
                        if let (Some(state), Some(next)) = (bookmark_state.as_mut(), report.next_bookmark) {
                            let replaced = state.current.take();
                            state.history.insert(
                                0,
                                BookmarkHistoryEntry {
                                    run_id: record.id.clone(),
                                    bookmark: replaced,
                                },
                            );
                            state.history.truncate(BOOKMARK_HISTORY);
                            state.current = Some(JobBookmark {
                                run_id: Some(record.id.clone()),
                                committed_at: Some(time(now)),
                                ..next
                            });
                        }
                        decision.events.push(RunEvent {
                            warning: false,
                            reason: "RunSucceeded",
                            note: format!(
                                "run {} attempt {} succeeded in {:.1} s",
                                record.id, record.attempt, seconds
                            ),
                        });
                    }
                    Some(report) => {
                        record.metrics = report.metrics;
                        let message = report.error.unwrap_or_else(|| "the runner reported a failure".into());
                        fail(record, message, &limits, now, &mut decision, &mut retries);
                    }
                    None => {
                        let message = "the runner exited successfully without reporting a result (no RunResult); nothing of this attempt is committed".to_string();
                        fail(record, message, &limits, now, &mut decision, &mut retries);
                    }
                }
            }
            (_, Some(AttemptJob::Failed { reason, detail })) => {
                record.kubernetes_job = Some(job_name.clone());
                let report = reports.remove(&job_name);
                if reason == "DeadlineExceeded" {
                    let message = format!(
                        "ran past timeoutMinutes ({} min); the attempt was stopped",
                        limits.timeout_minutes
                    );
                    record.metrics = report.and_then(|r| r.metrics);
                    end(&mut decision, record, RunState::Timeout, message, now);
                    continue;
                }
                let message = match report {
                    Some(report) => {
                        record.metrics = report.metrics;
                        report.error.unwrap_or_else(|| detail.clone())
                    }
                    None => format!("the runner ended without reporting a result: {detail}"),
                };
                fail(record, message, &limits, now, &mut decision, &mut retries);
            }
        }
    }
    for retry in retries.into_iter().rev() {
        runs.insert(0, retry);
    }

    // 3. Stop requests for runs that are final or unknown are done.
    for (key, run) in &requests.stops {
        decision.handled.push(key.clone());
        if !runs.iter().any(|r| &r.id == run) {
            decision.events.push(RunEvent {
                warning: true,
                reason: "RunError",
                note: format!("{key}: there is no run {run} in the history"),
            });
        }
    }

    // 4. Start waiting runs, oldest first, while the concurrency limit allows.
    let limit = match &bookmark_state {
        Some(state) if state.serialize => 1,
        _ => limits.max_concurrent.max(1),
    };
    let mut running = runs.iter().filter(|r| active(r.state)).count();
    let mut next_check: Option<Duration> = None;
    for record in runs.iter_mut().rev().filter(|r| r.state == RunState::Waiting) {
        if let Some(reason) = &blocked {
            end(
                &mut decision,
                record,
                RunState::Error,
                format!("not started: {reason}"),
                now,
            );
            continue;
        }
        if let Some(not_before) = &record.not_before {
            let wait = not_before.0.duration_since(now);
            if wait > SignedDuration::ZERO {
                let wait = Duration::from_secs_f64(wait.as_secs_f64());
                next_check = Some(next_check.map_or(wait, |n| n.min(wait)));
                continue;
            }
        }
        if running >= limit {
            record.message = Some(format!(
                "waiting: {running} run(s) active, the limit is {limit}{}",
                if limit == 1 && limits.max_concurrent > 1 {
                    " (runs that read a bookmark run one at a time)"
                } else {
                    ""
                }
            ));
            continue;
        }
        running += 1;
        let job_name = attempt_job_name(&name, &record.id, record.attempt);
        record.state = RunState::Starting;
        record.not_before = None;
        record.message = None;
        record.kubernetes_job = Some(job_name.clone());
        decision.events.push(RunEvent {
            warning: false,
            reason: "RunStarted",
            note: format!(
                "run {} attempt {} started as Kubernetes Job {job_name}",
                record.id, record.attempt
            ),
        });
        decision.launch.push(Launch {
            job_name,
            run_id: record.id.clone(),
            attempt: record.attempt,
            arguments: record.arguments.clone(),
        });
    }
    decision.requeue_after = next_check;

    // 5. Bookmark requests, refused while a run is active.
    if let (Some((key, request)), Some(state)) = (&requests.bookmark, bookmark_state.as_mut()) {
        decision.handled.push(key.clone());
        if runs.iter().any(|r| active(r.state)) {
            decision.events.push(RunEvent {
                warning: true,
                reason: "BookmarkRefused",
                note: format!("{key}: refused while a run is active; stop it or wait, then ask again"),
            });
        } else {
            match request {
                BookmarkRequest::Reset => {
                    state.current = None;
                    decision.events.push(RunEvent {
                        warning: false,
                        reason: "BookmarkReset",
                        note: "the bookmark was reset: the next run reads every object".into(),
                    });
                }
                BookmarkRequest::Rewind(run) => {
                    let position = match run {
                        Some(run) => state.history.iter().position(|e| &e.run_id == run),
                        None => (!state.history.is_empty()).then_some(0),
                    };
                    match position {
                        Some(index) => {
                            let entry = state.history[index].clone();
                            state.current = entry.bookmark;
                            state.history.drain(..=index);
                            decision.events.push(RunEvent {
                                warning: false,
                                reason: "BookmarkRewound",
                                note: format!(
                                    "the bookmark was rewound to the one run {} started from",
                                    entry.run_id
                                ),
                            });
                        }
                        None => decision.events.push(RunEvent {
                            warning: true,
                            reason: "BookmarkRefused",
                            note: format!(
                                "{key}: {} is not in status.bookmarkHistory (the last {BOOKMARK_HISTORY} committing runs)",
                                run.as_deref().unwrap_or("an earlier run")
                            ),
                        }),
                    }
                }
            }
        }
    }

    // 6. Bound the history: the newest final runs up to the limit; active runs always stay.
    let mut kept_final = 0;
    runs.retain(|r| {
        if !r.state.is_final() {
            return true;
        }
        kept_final += 1;
        kept_final <= limits.history
    });
    decision.runs = runs;
    if bookmark_state != bookmarks {
        decision.bookmarks = bookmark_state;
    }
    decision
}

/// Ends `record` in a final `state` other than Succeeded or Failed, counts it and publishes its
/// Event (`RunStopped`, `RunTimeout` or `RunError`).
fn end<M>(decision: &mut Decision<M>, record: &mut RunRecord<M>, state: RunState, message: String, now: Timestamp) {
    let seconds = finish(record, state, Some(message.clone()), now);
    decision.finished.push((state, seconds));
    let (warning, reason) = match state {
        RunState::Stopped => (false, "RunStopped"),
        RunState::Timeout => (true, "RunTimeout"),
        _ => (true, "RunError"),
    };
    decision.events.push(RunEvent {
        warning,
        reason,
        note: format!("run {} attempt {}: {message}", record.id, record.attempt),
    });
}

/// Records a failed attempt and, when retries remain, queues the next one.
fn fail<M: Clone>(
    record: &mut RunRecord<M>,
    message: String,
    limits: &Limits,
    now: Timestamp,
    decision: &mut Decision<M>,
    retries: &mut Vec<RunRecord<M>>,
) {
    let seconds = finish(record, RunState::Failed, Some(message.clone()), now);
    decision.finished.push((RunState::Failed, seconds));
    if record.attempt < limits.max_retries {
        let attempt = record.attempt + 1;
        let delay = retry_delay(limits.retry_backoff, attempt);
        let not_before = now
            .checked_add(SignedDuration::from_secs_f64(delay.as_secs_f64()))
            .unwrap_or(now);
        decision.events.push(RunEvent {
            warning: true,
            reason: "RunRetrying",
            note: format!(
                "run {} attempt {} failed: {message}; attempt {attempt} of {} starts in {} s",
                record.id,
                record.attempt,
                limits.max_retries,
                delay.as_secs()
            ),
        });
        retries.push(RunRecord {
            attempt,
            state: RunState::Waiting,
            started_at: Some(time(now)),
            completed_at: None,
            duration_seconds: None,
            not_before: Some(time(not_before)),
            kubernetes_job: None,
            message: Some(format!("retry {attempt} of {} after: {message}", limits.max_retries)),
            metrics: None,
            ..record.clone()
        });
    } else {
        decision.events.push(RunEvent {
            warning: true,
            reason: "RunFailed",
            note: format!("run {} attempt {} failed: {message}", record.id, record.attempt),
        });
    }
}

#[cfg(test)]
mod tests;
