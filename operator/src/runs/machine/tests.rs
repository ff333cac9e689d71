use std::collections::BTreeSet;

use super::*;
use kglue_crds::common::StartedByKind;
use kglue_crds::job::{JobRunMetrics, StreamProgress};
use kglue_crds::protocol::requests::Requests;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).expect("valid")
}

fn observed(now: i64, runs: Vec<RunRecord<JobRunMetrics>>, annotations: &[(&str, &str)]) -> Observed<JobRunMetrics> {
    Observed {
        now: at(now),
        name: "clean".into(),
        uid: "uid-1".into(),
        run_prefix: "jr-",
        runs,
        requests: Requests::from_annotations(
            &annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        jobs: BTreeMap::new(),
        reports: BTreeMap::new(),
        unretired: BTreeSet::new(),
        blocked: None,
        limits: Limits {
            max_concurrent: 2,
            max_retries: 0,
            history: 10,
            retry_backoff: Duration::from_secs(10),
            timeout_minutes: 5,
            replaces_data: false,
            stages_outputs: true,
            streaming: false,
        },
        bookmarks: None,
        progress: BTreeMap::new(),
        stale: BTreeSet::new(),
    }
}

fn bookmark(run: &str) -> JobBookmark {
    JobBookmark {
        run_id: Some(run.into()),
        committed_at: None,
        sources: BTreeMap::new(),
    }
}

fn succeeded(next: Option<JobBookmark>) -> Report<JobRunMetrics> {
    Report {
        outcome: AttemptOutcome::Succeeded,
        error: None,
        metrics: Some(JobRunMetrics::default()),
        next_bookmark: next,
        run_properties: BTreeMap::new(),
    }
}

/// Starts one run from request `r1` and returns its record (Starting).
fn started(now: i64) -> (RunRecord<JobRunMetrics>, String) {
    let decision = decide(observed(
        now,
        vec![],
        &[("run.kglue.dev/r1", r#"{"arguments":{"day":"1"}}"#)],
    ));
    let job = decision.launch[0].job_name.clone();
    (decision.runs[0].clone(), job)
}

#[test]
fn a_start_request_becomes_a_starting_run_with_one_kubernetes_job() {
    let decision = decide(observed(
        0,
        vec![],
        &[("run.kglue.dev/r1", r#"{"arguments":{"day":"1"}}"#)],
    ));
    assert_eq!(decision.runs.len(), 1);
    let run = &decision.runs[0];
    assert_eq!(run.state, RunState::Starting);
    assert_eq!(run.request_id.as_deref(), Some("r1"));
    assert_eq!(run.arguments["day"], "1");
    assert_eq!(run.started_by.kind, StartedByKind::Manual);
    assert_eq!(decision.launch.len(), 1);
    assert_eq!(decision.launch[0].job_name, format!("clean-{}-0", run.id));
    assert_eq!(decision.handled, vec!["run.kglue.dev/r1".to_string()]);
    assert_eq!(decision.events[0].reason, "RunStarted");
}

#[test]
fn a_request_already_recorded_starts_nothing() {
    let (run, job) = started(0);
    let mut again = observed(1, vec![run], &[("run.kglue.dev/r1", "")]);
    again.jobs.insert(job, AttemptJob::Pending);
    let decision = decide(again);
    assert_eq!(decision.runs.len(), 1);
    assert!(decision.launch.is_empty());
    assert_eq!(decision.handled, vec!["run.kglue.dev/r1".to_string()]);
}

#[test]
fn a_malformed_request_is_recorded_as_an_error_run() {
    let decision = decide(observed(0, vec![], &[("run.kglue.dev/bad", "{not json")]));
    assert_eq!(decision.runs[0].state, RunState::Error);
    assert!(
        decision.runs[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("run.kglue.dev/bad")
    );
    assert!(decision.launch.is_empty());
}

#[test]
fn ten_requests_against_a_limit_of_two_start_two_and_keep_eight_waiting() {
    let keys: Vec<String> = (0..10).map(|i| format!("run.kglue.dev/r{i}")).collect();
    let annotations: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "")).collect();
    let decision = decide(observed(0, vec![], &annotations));
    assert_eq!(decision.runs.len(), 10);
    assert_eq!(decision.launch.len(), 2);
    let waiting = decision.runs.iter().filter(|r| r.state == RunState::Waiting).count();
    assert_eq!(waiting, 8);
    assert!(
        decision.runs.iter().filter(|r| r.state == RunState::Waiting).all(|r| r
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("limit is 2"))
    );

    // One finishes: exactly one more starts, the oldest waiting one.
    let mut next = observed(5, decision.runs.clone(), &[]);
    next.jobs
        .insert(decision.launch[0].job_name.clone(), AttemptJob::Complete);
    next.jobs
        .insert(decision.launch[1].job_name.clone(), AttemptJob::Running);
    next.reports
        .insert(decision.launch[0].job_name.clone(), succeeded(None));
    let after = decide(next);
    assert_eq!(after.launch.len(), 1);
    let oldest_waiting = decision
        .runs
        .iter()
        .rev()
        .find(|r| r.state == RunState::Waiting)
        .expect("a waiting run");
    assert_eq!(after.launch[0].run_id, oldest_waiting.id);
    assert_eq!(after.runs.iter().filter(|r| active(r.state)).count(), 2);
}

#[test]
fn runs_reading_a_bookmark_run_one_at_a_time() {
    let mut first = observed(0, vec![], &[("run.kglue.dev/a", ""), ("run.kglue.dev/b", "")]);
    first.bookmarks = Some(Bookmarks {
        serialize: true,
        ..Bookmarks::default()
    });
    let decision = decide(first);
    assert_eq!(decision.launch.len(), 1);
    assert!(
        decision
            .runs
            .iter()
            .any(|r| r.message.as_deref().is_some_and(|m| m.contains("one at a time")))
    );
}

#[test]
fn success_commits_the_bookmark_once_and_keeps_the_replaced_one() {
    let (run, job) = started(0);
    let mut done = observed(10, vec![run], &[]);
    done.bookmarks = Some(Bookmarks {
        serialize: true,
        current: Some(bookmark("jr-older")),
        history: vec![],
    });
    done.jobs.insert(job.clone(), AttemptJob::Complete);
    done.reports.insert(job.clone(), succeeded(Some(bookmark("ignored"))));
    let decision = decide(done);
    let run = &decision.runs[0];
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(run.duration_seconds, Some(10.0));
    let bookmarks = decision.bookmarks.clone().expect("a new bookmark");
    let current = bookmarks.current.expect("committed");
    assert_eq!(current.run_id.as_deref(), Some(run.id.as_str()));
    assert_eq!(current.committed_at, Some(time(at(10))));
    assert_eq!(bookmarks.history[0].run_id, run.id);
    assert_eq!(bookmarks.history[0].bookmark, Some(bookmark("jr-older")));

    // Seen again (a stale event, a restart that re-reads): the run is final, nothing moves.
    let mut again = observed(11, decision.runs.clone(), &[]);
    again.bookmarks = decision.bookmarks.clone();
    again.jobs.insert(job.clone(), AttemptJob::Complete);
    again.reports.insert(job, succeeded(Some(bookmark("ignored"))));
    let second = decide(again);
    assert!(second.bookmarks.is_none(), "the bookmark is committed once");
    assert!(second.finished.is_empty());
}

#[test]
fn a_failed_attempt_is_retried_after_the_backoff_under_the_same_run_id() {
    let (run, job) = started(0);
    let mut failed = observed(3, vec![run.clone()], &[]);
    failed.limits.max_retries = 2;
    failed.jobs.insert(
        job.clone(),
        AttemptJob::Failed {
            reason: "BackoffLimitExceeded".into(),
            detail: "exit code 137 (Error)".into(),
        },
    );
    let decision = decide(failed);
    assert_eq!(decision.runs.len(), 2);
    let (retry, first) = (&decision.runs[0], &decision.runs[1]);
    assert_eq!((first.attempt, first.state), (0, RunState::Failed));
    assert!(first.message.as_deref().unwrap_or_default().contains("exit code 137"));
    assert_eq!(
        (retry.id.as_str(), retry.attempt, retry.state),
        (run.id.as_str(), 1, RunState::Waiting)
    );
    assert_eq!(retry.not_before, Some(time(at(13))));
    assert!(decision.launch.is_empty());
    assert_eq!(decision.requeue_after, Some(Duration::from_secs(10)));

    // After the backoff, attempt 1 starts with its own Kubernetes Job.
    let mut later = observed(13, decision.runs.clone(), &[]);
    later.limits.max_retries = 2;
    later.jobs.insert(
        job,
        AttemptJob::Failed {
            reason: "x".into(),
            detail: "y".into(),
        },
    );
    let decision = decide(later);
    assert_eq!(decision.launch.len(), 1);
    assert_eq!(decision.launch[0].job_name, format!("clean-{}-1", run.id));
    assert_eq!(decision.launch[0].attempt, 1);
}

#[test]
fn the_runners_error_is_the_message_of_a_failed_run_without_retries() {
    let (run, job) = started(0);
    let mut failed = observed(3, vec![run], &[]);
    failed.jobs.insert(
        job.clone(),
        AttemptJob::Failed {
            reason: "BackoffLimitExceeded".into(),
            detail: "exit code 1".into(),
        },
    );
    failed.reports.insert(
        job,
        Report {
            outcome: AttemptOutcome::Failed,
            error: Some("sql: column x not found".into()),
            metrics: None,
            next_bookmark: Some(bookmark("never")),
            run_properties: BTreeMap::new(),
        },
    );
    failed.bookmarks = Some(Bookmarks::default());
    let decision = decide(failed);
    assert_eq!(decision.runs.len(), 1);
    assert_eq!(decision.runs[0].state, RunState::Failed);
    assert_eq!(decision.runs[0].message.as_deref(), Some("sql: column x not found"));
    assert!(decision.bookmarks.is_none(), "a failed run never moves the bookmark");
    assert_eq!(decision.events.last().map(|e| e.reason), Some("RunFailed"));
}

#[test]
fn a_deadline_is_a_timeout_and_is_not_retried() {
    let (run, job) = started(0);
    let mut late = observed(300, vec![run], &[]);
    late.limits.max_retries = 3;
    late.jobs.insert(
        job,
        AttemptJob::Failed {
            reason: "DeadlineExceeded".into(),
            detail: String::new(),
        },
    );
    let decision = decide(late);
    assert_eq!(decision.runs.len(), 1);
    assert_eq!(decision.runs[0].state, RunState::Timeout);
    assert!(
        decision.runs[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("timeoutMinutes (5 min)")
    );
}

#[test]
fn stopping_suspends_the_kubernetes_job_then_records_stopped_and_deletes_it() {
    let (run, job) = started(0);
    let stop_key = format!("stop.kglue.dev/{}", run.id);
    let mut stopping = observed(2, vec![run.clone()], &[(stop_key.as_str(), "")]);
    stopping.jobs.insert(job.clone(), AttemptJob::Running);
    let decision = decide(stopping);
    assert_eq!(decision.runs[0].state, RunState::Stopping);
    assert_eq!(decision.suspend, vec![job.clone()]);
    assert!(decision.delete.is_empty(), "the Job stays until its pod is gone");
    assert_eq!(decision.handled, vec![stop_key]);

    // Still terminating: nothing more to do, and the suspension is not asked again.
    let mut terminating = observed(3, decision.runs.clone(), &[]);
    terminating.jobs.insert(job.clone(), AttemptJob::Running);
    let waiting = decide(terminating);
    assert_eq!(waiting.runs[0].state, RunState::Stopping);
    assert!(waiting.suspend.is_empty() && waiting.delete.is_empty());

    let mut drained = observed(4, decision.runs.clone(), &[]);
    drained.jobs.insert(job.clone(), AttemptJob::Suspended);
    let stopped = decide(drained);
    assert_eq!(stopped.runs[0].state, RunState::Stopped);
    assert_eq!(stopped.finished, vec![(RunState::Stopped, 4.0)]);
    assert_eq!(stopped.delete, vec![job]);

    // A Job deleted underneath a stopping run is a stop too.
    let gone = decide(observed(5, decision.runs.clone(), &[]));
    assert_eq!(gone.runs[0].state, RunState::Stopped);
}

fn committing(next: Option<JobBookmark>) -> Report<JobRunMetrics> {
    Report {
        outcome: AttemptOutcome::Committing,
        ..succeeded(next)
    }
}

/// Observes `run` with its attempt's Job in `state` and a Committing report.
fn decided(now: i64, run: RunRecord<JobRunMetrics>, job: &str, state: AttemptJob) -> Observed<JobRunMetrics> {
    let mut seen = observed(now, vec![run], &[]);
    seen.bookmarks = Some(Bookmarks {
        serialize: true,
        current: Some(bookmark("jr-before")),
        history: vec![],
    });
    seen.jobs.insert(job.to_string(), state);
    seen.reports.insert(job.to_string(), committing(Some(bookmark("next"))));
    seen
}

#[test]
fn a_decided_commit_whose_job_completed_is_a_success_with_its_bookmark() {
    let (run, job) = started(0);
    let decision = decide(decided(5, run, &job, AttemptJob::Complete));
    assert_eq!(decision.runs[0].state, RunState::Succeeded);
    let bookmarks = decision.bookmarks.expect("the bookmark moved");
    assert_eq!(
        bookmarks.current.and_then(|b| b.run_id),
        Some(decision.runs[0].id.clone())
    );
    assert!(decision.launch.is_empty());
}

#[test]
fn a_commit_decided_before_the_pod_failed_is_settled_then_succeeds_once() {
    let (run, job) = started(0);
    let mut seen = decided(
        5,
        run,
        &job,
        AttemptJob::Failed {
            reason: "BackoffLimitExceeded".into(),
            detail: "exit code 137 (OOMKilled)".into(),
        },
    );
    seen.limits.max_retries = 3;
    let decision = decide(seen.clone());
    let record = &decision.runs[0];
    assert_eq!(
        decision.runs.len(),
        1,
        "a decided commit is never retried as a new attempt"
    );
    assert_eq!(record.state, RunState::Settling);
    assert_eq!(record.settle_attempts, Some(1));
    assert!(
        decision.bookmarks.is_none(),
        "the bookmark moves only when the commit is finished"
    );
    assert_eq!(decision.launch.len(), 1);
    let settle = &decision.launch[0];
    assert_eq!(settle.job_name, format!("{job}-s0"));
    assert_eq!((settle.attempt, settle.settle), (0, Some(SettleMode::Commit)));
    assert_eq!(decision.events.last().map(|e| e.reason), Some("RunSettling"));
    assert!(record.message.as_deref().unwrap_or_default().contains("OOMKilled"));

    // The settle attempt is at work; a stop request does not interrupt a decided commit.
    let stop_key = format!("stop.kglue.dev/{}", record.id);
    let mut working = seen.clone();
    working.runs = decision.runs.clone();
    working.requests = Requests::from_annotations(&BTreeMap::from([(stop_key.clone(), String::new())]));
    working.jobs.insert(settle.job_name.clone(), AttemptJob::Running);
    let still = decide(working);
    assert_eq!(still.runs[0].state, RunState::Settling);
    assert!(still.launch.is_empty() && still.suspend.is_empty() && still.delete.is_empty());
    assert_eq!(still.handled, vec![stop_key]);

    let mut finished = seen;
    finished.runs = decision.runs.clone();
    finished.jobs.insert(settle.job_name.clone(), AttemptJob::Complete);
    let done = decide(finished);
    assert_eq!(done.runs[0].state, RunState::Succeeded);
    assert!(
        done.runs[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("settle attempt 1 finished")
    );
    let bookmarks = done.bookmarks.expect("the bookmark moved");
    assert_eq!(bookmarks.current.and_then(|b| b.run_id), Some(record.id.clone()));
    assert_eq!(bookmarks.history[0].bookmark, Some(bookmark("jr-before")));
}

#[test]
fn a_timeout_or_a_stop_after_the_decision_to_commit_finishes_the_commit() {
    let (run, job) = started(0);
    let timeout = AttemptJob::Failed {
        reason: "DeadlineExceeded".into(),
        detail: String::new(),
    };
    let late = decide(decided(300, run.clone(), &job, timeout));
    assert_eq!(late.runs[0].state, RunState::Settling);
    assert!(
        late.runs[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("timeoutMinutes")
    );

    let mut stopping = run;
    stopping.state = RunState::Stopping;
    let stopped = decide(decided(10, stopping, &job, AttemptJob::Suspended));
    assert_eq!(stopped.runs[0].state, RunState::Settling);
    assert!(stopped.delete.is_empty(), "the decision must stay readable");
    assert_eq!(stopped.launch[0].settle, Some(SettleMode::Commit));
}

#[test]
fn a_commit_that_three_settle_attempts_cannot_finish_is_an_error_naming_why() {
    let (run, job) = started(0);
    let failed = |detail: &str| AttemptJob::Failed {
        reason: "BackoffLimitExceeded".into(),
        detail: detail.into(),
    };
    let mut seen = decided(5, run, &job, failed("exit code 3"));
    let mut launched = Vec::new();
    for round in 0..MAX_SETTLE_ATTEMPTS {
        let decision = decide(seen.clone());
        assert_eq!(decision.runs[0].state, RunState::Settling, "round {round}");
        launched.push(decision.launch[0].job_name.clone());
        seen.runs = decision.runs;
        seen.jobs.insert(
            decision.launch[0].job_name.clone(),
            failed("exit code 1: finishing the commit: access denied"),
        );
    }
    assert_eq!(
        launched,
        [format!("{job}-s0"), format!("{job}-s1"), format!("{job}-s2")]
    );
    let decision = decide(seen.clone());
    assert_eq!(decision.runs[0].state, RunState::Error);
    let message = decision.runs[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("3 settle attempts") && message.contains("access denied"),
        "{message}"
    );
    assert!(decision.bookmarks.is_none());

    // A decision that is gone (its Job deleted with its RunResult) cannot be finished either.
    let mut lost = seen;
    lost.runs[0].settle_attempts = Some(1);
    lost.reports.clear();
    let decision = decide(lost);
    assert_eq!(decision.runs[0].state, RunState::Error);
    assert!(
        decision.runs[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("is gone")
    );
}

#[test]
fn a_stop_that_comes_after_completion_keeps_the_success() {
    let (run, job) = started(0);
    let stop_key = format!("stop.kglue.dev/{}", run.id);
    let mut done = observed(2, vec![run], &[(stop_key.as_str(), "")]);
    done.jobs.insert(job.clone(), AttemptJob::Complete);
    done.reports.insert(job, succeeded(None));
    let decision = decide(done);
    assert_eq!(decision.runs[0].state, RunState::Succeeded);
    assert!(decision.delete.is_empty());
}

#[test]
fn a_waiting_run_stops_at_once() {
    let keys = ["run.kglue.dev/a", "run.kglue.dev/b", "run.kglue.dev/c"];
    let mut first = observed(0, vec![], &keys.map(|k| (k, "")));
    first.limits.max_concurrent = 1;
    let decision = decide(first);
    let waiting = decision
        .runs
        .iter()
        .find(|r| r.state == RunState::Waiting)
        .expect("waiting")
        .id
        .clone();
    let stop_key = format!("stop.kglue.dev/{waiting}");
    let mut next = observed(1, decision.runs.clone(), &[(stop_key.as_str(), "")]);
    next.limits.max_concurrent = 1;
    next.jobs
        .insert(decision.launch[0].job_name.clone(), AttemptJob::Running);
    let after = decide(next);
    let stopped = after.runs.iter().find(|r| r.id == waiting).expect("kept");
    assert_eq!(stopped.state, RunState::Stopped);
    assert!(after.delete.is_empty());
}

#[test]
fn a_kubernetes_job_deleted_underneath_is_an_error_not_a_silent_loss() {
    let (run, _) = started(0);
    let decision = decide(observed(4, vec![run], &[]));
    assert_eq!(decision.runs[0].state, RunState::Error);
    assert!(
        decision.runs[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("was deleted")
    );
}

#[test]
fn a_stalled_object_does_not_start_runs() {
    let mut blocked = observed(0, vec![], &[("run.kglue.dev/r", "")]);
    blocked.blocked = Some("spec.sources[0].table names raw.x, but no Table…".into());
    let decision = decide(blocked);
    assert_eq!(decision.runs[0].state, RunState::Error);
    assert!(decision.launch.is_empty());
    assert!(
        decision.runs[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("not started: spec.sources[0]")
    );
}

#[test]
fn bookmark_requests_reset_rewind_and_wait_for_active_runs() {
    let history = vec![
        BookmarkHistoryEntry {
            run_id: "jr-3".into(),
            bookmark: Some(bookmark("jr-2")),
        },
        BookmarkHistoryEntry {
            run_id: "jr-2".into(),
            bookmark: Some(bookmark("jr-1")),
        },
        BookmarkHistoryEntry {
            run_id: "jr-1".into(),
            bookmark: None,
        },
    ];
    let state = Bookmarks {
        serialize: true,
        current: Some(bookmark("jr-3")),
        history,
    };

    let mut rewind = observed(0, vec![], &[("bookmark.kglue.dev/rewind", "jr-2")]);
    rewind.bookmarks = Some(state.clone());
    let decision = decide(rewind);
    let after = decision.bookmarks.expect("changed");
    assert_eq!(after.current, Some(bookmark("jr-1")));
    assert_eq!(after.history.len(), 1);
    assert_eq!(decision.handled, vec!["bookmark.kglue.dev/rewind".to_string()]);

    let mut undo = observed(0, vec![], &[("bookmark.kglue.dev/rewind", "")]);
    undo.bookmarks = Some(state.clone());
    assert_eq!(decide(undo).bookmarks.expect("changed").current, Some(bookmark("jr-2")));

    let mut reset = observed(0, vec![], &[("bookmark.kglue.dev/reset", "")]);
    reset.bookmarks = Some(state.clone());
    assert_eq!(decide(reset).bookmarks.expect("changed").current, None);

    let (run, job) = started(0);
    let mut busy = observed(1, vec![run], &[("bookmark.kglue.dev/reset", "")]);
    busy.bookmarks = Some(state);
    busy.jobs.insert(job, AttemptJob::Running);
    let decision = decide(busy);
    assert!(decision.bookmarks.is_none());
    assert!(decision.events.iter().any(|e| e.reason == "BookmarkRefused"));
}

#[test]
fn history_keeps_the_newest_final_runs_and_every_active_one() {
    let keys: Vec<String> = (0..6).map(|i| format!("run.kglue.dev/r{i}")).collect();
    let annotations: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "{bad")).collect();
    let mut many = observed(0, vec![], &annotations);
    many.limits.history = 3;
    let decision = decide(many);
    assert_eq!(decision.runs.len(), 3);
}

#[test]
fn retry_delays_double_up_to_the_cap() {
    let base = Duration::from_secs(10);
    assert_eq!(retry_delay(base, 1), Duration::from_secs(10));
    assert_eq!(retry_delay(base, 2), Duration::from_secs(20));
    assert_eq!(retry_delay(base, 10), MAX_RETRY_BACKOFF);
}

#[test]
fn finished_kubernetes_jobs_are_retired_only_once_their_run_is_recorded() {
    let (run, job) = started(0);
    // Finished, not yet recorded in the status this decision starts from: retired with the
    // decision that records it (the TTL is set after the status write).
    let mut done = observed(5, vec![run.clone()], &[]);
    done.jobs.insert(job.clone(), AttemptJob::Complete);
    done.reports.insert(job.clone(), succeeded(None));
    done.unretired.insert(job.clone());
    let decision = decide(done);
    assert_eq!(decision.runs[0].state, RunState::Succeeded);
    assert_eq!(decision.retire, vec![job.clone()]);

    // A Settling run keeps its attempt's Job and its settle attempts' Jobs.
    let mut settling = run;
    settling.state = RunState::Settling;
    settling.settle_attempts = Some(2);
    let mut seen = observed(6, vec![settling], &[]);
    seen.reports.insert(job.clone(), committing(None));
    let first_settle = format!("{job}-s0");
    seen.jobs.insert(
        job.clone(),
        AttemptJob::Failed {
            reason: String::new(),
            detail: String::new(),
        },
    );
    seen.jobs.insert(
        first_settle.clone(),
        AttemptJob::Failed {
            reason: String::new(),
            detail: String::new(),
        },
    );
    seen.jobs.insert(format!("{job}-s1"), AttemptJob::Running);
    seen.unretired
        .extend([job.clone(), first_settle, "clean-jr-gone-0".to_string()]);
    let decision = decide(seen);
    assert_eq!(decision.runs[0].state, RunState::Settling);
    assert_eq!(
        decision.retire,
        vec!["clean-jr-gone-0".to_string()],
        "only what no run follows"
    );
}

#[test]
fn an_attempt_that_ended_undecided_with_no_retry_gets_a_cleanup_attempt() {
    let killed = AttemptJob::Failed {
        reason: "BackoffLimitExceeded".into(),
        detail: "exit code 137".into(),
    };
    // Killed, a retry follows: the retry removes what it staged, no cleanup attempt.
    let (run, job) = started(0);
    let mut retried = observed(5, vec![run.clone()], &[]);
    retried.limits.max_retries = 1;
    retried.jobs.insert(job.clone(), killed.clone());
    let decision = decide(retried);
    assert!(decision.launch.is_empty(), "{:?}", decision.launch);

    // Killed, no retry: a cleanup attempt of the same run and attempt.
    let mut last = observed(5, vec![run.clone()], &[]);
    last.jobs.insert(job.clone(), killed);
    let decision = decide(last);
    assert_eq!(decision.runs[0].state, RunState::Failed);
    assert_eq!(decision.launch.len(), 1);
    let cleanup = &decision.launch[0];
    assert_eq!(cleanup.job_name, format!("{job}-c"));
    assert_eq!((cleanup.attempt, cleanup.settle), (0, Some(SettleMode::Cleanup)));

    // Stopped, and timed out: the same.
    let mut stopping = run.clone();
    stopping.state = RunState::Stopping;
    let mut stopped = observed(6, vec![stopping], &[]);
    stopped.jobs.insert(job.clone(), AttemptJob::Suspended);
    let decision = decide(stopped);
    assert_eq!(decision.runs[0].state, RunState::Stopped);
    assert_eq!(decision.launch[0].settle, Some(SettleMode::Cleanup));
    let mut late = observed(300, vec![run.clone()], &[]);
    late.jobs.insert(
        job.clone(),
        AttemptJob::Failed {
            reason: "DeadlineExceeded".into(),
            detail: String::new(),
        },
    );
    let decision = decide(late);
    assert_eq!(decision.runs[0].state, RunState::Timeout);
    assert_eq!(decision.launch[0].settle, Some(SettleMode::Cleanup));

    // A run that stages nothing (a crawl) needs none.
    let mut crawl = observed(5, vec![run], &[]);
    crawl.limits.stages_outputs = false;
    crawl.jobs.insert(job, AttemptJob::Suspended);
    crawl.runs[0].state = RunState::Stopping;
    assert!(decide(crawl).launch.is_empty());
}

#[test]
fn runs_that_overwrite_their_sinks_run_one_at_a_time() {
    let mut seen = observed(0, vec![], &[("run.kglue.dev/r1", ""), ("run.kglue.dev/r2", "")]);
    seen.limits.replaces_data = true;
    let decision = decide(seen);
    assert_eq!(decision.launch.len(), 1, "maxConcurrentRuns 2, but one at a time");
    let waiting = decision
        .runs
        .iter()
        .find(|r| r.state == RunState::Waiting)
        .expect("one waits");
    assert!(
        waiting
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("overwrite their sinks' data"),
        "{:?}",
        waiting.message
    );
}

#[test]
fn a_long_error_is_capped_in_the_run_record() {
    let (run, job) = started(0);
    let mut failed = observed(5, vec![run], &[]);
    failed.jobs.insert(
        job.clone(),
        AttemptJob::Failed {
            reason: String::new(),
            detail: String::new(),
        },
    );
    let mut report = succeeded(None);
    report.outcome = AttemptOutcome::Failed;
    report.error = Some(format!("sql: {}", "x".repeat(100_000)));
    failed.reports.insert(job, report);
    let decision = decide(failed);
    let message = decision.runs[0].message.clone().unwrap_or_default();
    assert!(message.starts_with("sql: ") && message.chars().count() <= kglue_crds::common::MAX_RUN_MESSAGE_CHARS);
}

/// A streaming Job's observation: its runs restart until stopped.
fn streaming(now: i64, runs: Vec<RunRecord<JobRunMetrics>>, annotations: &[(&str, &str)]) -> Observed<JobRunMetrics> {
    let mut observed = observed(now, runs, annotations);
    observed.limits.streaming = true;
    observed.limits.max_retries = 2;
    observed
}

fn stream_progress(state: kglue_crds::job::StreamState, batches: i64, message: &str) -> StreamProgress {
    StreamProgress {
        state,
        batches,
        message: Some(message.into()),
        ..StreamProgress::default()
    }
}

#[test]
fn a_stream_runs_one_at_a_time_and_a_stop_suspends_it_then_records_it_stopped() {
    let decision = decide(streaming(
        0,
        vec![],
        &[("run.kglue.dev/r1", ""), ("run.kglue.dev/r2", "")],
    ));
    assert_eq!(decision.launch.len(), 1, "a stream runs one at a time");
    assert!(
        decision.runs[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("a stream runs one at a time")
    );
    let run = decision.runs[1].clone();
    let job = decision.launch[0].job_name.clone();
    let stop_key = format!("stop.kglue.dev/{}", run.id);
    let mut stopping = streaming(5, vec![run], &[(stop_key.as_str(), "")]);
    stopping.jobs.insert(job.clone(), AttemptJob::Running);
    let decision = decide(stopping);
    assert_eq!(decision.runs[0].state, RunState::Stopping);
    assert_eq!(decision.suspend, vec![job.clone()]);

    // The pod ended after its last batch (exit 0 or drained by the suspension): Stopped, no
    // restart, no cleanup attempt.
    for ended in [AttemptJob::Complete, AttemptJob::Suspended] {
        let mut drained = streaming(9, decision.runs.clone(), &[]);
        drained.jobs.insert(job.clone(), ended.clone());
        let stopped = decide(drained);
        assert_eq!(stopped.runs.len(), 1, "{ended:?}");
        assert_eq!(stopped.runs[0].state, RunState::Stopped);
        assert!(stopped.launch.is_empty(), "{ended:?}");
    }
}

#[test]
fn a_stream_whose_pod_ended_unasked_or_whose_spec_changed_restarts_at_once() {
    let (run, job) = started(0);
    // A pod deleted or evicted: SIGTERM, the runner exits 0, the Kubernetes Job completes.
    let mut evicted = streaming(60, vec![run.clone()], &[]);
    evicted.jobs.insert(job.clone(), AttemptJob::Complete);
    let decision = decide(evicted);
    let (next, ended) = (&decision.runs[0], &decision.runs[1]);
    assert_eq!((ended.attempt, ended.state), (0, RunState::Stopped));
    assert!(
        ended
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("without a stop request")
    );
    assert_eq!((next.id.as_str(), next.attempt), (run.id.as_str(), 1));
    assert_eq!(next.state, RunState::Starting, "no backoff: not a failure");
    assert_eq!(decision.launch[0].job_name, format!("clean-{}-1", run.id));

    // A spec change: the attempt built for the old generation is suspended once, then replaced.
    let mut changed = streaming(70, vec![run.clone()], &[]);
    changed.jobs.insert(job.clone(), AttemptJob::Running);
    changed.stale.insert(job.clone());
    let rolling = decide(changed);
    assert_eq!(rolling.suspend, vec![job.clone()]);
    assert_eq!(rolling.runs[0].state, RunState::Running);
    assert_eq!(rolling.runs[0].message.as_deref(), Some(stream::ROLLING));
    assert_eq!(rolling.events[0].reason, "RunRolling");
    let mut still = streaming(71, rolling.runs.clone(), &[]);
    still.jobs.insert(job.clone(), AttemptJob::Running);
    still.stale.insert(job.clone());
    assert!(decide(still).suspend.is_empty(), "suspended once");
    let mut drained = streaming(80, rolling.runs.clone(), &[]);
    drained.jobs.insert(job.clone(), AttemptJob::Suspended);
    drained.stale.insert(job.clone());
    let rolled = decide(drained);
    assert_eq!(rolled.delete, vec![job]);
    assert_eq!(rolled.runs[0].attempt, 1);
    assert_eq!(rolled.runs[0].state, RunState::Starting);
    assert!(
        rolled.runs[1]
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("rolled to the Job's new spec")
    );
}

#[test]
fn a_failed_stream_restarts_after_the_backoff_until_max_retries_fail_in_a_row_without_a_batch() {
    use kglue_crds::job::StreamState;
    let (run, job) = started(0);
    let failed = |now: i64, runs: Vec<RunRecord<JobRunMetrics>>, job: &str, batches: i64| {
        let mut observed = streaming(now, runs, &[]);
        observed.jobs.insert(
            job.to_string(),
            AttemptJob::Failed {
                reason: "BackoffLimitExceeded".into(),
                detail: "exit code 1".into(),
            },
        );
        observed.progress.insert(
            job.to_string(),
            stream_progress(StreamState::Failed, batches, "batch 7: the sink's bucket is gone"),
        );
        decide(observed)
    };
    // Attempt 0 committed batches before it failed: the count starts at 1.
    let first = failed(100, vec![run.clone()], &job, 5);
    let (retry, ended) = (&first.runs[0], &first.runs[1]);
    assert_eq!(ended.state, RunState::Failed);
    assert_eq!(ended.message.as_deref(), Some("batch 7: the sink's bucket is gone"));
    assert_eq!(ended.failures_in_a_row, Some(1));
    assert_eq!((retry.attempt, retry.state), (1, RunState::Waiting));
    assert_eq!(retry.not_before, Some(time(at(110))));
    assert_eq!(first.events[0].reason, "RunRetrying");

    // Attempt 1 starts, fails without a batch: 2 in a row, the backoff doubles.
    let mut launched = streaming(110, first.runs.clone(), &[]);
    launched.jobs.clear();
    let started_again = decide(launched);
    let job1 = started_again.launch[0].job_name.clone();
    let second = failed(130, started_again.runs.clone(), &job1, 0);
    assert_eq!(second.runs[1].failures_in_a_row, Some(2));
    assert_eq!(second.runs[0].not_before, Some(time(at(150))));

    // Attempt 2 fails without a batch too: 3 in a row > maxRetries 2, the run ends Failed.
    let mut launched = streaming(150, second.runs.clone(), &[]);
    launched.jobs.clear();
    let started_again = decide(launched);
    let job2 = started_again.launch[0].job_name.clone();
    let third = failed(160, started_again.runs.clone(), &job2, 0);
    assert_eq!(third.runs[0].state, RunState::Failed);
    assert_eq!(third.runs[0].failures_in_a_row, Some(3));
    assert!(third.launch.is_empty());
    assert_eq!(third.events[0].reason, "RunFailed");
    assert!(
        third.events[0]
            .note
            .contains("3 attempt(s) in a row failed without committing a batch")
    );
}
