//! The requests users, the CLI, triggers and workflows make with annotations (docs/runs.md,
//! docs/workflows.md): start a run, stop a run, reset or rewind a bookmark, resume a workflow run,
//! update a workflow run's properties. [`Request`] is what a writer puts on an object
//! ([`Request::to_patch`]); [`Requests`] and [`WorkflowRequests`] are what the operator reads back
//! ([`Requests::from_annotations`]). Both sides use these types, so a request written by one is
//! always read by the other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::common::{StartedBy, StartedByKind};

/// The prefix of a start request's annotation key: `run.kglue.dev/<request-id>`.
pub const START_PREFIX: &str = "run.kglue.dev/";
/// The prefix of a stop request's annotation key: `stop.kglue.dev/<run-id>`.
pub const STOP_PREFIX: &str = "stop.kglue.dev/";
/// Reset a Job's bookmark.
pub const BOOKMARK_RESET: &str = "bookmark.kglue.dev/reset";
/// Rewind a Job's bookmark to the one a run started from (value: the run id, or empty for the
/// last committing run).
pub const BOOKMARK_REWIND: &str = "bookmark.kglue.dev/rewind";
/// The prefix of a resume request's annotation key: `resume.kglue.dev/<run-id>`.
pub const RESUME_PREFIX: &str = "resume.kglue.dev/";
/// The prefix of a run-properties update's annotation key: `properties.kglue.dev/<run-id>`.
pub const PROPERTIES_PREFIX: &str = "properties.kglue.dev/";

/// The value of a start annotation: the run's arguments and who asked. An empty value means no
/// arguments, started by hand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartBody {
    /// The run's arguments (a Job's `$name` values, a Workflow's run properties).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
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

impl StartBody {
    /// A start by hand: `user` (when known and not empty) is recorded as the starter's name.
    pub fn manual(arguments: BTreeMap<String, String>, user: Option<&str>) -> Self {
        StartBody {
            arguments,
            started_by: StartedBy {
                kind: StartedByKind::Manual,
                name: user.filter(|u| !u.is_empty()).map(str::to_string),
            },
        }
    }
}

/// The value of a resume annotation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResumeBody {
    /// The nodes to run again (with everything downstream). Empty: the nodes that failed.
    #[serde(default)]
    pub nodes: Vec<String>,
}

/// One request, as a writer puts it on an object.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Start a run (of a Job, Crawler or Workflow) or fire a Trigger.
    Start {
        /// The request id, the key's suffix; one request id starts one run.
        request_id: String,
        /// Arguments and starter.
        body: StartBody,
    },
    /// Stop a run.
    Stop {
        /// The run to stop.
        run_id: String,
    },
    /// Forget a Job's bookmark.
    BookmarkReset,
    /// Return a Job's bookmark to the one a run started from.
    BookmarkRewind {
        /// The run; `None`: the last committing run.
        to_run: Option<String>,
    },
    /// Run a finished workflow run's failed (or named) nodes again.
    Resume {
        /// The workflow run.
        run_id: String,
        /// Which nodes.
        body: ResumeBody,
    },
    /// Add to or change a workflow run's properties.
    Properties {
        /// The workflow run.
        run_id: String,
        /// The properties to set.
        properties: BTreeMap<String, String>,
    },
}

impl Request {
    /// The annotation's key and value.
    pub fn annotation(&self) -> (String, String) {
        match self {
            Request::Start { request_id, body } => (
                format!("{START_PREFIX}{request_id}"),
                // A struct of strings always serialises.
                serde_json::to_string(body).unwrap_or_default(),
            ),
            Request::Stop { run_id } => (format!("{STOP_PREFIX}{run_id}"), String::new()),
            Request::BookmarkReset => (BOOKMARK_RESET.to_string(), String::new()),
            Request::BookmarkRewind { to_run } => (BOOKMARK_REWIND.to_string(), to_run.clone().unwrap_or_default()),
            Request::Resume { run_id, body } => (
                format!("{RESUME_PREFIX}{run_id}"),
                if body.nodes.is_empty() {
                    String::new()
                } else {
                    serde_json::to_string(body).unwrap_or_default()
                },
            ),
            Request::Properties { run_id, properties } => (
                format!("{PROPERTIES_PREFIX}{run_id}"),
                serde_json::to_string(properties).unwrap_or_default(),
            ),
        }
    }

    /// The JSON merge patch that puts this request on an object.
    pub fn to_patch(&self) -> Value {
        Request::patch_of(std::slice::from_ref(self))
    }

    /// The JSON merge patch that puts all of `requests` on one object.
    pub fn patch_of(requests: &[Request]) -> Value {
        let annotations: Map<String, Value> = requests
            .iter()
            .map(|request| {
                let (key, value) = request.annotation();
                (key, Value::String(value))
            })
            .collect();
        json!({"metadata": {"annotations": annotations}})
    }
}

/// Checks that `id` can be the name part of an annotation key, as request ids and run ids must:
/// 1–63 letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit. `Err` says
/// what is wrong.
pub fn check_request_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("it is empty".into());
    }
    if id.len() > 63 {
        return Err(format!("it is {} characters long", id.len()));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!("{bad:?} is not allowed"));
    }
    let bytes = id.as_bytes();
    if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return Err("it must start and end with a letter or digit".into());
    }
    Ok(())
}

/// A start request, read from its annotation.
#[derive(Clone, Debug, PartialEq)]
pub struct StartRequest {
    /// The annotation key (empty for a start that has none, such as a scheduled tick).
    pub annotation: String,
    /// The request id (the key's suffix).
    pub id: String,
    /// The run's arguments, or why the annotation's value could not be read.
    pub body: Result<StartBody, String>,
}

/// A bookmark request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BookmarkRequest {
    /// Forget the bookmark.
    Reset,
    /// Return to the bookmark this run started from; `None`: the last committing run's.
    Rewind(Option<String>),
}

/// The start, stop and bookmark requests found in an object's annotations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Requests {
    /// Start requests, in key order.
    pub starts: Vec<StartRequest>,
    /// Stop requests: `(annotation key, run id)`.
    pub stops: Vec<(String, String)>,
    /// A bookmark request with its annotation key (reset wins over rewind when both are set).
    pub bookmark: Option<(String, BookmarkRequest)>,
}

impl Requests {
    /// Reads the requests in `annotations`. Keys the API server accepted are valid name parts, so
    /// every `run.kglue.dev/…` key yields a request; a malformed value yields one whose body is
    /// the error, which the run records instead of dropping it.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Self {
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

    /// Whether nothing is asked.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty() && self.stops.is_empty() && self.bookmark.is_none()
    }
}

/// A request about an existing run: `(annotation key, run id, body or why it is unreadable)`.
pub type RunRequest<T> = (String, String, Result<T, String>);

/// The workflow-only requests in an object's annotations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkflowRequests {
    /// Resume requests.
    pub resumes: Vec<RunRequest<ResumeBody>>,
    /// Run-properties updates.
    pub properties: Vec<RunRequest<BTreeMap<String, String>>>,
}

impl WorkflowRequests {
    /// Reads resume and properties requests from `annotations`.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Self {
        let mut requests = WorkflowRequests::default();
        for (key, value) in annotations {
            if let Some(run) = key.strip_prefix(RESUME_PREFIX) {
                let body = if value.trim().is_empty() {
                    Ok(ResumeBody::default())
                } else {
                    serde_json::from_str(value).map_err(|e| {
                        format!(
                            "annotation {key}: the value must be empty or JSON like {{\"nodes\": [\"clean\"]}}: {e}"
                        )
                    })
                };
                requests.resumes.push((key.clone(), run.to_string(), body));
            } else if let Some(run) = key.strip_prefix(PROPERTIES_PREFIX) {
                let body = serde_json::from_str(value).map_err(|e| {
                    format!(
                        "annotation {key}: the value must be a JSON object of strings like {{\"day\": \"2024-05-01\"}}: {e}"
                    )
                });
                requests.properties.push((key.clone(), run.to_string(), body));
            }
        }
        requests
    }

    /// Whether nothing is asked.
    pub fn is_empty(&self) -> bool {
        self.resumes.is_empty() && self.properties.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The annotations `requests` put on an object, as the API server would store them.
    fn written(requests: &[Request]) -> BTreeMap<String, String> {
        let patch = Request::patch_of(requests);
        serde_json::from_value(patch["metadata"]["annotations"].clone()).expect("a map of strings")
    }

    #[test]
    fn start_requests_carry_arguments_and_starter() {
        let requests = Requests::from_annotations(&annotations(&[
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
        let requests = Requests::from_annotations(&annotations(&[("run.kglue.dev/x", "{\"args\": 1}")]));
        let error = requests.starts[0].body.as_ref().expect_err("refused");
        assert!(error.starts_with("annotation run.kglue.dev/x:"), "{error}");
        assert!(error.contains("args"), "{error}");
    }

    #[test]
    fn stop_and_bookmark_requests() {
        let requests = Requests::from_annotations(&annotations(&[
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
        let both = Requests::from_annotations(&annotations(&[
            ("bookmark.kglue.dev/reset", ""),
            ("bookmark.kglue.dev/rewind", ""),
        ]));
        assert_eq!(both.bookmark.map(|(_, r)| r), Some(BookmarkRequest::Reset));
    }

    #[test]
    fn every_request_written_is_read_back_as_it_was_meant() {
        let body = StartBody::manual(
            BTreeMap::from([("day".to_string(), "2024-05-01".to_string())]),
            Some("alice"),
        );
        let annotations = written(&[
            Request::Start {
                request_id: "backfill-may".into(),
                body: body.clone(),
            },
            Request::Stop {
                run_id: "jr-3fa29c01d2".into(),
            },
            Request::BookmarkRewind {
                to_run: Some("jr-1".into()),
            },
            Request::Resume {
                run_id: "wr-1".into(),
                body: ResumeBody {
                    nodes: vec!["clean".into()],
                },
            },
            Request::Properties {
                run_id: "wr-2".into(),
                properties: BTreeMap::from([("day".to_string(), "2024-05-02".to_string())]),
            },
        ]);
        let read = Requests::from_annotations(&annotations);
        assert_eq!(read.starts.len(), 1);
        assert_eq!(read.starts[0].id, "backfill-may");
        assert_eq!(read.starts[0].annotation, "run.kglue.dev/backfill-may");
        assert_eq!(read.starts[0].body, Ok(body));
        assert_eq!(
            read.stops,
            [("stop.kglue.dev/jr-3fa29c01d2".to_string(), "jr-3fa29c01d2".to_string())]
        );
        assert_eq!(
            read.bookmark.map(|(_, r)| r),
            Some(BookmarkRequest::Rewind(Some("jr-1".into())))
        );
        let workflow = WorkflowRequests::from_annotations(&annotations);
        assert_eq!(workflow.resumes[0].1, "wr-1");
        assert_eq!(
            workflow.resumes[0].2.as_ref().map(|b| b.nodes.clone()),
            Ok(vec!["clean".to_string()])
        );
        assert_eq!(workflow.properties[0].1, "wr-2");
        assert_eq!(
            workflow.properties[0].2.as_ref().map(|p| p["day"].clone()),
            Ok("2024-05-02".to_string())
        );

        let reset = written(&[Request::BookmarkReset, Request::BookmarkRewind { to_run: None }]);
        assert_eq!(
            Requests::from_annotations(&reset).bookmark.map(|(_, r)| r),
            Some(BookmarkRequest::Reset)
        );
        let resume_failed = written(&[Request::Resume {
            run_id: "wr-1".into(),
            body: ResumeBody::default(),
        }]);
        assert_eq!(
            resume_failed["resume.kglue.dev/wr-1"], "",
            "resume the failed nodes: an empty value"
        );
        assert_eq!(
            WorkflowRequests::from_annotations(&resume_failed).resumes[0].2,
            Ok(ResumeBody::default())
        );
    }

    #[test]
    fn a_start_by_hand_without_arguments_reads_like_a_hand_written_request() {
        let value = |user| {
            Request::Start {
                request_id: "r".into(),
                body: StartBody::manual(BTreeMap::new(), user),
            }
            .annotation()
            .1
        };
        assert_eq!(value(None), r#"{"startedBy":{"kind":"Manual"}}"#);
        assert_eq!(value(Some("")), r#"{"startedBy":{"kind":"Manual"}}"#);
        assert_eq!(
            value(Some("alice")),
            r#"{"startedBy":{"kind":"Manual","name":"alice"}}"#
        );
        assert_eq!(
            Request::Stop { run_id: "jr-1".into() }.to_patch(),
            json!({"metadata": {"annotations": {"stop.kglue.dev/jr-1": ""}}})
        );
    }

    #[test]
    fn malformed_workflow_requests_name_the_annotation() {
        let requests = WorkflowRequests::from_annotations(&annotations(&[
            ("resume.kglue.dev/wr-1", "{\"node\": 1}"),
            ("properties.kglue.dev/wr-1", "[1]"),
        ]));
        let resume = requests.resumes[0].2.as_ref().expect_err("refused");
        assert!(resume.starts_with("annotation resume.kglue.dev/wr-1:"), "{resume}");
        let properties = requests.properties[0].2.as_ref().expect_err("refused");
        assert!(
            properties.starts_with("annotation properties.kglue.dev/wr-1:"),
            "{properties}"
        );
    }

    #[test]
    fn request_ids_follow_annotation_name_rules() {
        for good in ["a", "backfill-may", "cli-1714557600-3fa2c1", "A_1.b", &"x".repeat(63)] {
            assert_eq!(check_request_id(good), Ok(()), "{good}");
        }
        for (bad, reason) in [
            ("", "it is empty"),
            (&*"x".repeat(64), "64 characters"),
            ("-start", "start and end"),
            ("end.", "start and end"),
            ("has space", "' ' is not allowed"),
            ("slash/ed", "'/' is not allowed"),
            ("ünïcode", "is not allowed"),
        ] {
            let error = check_request_id(bad).expect_err(bad);
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }
}
