//! Ids and names: run ids, the request ids that triggers, workflows and schedules derive, and the
//! name of each attempt's Kubernetes Job (and so of its RunResult).

use sha2::{Digest, Sha256};

use crate::run_result::RunOwnerKind;

/// The prefix of a Job's run ids.
pub const JOB_RUN_PREFIX: &str = "jr-";
/// The prefix of a Crawler's run (crawl) ids.
pub const CRAWL_RUN_PREFIX: &str = "cr-";
/// The prefix of a Workflow's run ids.
pub const WORKFLOW_RUN_PREFIX: &str = "wr-";
/// The prefix of the request id of a run started by an object's own schedule; the tick's Unix
/// second follows.
pub const SCHEDULE_REQUEST_PREFIX: &str = "schedule-";

impl RunOwnerKind {
    /// The prefix of the kind's run ids.
    pub fn run_prefix(self) -> &'static str {
        match self {
            RunOwnerKind::Job => JOB_RUN_PREFIX,
            RunOwnerKind::Crawler => CRAWL_RUN_PREFIX,
        }
    }
}

/// `prefix` and ten hex digits of a hash of `uid` and `key`: deterministic, so that a request
/// handled twice (an operator restart) gives the same id; short, so that it fits in Kubernetes Job
/// names and is easy to type.
pub fn derived_id(prefix: &str, uid: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{uid}/{key}").as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// The run id a start request gets on an object: the kind's prefix and a hash of the object's UID
/// and the request id.
pub fn run_id(prefix: &str, object_uid: &str, request_id: &str) -> String {
    derived_id(prefix, object_uid, request_id)
}

/// The request id of the scheduled run for the tick at `unix_second`.
pub fn schedule_request_id(unix_second: i64) -> String {
    format!("{SCHEDULE_REQUEST_PREFIX}{unix_second}")
}

/// The tick a scheduled run's request id names, if it is one.
pub fn schedule_tick(request_id: &str) -> Option<i64> {
    request_id.strip_prefix(SCHEDULE_REQUEST_PREFIX)?.parse().ok()
}

/// The name of the Kubernetes Job of one attempt: `<object name, ≤40>-<run id>-<attempt>`, at
/// most 63 characters (the `job-name` label the Job controller sets must fit). The attempt's
/// RunResult has the same name.
pub fn attempt_job_name(object: &str, run_id: &str, attempt: i32) -> String {
    let mut base: String = object.chars().take(40).collect();
    while base.ends_with(['-', '.']) {
        base.pop();
    }
    format!("{base}-{run_id}-{attempt}")
}

/// The Kubernetes Job that removes what attempt `attempt` staged when it ended without deciding
/// to commit and no retry follows: the attempt's own name and `-c`.
pub fn cleanup_job_name(object: &str, run_id: &str, attempt: i32) -> String {
    format!("{}-c", attempt_job_name(object, run_id, attempt))
}

/// The Kubernetes Job of settle attempt `settle` (0, 1, …) of attempt `attempt`: the attempt's
/// own name and `-s<settle>` (at most 40 + 1 + 13 + 1 + 3 + 3 characters, within a label value).
pub fn settle_job_name(object: &str, run_id: &str, attempt: i32, settle: i32) -> String {
    format!("{}-s{settle}", attempt_job_name(object, run_id, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_deterministic_and_distinct() {
        let a = run_id("jr-", "uid-1", "r1");
        assert_eq!(a, run_id("jr-", "uid-1", "r1"));
        assert_ne!(a, run_id("jr-", "uid-1", "r2"));
        assert_ne!(a, run_id("jr-", "uid-2", "r1"));
        assert_eq!(a.len(), 13);
        assert!(a.starts_with("jr-"));
        assert_eq!(RunOwnerKind::Crawler.run_prefix(), "cr-");
    }

    #[test]
    fn attempt_job_names_fit_a_label_value() {
        let long = "a".repeat(39) + "-bbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let name = attempt_job_name(&long, "jr-0123456789", 10);
        assert!(name.len() <= 63, "{name}");
        assert_eq!(name, format!("{}-jr-0123456789-10", "a".repeat(39)));
        assert_eq!(attempt_job_name("clean", "jr-0123456789", 0), "clean-jr-0123456789-0");
        let settle = settle_job_name(&long, "jr-0123456789", 10, 2);
        assert!(settle.len() <= 63, "{settle}");
        assert_eq!(
            settle_job_name("clean", "jr-0123456789", 0, 1),
            "clean-jr-0123456789-0-s1"
        );
    }

    #[test]
    fn scheduled_request_ids_name_their_tick() {
        assert_eq!(schedule_request_id(1893459600), "schedule-1893459600");
        assert_eq!(schedule_tick("schedule-1893459600"), Some(1893459600));
        assert_eq!(schedule_tick("cli-1"), None);
        assert_eq!(schedule_tick("schedule-x"), None);
    }
}
