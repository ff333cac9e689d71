//! Streaming runs (docs/streaming.md, "In a cluster"): a run is one long-lived attempt at a
//! time, whose Kubernetes Job does not complete on its own.
//!
//! ```text
//!   Waiting ──▶ Starting ──▶ Running ──stop request──▶ Stopping (Job suspended: SIGTERM, the
//!                              │  ▲                       │      batch in progress commits)
//!                              │  │                       ▼
//!                              │  │                    Stopped
//!        spec change (roll) ───┤  └── next attempt, at once: a roll, or a pod that ended
//!        pod gone, exit 0 ─────┤      without being asked (deleted, evicted)
//!        pod failed ───────────┴──▶ Failed ──▶ next attempt after the backoff, while the
//!                                              failures in a row stay within maxRetries
//! ```
//!
//! Every attempt resumes from the stream's checkpoint, so restarting is always safe: a batch
//! either committed (and is never read again) or did not (and is read again whole).

use super::*;
use kglue_crds::job::StreamState;

/// The message of an attempt being rolled to a new spec.
pub const ROLLING: &str =
    "rolling to the Job's new spec: the stream stops after the batch in progress and starts again with it";

impl<M: Clone> Machine<M> {
    /// [`Machine::advance`] for a streaming run.
    pub(super) fn advance_stream(
        &mut self,
        record: &mut RunRecord<M>,
        job_name: String,
        stop: bool,
        job: Option<AttemptJob>,
    ) {
        let stopping = stop || record.state == RunState::Stopping;
        match job {
            None if record.state == RunState::Waiting => {
                if stop {
                    self.end(record, RunState::Stopped, "stopped before it started".into());
                }
            }
            None if stopping => self.end(record, RunState::Stopped, "stopped on request".into()),
            None => self.restart(record, format!("its Kubernetes Job {job_name} was deleted")),
            Some(AttemptJob::Pending | AttemptJob::Running) if stopping => {
                // Suspended: the Job controller deletes the pod, whose SIGTERM ends the stream
                // after the batch in progress (its grace period covers one window and more).
                if record.state != RunState::Stopping {
                    self.decision.suspend.push(job_name.clone());
                }
                record.state = RunState::Stopping;
                record.message = Some("stopping after the batch in progress".into());
                record.kubernetes_job = Some(job_name);
            }
            Some(state @ (AttemptJob::Pending | AttemptJob::Running)) => {
                record.state = if state == AttemptJob::Pending {
                    RunState::Starting
                } else {
                    RunState::Running
                };
                if self.observed.stale.contains(&job_name) && record.message.as_deref() != Some(ROLLING) {
                    self.decision.suspend.push(job_name.clone());
                    self.notice(
                        false,
                        "RunRolling",
                        format!("run {} attempt {}: {ROLLING}", record.id, record.attempt),
                    );
                    record.message = Some(ROLLING.into());
                }
                record.kubernetes_job = Some(job_name);
            }
            Some(AttemptJob::Complete) if stopping => {
                record.kubernetes_job = Some(job_name);
                self.end(record, RunState::Stopped, "stopped on request".into());
            }
            Some(AttemptJob::Suspended) if stopping => {
                record.kubernetes_job = Some(job_name.clone());
                self.end(record, RunState::Stopped, "stopped on request".into());
                self.decision.delete.push(job_name);
            }
            Some(AttemptJob::Suspended) => {
                let why = if self.observed.stale.contains(&job_name) {
                    "rolled to the Job's new spec".to_string()
                } else {
                    format!("its Kubernetes Job {job_name} was suspended, not by a stop request")
                };
                record.kubernetes_job = Some(job_name.clone());
                self.decision.delete.push(job_name);
                self.restart(record, why);
            }
            Some(AttemptJob::Complete) => {
                record.kubernetes_job = Some(job_name);
                self.restart(
                    record,
                    "its pod ended without a stop request (deleted or evicted)".into(),
                );
            }
            Some(AttemptJob::Failed { detail, .. }) if stopping => {
                record.kubernetes_job = Some(job_name);
                self.end(
                    record,
                    RunState::Stopped,
                    format!("stopped on request; the pod ended: {detail}"),
                );
            }
            Some(AttemptJob::Failed { detail, .. }) => {
                record.kubernetes_job = Some(job_name.clone());
                self.stream_failed(record, &job_name, &detail);
            }
        }
    }

    /// The attempt ended without failing and without a stop request: the next one starts at
    /// once, from the checkpoint. Not a failure: the failures in a row start again.
    fn restart(&mut self, record: &mut RunRecord<M>, why: String) {
        let now = self.now();
        let attempt = record.attempt + 1;
        let message = format!("{why}; attempt {attempt} resumes from the checkpoint");
        let seconds = finish(record, RunState::Stopped, Some(message.clone()), now);
        self.decision.finished.push((RunState::Stopped, seconds));
        self.notice(
            false,
            "RunRestarting",
            format!("run {} attempt {}: {message}", record.id, record.attempt),
        );
        self.retries.push(next_attempt(record, attempt, now, None, None));
    }

    /// The attempt failed: what its runner said last (or how its pod ended) is the message. The
    /// next attempt follows after the backoff, unless `maxRetries` attempts in a row have failed
    /// without committing a batch (one that commits starts the count again).
    fn stream_failed(&mut self, record: &mut RunRecord<M>, job_name: &str, detail: &str) {
        let now = self.now();
        let progress = self.observed.progress.get(job_name);
        let committed = progress.is_some_and(|p| p.batches > 0);
        let message = progress
            .filter(|p| p.state == StreamState::Failed)
            .and_then(|p| p.message.clone())
            .unwrap_or_else(|| format!("the attempt's pod ended: {detail}"));
        let in_a_row = if committed {
            1
        } else {
            record.failures_in_a_row.unwrap_or(0) + 1
        };
        record.failures_in_a_row = Some(in_a_row);
        let seconds = finish(record, RunState::Failed, Some(cap_run_message(&message)), now);
        self.decision.finished.push((RunState::Failed, seconds));
        let max_retries = self.observed.limits.max_retries;
        if in_a_row > max_retries {
            self.notice(
                true,
                "RunFailed",
                format!(
                    "run {} attempt {} failed: {message}; {in_a_row} attempt(s) in a row failed without committing a batch (maxRetries {max_retries})",
                    record.id, record.attempt
                ),
            );
            return;
        }
        let attempt = record.attempt + 1;
        let delay = retry_delay(self.observed.limits.retry_backoff, in_a_row);
        let not_before = after(now, delay);
        self.notice(
            true,
            "RunRetrying",
            format!(
                "run {} attempt {} failed: {message}; attempt {attempt} resumes from the checkpoint in {} s",
                record.id,
                record.attempt,
                delay.as_secs()
            ),
        );
        let waiting = format!("restarts after: {message}");
        self.retries.push(next_attempt(
            record,
            attempt,
            now,
            Some(not_before),
            Some((in_a_row, cap_run_message(&waiting))),
        ));
    }
}

/// The Waiting record of the run's next attempt.
fn next_attempt<M: Clone>(
    record: &RunRecord<M>,
    attempt: i32,
    now: Timestamp,
    not_before: Option<Timestamp>,
    failed: Option<(i32, String)>,
) -> RunRecord<M> {
    let (in_a_row, message) = failed.unzip();
    RunRecord {
        attempt,
        state: RunState::Waiting,
        started_at: Some(time(now)),
        completed_at: None,
        duration_seconds: None,
        not_before: not_before.map(time),
        kubernetes_job: None,
        settle_attempts: None,
        failures_in_a_row: in_a_row,
        message,
        metrics: None,
        executors: None,
        ..record.clone()
    }
}
