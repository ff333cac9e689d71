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

/// The longest base of a generated name: the API server cuts `generateName` to 58 characters
/// before it appends [`GENERATED_SUFFIX_LEN`] random ones (its `SimpleNameGenerator`), so that the
/// name fits 63.
pub const GENERATED_BASE_MAX: usize = 58;
/// The random characters the API server appends to a `generateName`.
pub const GENERATED_SUFFIX_LEN: usize = 5;

/// What every pod of the Kubernetes Job `job` is named before its random suffix: the Job
/// controller gives a (non-indexed) Job's pods `generateName: <job>-`, which the API server cuts
/// to [`GENERATED_BASE_MAX`] characters.
pub fn attempt_pod_prefix(job: &str) -> String {
    let mut prefix = format!("{job}-");
    if prefix.len() > GENERATED_BASE_MAX {
        // Job names are DNS labels: ASCII, so any byte index is a character boundary.
        prefix.truncate(GENERATED_BASE_MAX);
    }
    prefix
}

/// Whether `pod` is named as a pod of the Kubernetes Job `job` is: its prefix and exactly
/// [`GENERATED_SUFFIX_LEN`] more characters. The admission policy that binds a RunResult to its
/// pod (operator/src/admission.rs) says the same in CEL. Only names longer than 57 characters
/// are cut, and of the names [`attempt_job_name`] and its kin make, only the settle attempts of
/// one attempt of an object with a 40-character name differ after the cut (`…-s0`, `…-s1`): the
/// same run of the same object.
pub fn is_attempt_pod_name(job: &str, pod: &str) -> bool {
    let prefix = attempt_pod_prefix(job);
    pod.len() == prefix.len() + GENERATED_SUFFIX_LEN && pod.starts_with(&prefix)
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
    fn an_attempts_pods_are_named_after_it_and_no_other_attempts_are() {
        let job = attempt_job_name("clean", "jr-0123456789", 0);
        assert!(is_attempt_pod_name(&job, "clean-jr-0123456789-0-x7k2q"));
        assert!(!is_attempt_pod_name(&job, "clean-jr-0123456789-0-x7k2"));
        assert!(!is_attempt_pod_name(&job, "clean-jr-0123456789-1-x7k2q"));
        // Another attempt whose name starts with this one's: its pods are longer.
        let settle = settle_job_name("clean", "jr-0123456789", 0, 1);
        assert!(!is_attempt_pod_name(&job, &format!("{settle}-x7k2q")));
        assert!(!is_attempt_pod_name(&job, &format!("{job}-jr-0123456789-0-x7k2q")));
        // A name at the cut: the prefix is its first 58 characters, without the dash.
        let long = attempt_job_name(&"a".repeat(40), "jr-0123456789", 123);
        assert_eq!(long.len(), 58);
        let prefix = attempt_pod_prefix(&long);
        assert_eq!(prefix, long);
        assert!(is_attempt_pod_name(&long, &format!("{prefix}x7k2q")));
        assert!(!is_attempt_pod_name(&long, &format!("{long}-x7k2q")));
    }

    #[test]
    fn scheduled_request_ids_name_their_tick() {
        assert_eq!(schedule_request_id(1893459600), "schedule-1893459600");
        assert_eq!(schedule_tick("schedule-1893459600"), Some(1893459600));
        assert_eq!(schedule_tick("cli-1"), None);
        assert_eq!(schedule_tick("schedule-x"), None);
    }
}
