//! The run state machine: from what the operator observed (the run history in status, the
//! requests in annotations, the Kubernetes Jobs of the attempts and the runners' reports) to what
//! it must do (create or delete Kubernetes Jobs) and the new history and bookmark. Pure, so every
//! transition is unit-tested without a cluster; `super::reconcile_runs` does the I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kglue_crds::common::{RunRecord, RunState, cap_run_message};
use kglue_crds::job::{BookmarkHistoryEntry, JobBookmark, StreamProgress};
use kglue_crds::run_result::AttemptOutcome;

use kglue_crds::protocol::attempt::SettleMode;
use kglue_crds::protocol::ids::{attempt_job_name, cleanup_job_name, run_id, settle_job_name};
use kglue_crds::protocol::requests::{BookmarkRequest, Requests, StartBody};

use crate::writes::Notice;

mod stream;

/// How many replaced bookmarks `status.bookmarkHistory` keeps.
pub const BOOKMARK_HISTORY: usize = 10;

/// The longest a retry waits.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(300);

/// How many settle attempts may try to finish a decided commit before the run ends in Error.
pub const MAX_SETTLE_ATTEMPTS: i32 = 3;

/// What the Kubernetes Job of an attempt is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptJob {
    /// Created; no pod running yet.
    Pending,
    /// A pod is running.
    Running,
    /// Finished successfully (condition Complete).
    Complete,
    /// Suspended to stop its run, and drained: no pod of it runs any more.
    Suspended,
    /// Finished unsuccessfully (condition Failed; its pods have ended).
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
    /// Succeeded, Failed, or Committing (a Job run decided to commit: its outputs are, or will
    /// be, in place; the attempt's Job completing says the commit is finished).
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
    /// Whether a sink replaces data (Overwrite, OverwritePartitions): then runs go one at a time,
    /// since two replacing commits at one location would delete each other's files.
    pub replaces_data: bool,
    /// Whether runs stage outputs (a Job with sinks): an attempt that ends without deciding to
    /// commit, with no retry to clean up after it, gets a cleanup attempt.
    pub stages_outputs: bool,
    /// Whether runs are streams (a Job with `spec.streaming`): one at a time, each a long-lived
    /// attempt restarted until stopped ([`stream`]).
    pub streaming: bool,
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
    /// Finished Kubernetes Jobs of attempts that have no TTL yet (set once their run is recorded).
    pub unretired: BTreeSet<String>,
    /// Why runs cannot start now (the object is Stalled), if so.
    pub blocked: Option<String>,
    /// The limits.
    pub limits: Limits,
    /// The bookmark state (Jobs only).
    pub bookmarks: Option<Bookmarks>,
    /// Streaming runs: what each attempt's runner last reported (its RunResult's
    /// `status.streaming`), by Kubernetes Job name.
    pub progress: BTreeMap<String, StreamProgress>,
    /// Streaming runs: the attempts' Kubernetes Jobs built for an older generation of the object
    /// (a spec change rolls them).
    pub stale: BTreeSet<String>,
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
    /// For a settle attempt, what it does for attempt `attempt`.
    pub settle: Option<SettleMode>,
}

/// What to do.
#[derive(Clone, Debug)]
pub struct Decision<M> {
    /// The new `status.runs`, newest first.
    pub runs: Vec<RunRecord<M>>,
    /// Kubernetes Jobs to create.
    pub launch: Vec<Launch>,
    /// Kubernetes Jobs to suspend (runs asked to stop): their pods go, the Jobs and their
    /// RunResults stay, so a commit decided before the stop is still seen and finished.
    pub suspend: Vec<String>,
    /// Kubernetes Jobs to delete (suspended attempts of runs now recorded as stopped).
    pub delete: Vec<String>,
    /// Finished Kubernetes Jobs whose runs are recorded: once the status is written, they get
    /// their TTL and go with their RunResults when it passes.
    pub retire: Vec<String>,
    /// The new bookmark state, when it changed.
    pub bookmarks: Option<Bookmarks>,
    /// Annotations whose requests are now recorded in `runs` (or refused), to remove.
    pub handled: Vec<String>,
    /// Events to publish.
    pub events: Vec<Notice>,
    /// When to look again without a watch event (a retry's backoff).
    pub requeue_after: Option<Duration>,
    /// Runs that reached a final state in this decision, with their duration, for the metrics.
    pub finished: Vec<(RunState, f64)>,
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn active(state: RunState) -> bool {
    matches!(
        state,
        RunState::Starting | RunState::Running | RunState::Stopping | RunState::Settling
    )
}

/// `delay` after `now` (a retry's `notBefore`).
fn after(now: Timestamp, delay: Duration) -> Timestamp {
    now.checked_add(SignedDuration::from_secs_f64(delay.as_secs_f64()))
        .unwrap_or(now)
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

/// The Kubernetes Jobs the runs in `runs` that are not final still follow: each one's attempt and
/// its settle attempts. Only these are read in full (pods, RunResult); the others are recorded.
pub fn followed_jobs<M>(object: &str, runs: &[RunRecord<M>]) -> BTreeSet<String> {
    runs.iter()
        .filter(|r| !r.state.is_final())
        .flat_map(|r| {
            let settles = (0..r.settle_attempts.unwrap_or(0)).map(|n| settle_job_name(object, &r.id, r.attempt, n));
            std::iter::once(attempt_job_name(object, &r.id, r.attempt)).chain(settles)
        })
        .collect()
}

/// Decides. Pure. One step per method of [`Machine`], in this order.
pub fn decide<M: Clone>(observed: Observed<M>) -> Decision<M> {
    let mut machine = Machine::new(observed);
    machine.take_start_requests();
    machine.advance_attempts();
    machine.answer_stop_requests();
    machine.start_waiting_runs();
    machine.answer_bookmark_request();
    machine.bound_history();
    machine.retire_recorded_attempts();
    machine.into_decision()
}

/// The decision in the making: what was observed, the runs as they change, and what to do.
struct Machine<M> {
    observed: Observed<M>,
    /// The bookmark state as it changes (Jobs only).
    bookmark_state: Option<Bookmarks>,
    /// Retries queued by failed attempts, oldest first.
    retries: Vec<RunRecord<M>>,
    decision: Decision<M>,
}

impl<M: Clone> Machine<M> {
    fn new(observed: Observed<M>) -> Self {
        Machine {
            bookmark_state: observed.bookmarks.clone(),
            observed,
            retries: Vec::new(),
            decision: Decision {
                runs: Vec::new(),
                launch: Vec::new(),
                suspend: Vec::new(),
                delete: Vec::new(),
                retire: Vec::new(),
                bookmarks: None,
                handled: Vec::new(),
                events: Vec::new(),
                requeue_after: None,
                finished: Vec::new(),
            },
        }
    }

    fn now(&self) -> Timestamp {
        self.observed.now
    }

    /// 1. New start requests become Waiting runs (or Error runs when unreadable). A request whose
    ///    run is already recorded was handled before the operator could remove its annotation.
    fn take_start_requests(&mut self) {
        let now = self.now();
        let starts = std::mem::take(&mut self.observed.requests.starts);
        for request in starts {
            self.decision.handled.push(request.annotation.clone());
            if self
                .observed
                .runs
                .iter()
                .any(|r| r.request_id.as_deref() == Some(&request.id))
            {
                continue;
            }
            let id = run_id(self.observed.run_prefix, &self.observed.uid, &request.id);
            let (started_by, arguments) = match &request.body {
                Ok(body) => (body.started_by.clone(), body.arguments.clone()),
                Err(_) => (StartBody::default().started_by, BTreeMap::new()),
            };
            let mut record = RunRecord {
                id,
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
                settle_attempts: None,
                failures_in_a_row: None,
                message: None,
                metrics: None,
                executors: None,
                run_properties: BTreeMap::new(),
            };
            if let Err(message) = request.body {
                self.end(&mut record, RunState::Error, message);
            }
            self.observed.runs.insert(0, record);
        }
    }

    /// 2. Advances every active or waiting attempt from what its Kubernetes Job and report say;
    ///    failed attempts with retries left queue their next attempt.
    fn advance_attempts(&mut self) {
        let mut runs = std::mem::take(&mut self.observed.runs);
        for record in runs.iter_mut().filter(|r| !r.state.is_final()) {
            self.advance(record);
        }
        for retry in std::mem::take(&mut self.retries).into_iter().rev() {
            runs.insert(0, retry);
        }
        self.observed.runs = runs;
    }

    fn stop_asked(&self, run: &str) -> bool {
        self.observed.requests.stops.iter().any(|(_, id)| id == run)
    }

    fn advance(&mut self, record: &mut RunRecord<M>) {
        if record.state == RunState::Settling {
            self.settle(record);
            return;
        }
        let job_name = attempt_job_name(&self.observed.name, &record.id, record.attempt);
        let stop = self.stop_asked(&record.id);
        let job = self.observed.jobs.get(&job_name).cloned();
        if self.observed.limits.streaming {
            self.advance_stream(record, job_name, stop, job);
            return;
        }
        match (record.state, job) {
            (RunState::Waiting, None) if stop => {
                self.end(record, RunState::Stopped, "stopped before it started".into());
            }
            (RunState::Waiting, None) => {}
            (RunState::Stopping, None) => {
                self.end(record, RunState::Stopped, "stopped on request".into());
            }
            (_, None) => {
                let message = format!(
                    "the Kubernetes Job {job_name} was deleted before the attempt finished; the run's outputs were not committed"
                );
                self.end(record, RunState::Error, message);
            }
            (state, Some(AttemptJob::Pending | AttemptJob::Running)) if stop || state == RunState::Stopping => {
                // Suspended, not deleted: its pod goes, while the Job and any RunResult stay, so
                // that a commit the attempt decided before the stop is seen and finished. An
                // attempt that already finished is recorded as it ended instead.
                if state != RunState::Stopping {
                    self.decision.suspend.push(job_name.clone());
                }
                record.state = RunState::Stopping;
                record.kubernetes_job = Some(job_name);
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
                self.completed(record, &job_name);
            }
            (_, Some(AttemptJob::Failed { reason, detail })) => {
                record.kubernetes_job = Some(job_name.clone());
                self.failed(record, &job_name, &reason, &detail);
            }
            (_, Some(AttemptJob::Suspended)) => {
                record.kubernetes_job = Some(job_name.clone());
                self.suspended(record, &job_name);
            }
        }
    }

    /// An attempt whose Kubernetes Job completed: what its report says decides. A decided commit
    /// (Committing) with a completed Job is a finished commit: the runner exits 0 only then.
    fn completed(&mut self, record: &mut RunRecord<M>, job_name: &str) {
        match self.observed.reports.remove(job_name) {
            Some(report) if report.outcome != AttemptOutcome::Failed => self.succeeded(record, report),
            Some(report) => {
                record.metrics = report.metrics;
                let message = report.error.unwrap_or_else(|| "the runner reported a failure".into());
                self.fail(record, message);
            }
            None => {
                let message = "the runner exited successfully without reporting a result (no RunResult); nothing of this attempt is committed".to_string();
                if !self.fail(record, message) {
                    self.clean_up_after(record);
                }
            }
        }
    }

    /// A succeeded attempt: its figures and run properties, and its bookmark committed.
    fn succeeded(&mut self, record: &mut RunRecord<M>, report: Report<M>) {
        let now = self.now();
        record.metrics = report.metrics;
        record.run_properties = report.run_properties;
        let seconds = finish(record, RunState::Succeeded, None, now);
        self.decision.finished.push((RunState::Succeeded, seconds));
        if let (Some(state), Some(next)) = (self.bookmark_state.as_mut(), report.next_bookmark) {
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
        self.notice(
            false,
            "RunSucceeded",
            format!(
                "run {} attempt {} succeeded in {:.1} s",
                record.id, record.attempt, seconds
            ),
        );
    }

    /// An attempt whose Kubernetes Job failed: a timeout, or a failure (retried if it may be).
    /// What the runner reported first wins: a decided commit is finished, whatever ended the
    /// pod afterwards, and a reported success is a success.
    fn failed(&mut self, record: &mut RunRecord<M>, job_name: &str, reason: &str, detail: &str) {
        let report = self.observed.reports.remove(job_name);
        let ended = if reason == "DeadlineExceeded" {
            format!("ran past timeoutMinutes ({} min)", self.observed.limits.timeout_minutes)
        } else {
            format!("the attempt's pod ended: {detail}")
        };
        match report {
            Some(report) if report.outcome == AttemptOutcome::Committing => self.begin_settling(record, &ended),
            Some(report) if report.outcome == AttemptOutcome::Succeeded => self.succeeded(record, report),
            report if reason == "DeadlineExceeded" => {
                record.metrics = report.and_then(|r| r.metrics);
                self.end(record, RunState::Timeout, format!("{ended}; the attempt was stopped"));
                self.clean_up_after(record);
            }
            Some(report) => {
                record.metrics = report.metrics;
                let message = report.error.unwrap_or_else(|| detail.to_string());
                self.fail(record, message);
            }
            None => {
                // Killed before it could report: what it staged is left behind, unless a retry
                // of the same run follows and removes it first.
                if !self.fail(record, format!("the runner ended without reporting a result: {detail}")) {
                    self.clean_up_after(record);
                }
            }
        }
    }

    /// An attempt suspended on a stop request, its pod gone: stopped, unless it had decided to
    /// commit, in which case the commit is finished and the run succeeds.
    fn suspended(&mut self, record: &mut RunRecord<M>, job_name: &str) {
        match self.observed.reports.remove(job_name) {
            Some(report) if report.outcome == AttemptOutcome::Committing => {
                self.begin_settling(record, "stopped on request after it decided to commit");
            }
            Some(report) if report.outcome == AttemptOutcome::Succeeded => self.succeeded(record, report),
            _ => {
                self.end(record, RunState::Stopped, "stopped on request".into());
                self.decision.delete.push(job_name.to_string());
                self.clean_up_after(record);
            }
        }
    }

    /// A cleanup attempt (`kglue attempt --settle cleanup`) for an attempt that ended without
    /// deciding to commit: it removes the attempt's staging folders and aborts its multipart
    /// uploads. Nothing follows it; its Kubernetes Job has a TTL from the start.
    fn clean_up_after(&mut self, record: &RunRecord<M>) {
        if !self.observed.limits.stages_outputs {
            return;
        }
        self.decision.launch.push(Launch {
            job_name: cleanup_job_name(&self.observed.name, &record.id, record.attempt),
            run_id: record.id.clone(),
            attempt: record.attempt,
            arguments: record.arguments.clone(),
            settle: Some(SettleMode::Cleanup),
        });
    }

    /// The attempt decided to commit but did not say it finished: a settle attempt finishes the
    /// commit from the decision (docs/runs.md, "Exactly once").
    fn begin_settling(&mut self, record: &mut RunRecord<M>, why: &str) {
        record.state = RunState::Settling;
        record.settle_attempts = Some(0);
        record.message = Some(format!("{why}; finishing the commit it decided"));
        self.launch_settle(record);
    }

    fn launch_settle(&mut self, record: &mut RunRecord<M>) {
        let index = record.settle_attempts.unwrap_or(0);
        let job_name = settle_job_name(&self.observed.name, &record.id, record.attempt, index);
        record.settle_attempts = Some(index + 1);
        self.notice(
            false,
            "RunSettling",
            format!(
                "run {} attempt {} decided to commit and ended before finishing: settle attempt {} of {MAX_SETTLE_ATTEMPTS} ({job_name}) finishes it",
                record.id,
                record.attempt,
                index + 1
            ),
        );
        self.decision.launch.push(Launch {
            job_name,
            run_id: record.id.clone(),
            attempt: record.attempt,
            arguments: record.arguments.clone(),
            settle: Some(SettleMode::Commit),
        });
    }

    /// A run finishing a decided commit: its settle attempt completes (Succeeded, the bookmark
    /// committed), fails (the next settle attempt, up to [`MAX_SETTLE_ATTEMPTS`], then Error), or
    /// is still at work. A stop request does not interrupt it: the commit is already decided.
    fn settle(&mut self, record: &mut RunRecord<M>) {
        let attempt_job = attempt_job_name(&self.observed.name, &record.id, record.attempt);
        let report = self
            .observed
            .reports
            .remove(&attempt_job)
            .filter(|r| r.outcome == AttemptOutcome::Committing);
        let Some(report) = report else {
            let message = format!(
                "the decision to commit (RunResult {attempt_job}) is gone before the commit was finished; the run's outputs may be partly in place and the bookmark did not move"
            );
            self.end(record, RunState::Error, message);
            return;
        };
        let launched = record.settle_attempts.unwrap_or(0);
        if launched == 0 {
            self.launch_settle(record);
            return;
        }
        let current = settle_job_name(&self.observed.name, &record.id, record.attempt, launched - 1);
        let detail = match self.observed.jobs.get(&current).cloned() {
            Some(AttemptJob::Pending | AttemptJob::Running) => return,
            Some(AttemptJob::Complete) => {
                let why = record.message.take().unwrap_or_default();
                let why = why.trim_end_matches("; finishing the commit it decided");
                self.succeeded(record, report);
                record.message = Some(format!(
                    "{why}; settle attempt {launched} finished the commit it decided"
                ));
                return;
            }
            Some(AttemptJob::Failed { detail, .. }) => detail,
            Some(AttemptJob::Suspended) => "it was suspended".to_string(),
            None => format!("its Kubernetes Job {current} was deleted"),
        };
        if launched < MAX_SETTLE_ATTEMPTS {
            self.launch_settle(record);
            return;
        }
        let message = format!(
            "the commit attempt {} decided could not be finished in {MAX_SETTLE_ATTEMPTS} settle attempts (the last: {detail}); its outputs may be partly in place and the bookmark did not move",
            record.attempt
        );
        self.end(record, RunState::Error, message);
    }

    /// 3. Stop requests for runs that are final or unknown are done.
    fn answer_stop_requests(&mut self) {
        for (key, run) in &self.observed.requests.stops {
            self.decision.handled.push(key.clone());
            if !self.observed.runs.iter().any(|r| &r.id == run) {
                self.decision.events.push(Notice {
                    warning: true,
                    reason: "RunError",
                    note: format!("{key}: there is no run {run} in the history"),
                });
            }
        }
    }

    /// 4. Starts waiting runs, oldest first, while the concurrency limit allows.
    fn start_waiting_runs(&mut self) {
        let now = self.now();
        let serialize = self.bookmark_state.as_ref().is_some_and(|s| s.serialize);
        let limit = if serialize || self.observed.limits.replaces_data || self.observed.limits.streaming {
            1
        } else {
            self.observed.limits.max_concurrent.max(1)
        };
        let mut running = self.observed.runs.iter().filter(|r| active(r.state)).count();
        let mut next_check: Option<Duration> = None;
        let mut runs = std::mem::take(&mut self.observed.runs);
        for record in runs.iter_mut().rev().filter(|r| r.state == RunState::Waiting) {
            if let Some(reason) = self.observed.blocked.clone() {
                self.end(record, RunState::Error, format!("not started: {reason}"));
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
                let why = match (limit == 1 && self.observed.limits.max_concurrent > 1, serialize) {
                    (false, _) => "",
                    (true, _) if self.observed.limits.streaming => " (a stream runs one at a time)",
                    (true, true) => " (runs that read a bookmark run one at a time)",
                    (true, false) => " (runs that overwrite their sinks' data run one at a time)",
                };
                record.message = Some(format!("waiting: {running} run(s) active, the limit is {limit}{why}"));
                continue;
            }
            running += 1;
            self.launch(record);
        }
        self.observed.runs = runs;
        self.decision.requeue_after = next_check;
    }

    fn launch(&mut self, record: &mut RunRecord<M>) {
        let job_name = attempt_job_name(&self.observed.name, &record.id, record.attempt);
        record.state = RunState::Starting;
        record.not_before = None;
        record.message = None;
        record.kubernetes_job = Some(job_name.clone());
        self.notice(
            false,
            "RunStarted",
            format!(
                "run {} attempt {} started as Kubernetes Job {job_name}",
                record.id, record.attempt
            ),
        );
        self.decision.launch.push(Launch {
            job_name,
            run_id: record.id.clone(),
            attempt: record.attempt,
            arguments: record.arguments.clone(),
            settle: None,
        });
    }

    /// 5. A bookmark request, refused while a run is active.
    fn answer_bookmark_request(&mut self) {
        let Some((key, request)) = self.observed.requests.bookmark.clone() else {
            return;
        };
        if self.bookmark_state.is_none() {
            return;
        }
        self.decision.handled.push(key.clone());
        if self.observed.runs.iter().any(|r| active(r.state)) {
            self.notice(
                true,
                "BookmarkRefused",
                format!("{key}: refused while a run is active; stop it or wait, then ask again"),
            );
            return;
        }
        match request {
            BookmarkRequest::Reset => {
                if let Some(state) = self.bookmark_state.as_mut() {
                    state.current = None;
                }
                self.notice(
                    false,
                    "BookmarkReset",
                    "the bookmark was reset: the next run reads every object".into(),
                );
            }
            BookmarkRequest::Rewind(run) => self.rewind(&key, run.as_deref()),
        }
    }

    fn rewind(&mut self, key: &str, run: Option<&str>) {
        let Some(state) = self.bookmark_state.as_mut() else {
            return;
        };
        let position = match run {
            Some(run) => state.history.iter().position(|e| e.run_id == run),
            None => (!state.history.is_empty()).then_some(0),
        };
        let Some(index) = position else {
            let note = format!(
                "{key}: {} is not in status.bookmarkHistory (the last {BOOKMARK_HISTORY} committing runs)",
                run.unwrap_or("an earlier run")
            );
            self.notice(true, "BookmarkRefused", note);
            return;
        };
        let entry = state.history[index].clone();
        state.current = entry.bookmark;
        state.history.drain(..=index);
        self.notice(
            false,
            "BookmarkRewound",
            format!("the bookmark was rewound to the one run {} started from", entry.run_id),
        );
    }

    /// 6. Bounds the history: the newest final runs up to the limit; active runs always stay.
    fn bound_history(&mut self) {
        let limit = self.observed.limits.history;
        let mut kept_final = 0;
        self.observed.runs.retain(|r| {
            if !r.state.is_final() {
                return true;
            }
            kept_final += 1;
            kept_final <= limit
        });
    }

    /// 7. Finished Kubernetes Jobs no run in the history still follows (its attempt or settle
    ///    attempts) are retired: also those an earlier reconcile recorded but could not retire.
    fn retire_recorded_attempts(&mut self) {
        let followed = followed_jobs(&self.observed.name, &self.observed.runs);
        self.decision.retire = self
            .observed
            .unretired
            .iter()
            .filter(|job| !followed.contains(*job) && !self.decision.delete.contains(job))
            .cloned()
            .collect();
    }

    fn into_decision(mut self) -> Decision<M> {
        for record in &mut self.observed.runs {
            if let Some(message) = record.message.as_mut() {
                *message = cap_run_message(message);
            }
        }
        self.decision.runs = self.observed.runs;
        if self.bookmark_state != self.observed.bookmarks {
            self.decision.bookmarks = self.bookmark_state;
        }
        self.decision
    }

    fn notice(&mut self, warning: bool, reason: &'static str, note: String) {
        self.decision.events.push(Notice { warning, reason, note });
    }

    /// Ends `record` in a final `state` other than Succeeded or Failed, counts it and publishes
    /// its Event (`RunStopped`, `RunTimeout` or `RunError`).
    fn end(&mut self, record: &mut RunRecord<M>, state: RunState, message: String) {
        let seconds = finish(record, state, Some(message.clone()), self.now());
        self.decision.finished.push((state, seconds));
        let (warning, reason) = match state {
            RunState::Stopped => (false, "RunStopped"),
            RunState::Timeout => (true, "RunTimeout"),
            _ => (true, "RunError"),
        };
        self.notice(
            warning,
            reason,
            format!("run {} attempt {}: {message}", record.id, record.attempt),
        );
    }

    /// Records a failed attempt and, when retries remain, queues the next one (returns whether).
    fn fail(&mut self, record: &mut RunRecord<M>, message: String) -> bool {
        let now = self.now();
        let limits = &self.observed.limits;
        let seconds = finish(record, RunState::Failed, Some(message.clone()), now);
        self.decision.finished.push((RunState::Failed, seconds));
        if record.attempt >= limits.max_retries {
            self.notice(
                true,
                "RunFailed",
                format!("run {} attempt {} failed: {message}", record.id, record.attempt),
            );
            return false;
        }
        let attempt = record.attempt + 1;
        let max_retries = limits.max_retries;
        let delay = retry_delay(limits.retry_backoff, attempt);
        let not_before = after(now, delay);
        self.notice(
            true,
            "RunRetrying",
            format!(
                "run {} attempt {} failed: {message}; attempt {attempt} of {max_retries} starts in {} s",
                record.id,
                record.attempt,
                delay.as_secs()
            ),
        );
        self.retries.push(RunRecord {
            attempt,
            state: RunState::Waiting,
            started_at: Some(time(now)),
            completed_at: None,
            duration_seconds: None,
            not_before: Some(time(not_before)),
            kubernetes_job: None,
            settle_attempts: None,
            message: Some(format!("retry {attempt} of {max_retries} after: {message}")),
            metrics: None,
            executors: None,
            ..record.clone()
        });
        true
    }
}

#[cfg(test)]
mod tests;
