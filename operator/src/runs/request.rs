//! The requests users (and the CLI, triggers and workflows) make with annotations: start a run,
//! stop a run, reset or rewind a bookmark (docs/runs.md). Pure: reading annotations into typed
//! requests, naming runs and their Kubernetes Jobs.

use std::collections::BTreeMap;

use kglue_crds::common::{StartedBy, StartedByKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The prefix of a start request's annotation key: `run.kglue.dev/<request-id>`.
pub const START_PREFIX: &str = "run.kglue.dev/";
/// The prefix of a stop request's annotation key: `stop.kglue.dev/<run-id>`.
pub const STOP_PREFIX: &str = "stop.kglue.dev/";
/// Reset the bookmark.
pub const BOOKMARK_RESET: &str = "bookmark.kglue.dev/reset";
/// Rewind the bookmark to the one a run started from (value: the run id, or empty for the last).
pub const BOOKMARK_REWIND: &str = "bookmark.kglue.dev/rewind";

/// A start request, read from its annotation.
#[derive(Clone, Debug, PartialEq)]
pub struct StartRequest {
    /// The annotation key.
    pub annotation: String,
    /// The request id (the key's suffix).
    pub id: String,
    /// The run's arguments, or why the annotation's value could not be read.
    pub body: Result<StartBody, String>,
}

/// The value of a start annotation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartBody {
    /// The run's arguments.
    #[serde(default)]
    pub arguments: BTreeMap<String, String>,
    /// Who asked. Default: Manual.
    #[serde(default = "manual")]
    pub started_by: StartedBy,
}

fn manual() -> StartedBy {
    StartedBy {
        kind: StartedByKind::Manual,
        name: None,
    }
}

impl Default for StartBody {
    fn default() -> Self {
        StartBody {
            arguments: BTreeMap::new(),
            started_by: manual(),
        }
    }
}

/// A bookmark request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BookmarkRequest {
    /// Forget the bookmark.
    Reset,
    /// Return to the bookmark this run started from; `None`: the last committing run's.
    Rewind(Option<String>),
}

/// Every request found in an object's annotations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Requests {
    /// Start requests, by request id.
    pub starts: Vec<StartRequest>,
    /// Stop requests: `(annotation key, run id)`.
    pub stops: Vec<(String, String)>,
    /// A bookmark request with its annotation key (reset wins over rewind when both are set).
    pub bookmark: Option<(String, BookmarkRequest)>,
}

/// Whether `id` may be a request id: an annotation name part (1–63 characters, letters, digits,
/// `-`, `_`, `.`, beginning and ending with a letter or digit).
pub fn valid_request_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Reads the requests in `annotations`. Keys the API server accepted are valid name parts, so
/// every `run.kglue.dev/…` key yields a request; a malformed value yields one whose body is the
/// error, which the run records instead of dropping it.
pub fn read_requests(annotations: &BTreeMap<String, String>) -> Requests {
    let mut requests = Requests::default();
    for (key, value) in annotations {
        if let Some(id) = key.strip_prefix(START_PREFIX) {
            let body = if value.trim().is_empty() {
                Ok(StartBody::default())
            } else {
                serde_json::from_str::<StartBody>(value).map_err(|e| {
                    format!(
                        "annotation {key}: the value must be empty or JSON like {{\"arguments\": {{\"name\": \"value\"}}}}: {e}"
                    )
                })
            };
            requests.starts.push(StartRequest {
                annotation: key.clone(),
                id: id.to_string(),
                body,
            });
        } else if let Some(run) = key.strip_prefix(STOP_PREFIX) {
            requests.stops.push((key.clone(), run.to_string()));
        } else if key == BOOKMARK_RESET {
            requests.bookmark = Some((key.clone(), BookmarkRequest::Reset));
        } else if key == BOOKMARK_REWIND && !matches!(requests.bookmark, Some((_, BookmarkRequest::Reset))) {
            let run = Some(value.trim().to_string()).filter(|v| !v.is_empty());
            requests.bookmark = Some((key.clone(), BookmarkRequest::Rewind(run)));
        }
    }
    requests
}

/// The run id a request gets: a prefix for the kind (`jr-` for a Job, `cr-` for a Crawler) and
/// ten hex digits of a hash of the object's UID and the request id. Deterministic, so that a
/// request handled twice (an operator restart) is the same run; short, so that it fits in
/// Kubernetes Job names and is easy to type.
pub fn run_id(prefix: &str, object_uid: &str, request_id: &str) -> String {
    let digest = Sha256::digest(format!("{object_uid}/{request_id}").as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// The name of the Kubernetes Job of one attempt: `<object name, ≤40>-<run id>-<attempt>`, at
/// most 63 characters (the `job-name` label the Job controller sets must fit).
pub fn attempt_job_name(object: &str, run_id: &str, attempt: i32) -> String {
    let mut base: String = object.chars().take(40).collect();
    while base.ends_with(['-', '.']) {
        base.pop();
    }
    format!("{base}-{run_id}-{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn start_requests_carry_arguments_and_starter() {
        let requests = read_requests(&annotations(&[
            ("run.kglue.dev/a", ""),
            (
                "run.kglue.dev/b",
                r#"{"arguments": {"day": "2024-05-01"}, "startedBy": {"kind": "Trigger", "name": "nightly"}}"#,
            ),
            ("unrelated/x", "y"),
        ]));
        assert_eq!(requests.starts.len(), 2);
        assert_eq!(requests.starts[0].body, Ok(StartBody::default()));
        let body = requests.starts[1].body.as_ref().expect("valid");
        assert_eq!(body.arguments["day"], "2024-05-01");
        assert_eq!(body.started_by.kind, StartedByKind::Trigger);
        assert_eq!(body.started_by.name.as_deref(), Some("nightly"));
    }

    #[test]
    fn a_malformed_start_value_is_kept_as_an_error_naming_the_annotation() {
        let requests = read_requests(&annotations(&[("run.kglue.dev/x", "{\"args\": 1}")]));
        let error = requests.starts[0].body.as_ref().expect_err("refused");
        assert!(error.starts_with("annotation run.kglue.dev/x:"), "{error}");
        assert!(error.contains("args"), "{error}");
    }

    #[test]
    fn stop_and_bookmark_requests() {
        let requests = read_requests(&annotations(&[
            ("stop.kglue.dev/jr-0123456789", ""),
            ("bookmark.kglue.dev/rewind", "jr-1"),
        ]));
        assert_eq!(
            requests.stops,
            vec![("stop.kglue.dev/jr-0123456789".into(), "jr-0123456789".into())]
        );
        assert_eq!(
            requests.bookmark,
            Some((
                "bookmark.kglue.dev/rewind".into(),
                BookmarkRequest::Rewind(Some("jr-1".into()))
            ))
        );
        let both = read_requests(&annotations(&[
            ("bookmark.kglue.dev/reset", ""),
            ("bookmark.kglue.dev/rewind", ""),
        ]));
        assert_eq!(both.bookmark.map(|(_, r)| r), Some(BookmarkRequest::Reset));
    }

    #[test]
    fn run_ids_are_deterministic_and_distinct() {
        let a = run_id("jr-", "uid-1", "r1");
        assert_eq!(a, run_id("jr-", "uid-1", "r1"));
        assert_ne!(a, run_id("jr-", "uid-1", "r2"));
        assert_ne!(a, run_id("jr-", "uid-2", "r1"));
        assert_eq!(a.len(), 13);
        assert!(a.starts_with("jr-"));
    }

    #[test]
    fn attempt_job_names_fit_a_label_value() {
        let long = "a".repeat(39) + "-bbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let name = attempt_job_name(&long, "jr-0123456789", 10);
        assert!(name.len() <= 63, "{name}");
        assert_eq!(name, format!("{}-jr-0123456789-10", "a".repeat(39)));
        assert_eq!(attempt_job_name("clean", "jr-0123456789", 0), "clean-jr-0123456789-0");
    }

    #[test]
    fn request_ids_follow_annotation_name_rules() {
        assert!(valid_request_id("cli-1700000000-a1b2c3"));
        assert!(valid_request_id("a"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("-a"));
        assert!(!valid_request_id("a/b"));
        assert!(!valid_request_id(&"a".repeat(64)));
    }
}
