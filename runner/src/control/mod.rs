//! The `kglue` commands that drive work in the cluster: start, stop, list runs, reset or rewind a
//! bookmark, read a run's log, resume a workflow run, fire a trigger. Each writes the annotations
//! of docs/runs.md (the requests of `kglue_crds::protocol::requests`) and reads status, so anything
//! the CLI does can be done with `kubectl annotate` and `kubectl get` too; the operator alone acts
//! on them. [`Cluster`] takes a command for any kind and hands it to the module that knows the
//! kind: [`runs`] for Jobs and Crawlers, [`pipelines`] for Workflows and Triggers. Output goes to
//! a [`Console`], never straight to the process's streams.

pub mod pipelines;
pub mod render;
pub mod runs;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kglue_crds::common::RunState;
use kglue_crds::protocol::requests::{Request, StartBody, check_request_id};
use kglue_crds::run_result::RunOwnerKind;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Config};

use crate::cluster::NamespacedObject;
use serde_json::Value;

/// The field manager of the CLI's annotation writes.
const FIELD_MANAGER: &str = "kglue-cli";

/// How long `kglue start` waits for the operator to record the request.
const RECORD_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a cluster command's output goes: what it reports (stdout in the CLI) and its notes and
/// warnings (stderr). The library writes here and never to the process's streams itself.
pub struct Console<'a> {
    /// What the command reports.
    pub out: &'a mut dyn std::io::Write,
    /// Notes and warnings.
    pub err: &'a mut dyn std::io::Write,
}

/// What can go wrong driving runs in the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The output could not be written (a closed pipe).
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    /// The kubeconfig could not be read or the client not built.
    #[error("cannot reach the cluster: {0}")]
    Connect(String),
    /// A request id or run id does not fit an annotation key.
    #[error(
        "{what} {id:?} cannot be used: {reason} (1–63 letters, digits, '-', '_', '.', starting and ending with a letter or digit)"
    )]
    InvalidId {
        /// "request id" or "run id".
        what: &'static str,
        /// The id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// `--arg` given for a Crawler.
    #[error("a crawler takes no arguments; --arg is for jobs")]
    ArgumentsForCrawler,
    /// The Job or Crawler does not exist.
    #[error("{kind} {name} does not exist in namespace {namespace}")]
    NotFound {
        /// Job or Crawler.
        kind: &'static str,
        /// The name.
        name: String,
        /// The namespace.
        namespace: String,
    },
    /// The API server refused or failed a request.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The cause.
        source: Box<kube::Error>,
    },
    /// The operator did not record a start request in time.
    #[error(
        "the operator has not recorded request {request_id} within {seconds} s (is kglue-operator running? `kubectl describe` the object for Events); the request stays in place"
    )]
    NotRecorded {
        /// The request id.
        request_id: String,
        /// How long we waited.
        seconds: u64,
    },
    /// The run is not in the object's history.
    #[error("{kind} {name} has no run {run_id} in status.runs")]
    RunNotFound {
        /// Job or Crawler.
        kind: &'static str,
        /// The name.
        name: String,
        /// The run id.
        run_id: String,
    },
    /// The object has no runs at all.
    #[error("{kind} {name} has no runs yet")]
    NoRuns {
        /// Job or Crawler.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A run has no Kubernetes Job (yet, or any more).
    #[error("run {run_id} (attempt {attempt}) has no Kubernetes Job: it is {state:?}")]
    NoKubernetesJob {
        /// The run id.
        run_id: String,
        /// The attempt.
        attempt: i32,
        /// Its state.
        state: RunState,
    },
    /// The Kubernetes Job has no pods (not started, or removed after `--run-ttl`).
    #[error(
        "Kubernetes Job {job} has no pods (not started yet, or removed with the Job after the operator's --run-ttl)"
    )]
    NoPods {
        /// The Kubernetes Job.
        job: String,
    },
    /// The command is not for this kind.
    #[error("{0}")]
    WrongKind(String),
    /// The operator handled a request without doing what it asked.
    #[error("{what}")]
    Refused {
        /// What happened.
        what: String,
    },
    /// status.runs could not be read or printed.
    #[error("status.runs: {0}")]
    Json(#[from] serde_json::Error),
}

pub(crate) fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ControlError {
    let what = what.into();
    move |source| ControlError::Api {
        what,
        source: Box::new(source),
    }
}

/// A client for the current kubeconfig context (or the pod's service account) and the namespace
/// to use: `namespace` if given, else the context's, else `default`.
async fn connect(namespace: Option<String>) -> Result<(Client, String), ControlError> {
    let config = Config::infer()
        .await
        .map_err(|e| ControlError::Connect(e.to_string()))?;
    let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| ControlError::Connect(e.to_string()))?;
    Ok((client, namespace))
}

/// Checks that `id` can be the name part of an annotation key (the rule the operator applies
/// too, `kglue_crds::protocol::requests::check_request_id`).
pub fn validate_id(what: &'static str, id: &str) -> Result<(), ControlError> {
    check_request_id(id).map_err(|reason| ControlError::InvalidId {
        what,
        id: id.to_string(),
        reason,
    })
}

/// A request id: `cli-<unix seconds>-<6 hex digits>`. The clock keeps ids sortable; the random
/// part keeps two starts in the same second apart.
pub fn new_request_id(now: Timestamp, random: u32) -> String {
    format!("cli-{}-{:06x}", now.as_second(), random & 0xff_ffff)
}

/// 32 random bits without a dependency: std's `RandomState` is keyed from the OS's randomness
/// for each process; the clock and pid are hashed in so that two ids in one process differ too.
pub fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i128(Timestamp::now().as_nanosecond());
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}

/// The start request of a run started from the CLI by `user`.
pub fn start_request(request_id: &str, arguments: BTreeMap<String, String>, user: Option<&str>) -> Request {
    Request::Start {
        request_id: request_id.to_string(),
        body: StartBody::manual(arguments, user),
    }
}

/// Reads `name`; a missing object is [`ControlError::NotFound`].
pub(crate) async fn read_object<K>(
    client: &Client,
    namespace: &str,
    kind: &'static str,
    name: &str,
) -> Result<K, ControlError>
where
    K: NamespacedObject,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(api_error(format!("reading {kind} {name}")))?
        .ok_or_else(|| ControlError::NotFound {
            kind,
            name: name.to_string(),
            namespace: namespace.to_string(),
        })
}

/// Makes a start request of `options` (the request id given, or a new one), puts it with `put`
/// (the merge patch of the object's annotations) and says so: `request <id>: <what>`. Returns the
/// request id.
pub(crate) async fn put_start(
    options: StartOptions,
    what: &str,
    console: &mut Console<'_>,
    put: impl AsyncFnOnce(&Value) -> Result<(), ControlError>,
) -> Result<String, ControlError> {
    let StartOptions {
        request_id,
        arguments,
        user,
        ..
    } = options;
    let request_id = request_id.unwrap_or_else(|| new_request_id(Timestamp::now(), random_u32()));
    validate_id("request id", &request_id)?;
    put(&start_request(&request_id, arguments, user.as_deref()).to_patch()).await?;
    writeln!(console.out, "request {request_id}: {what}")?;
    Ok(request_id)
}

/// Asks to stop run `run_id` by putting the stop request with `put`, and says so:
/// `stop requested: run <id> of <what>`.
pub(crate) async fn put_stop(
    run_id: &str,
    what: &str,
    console: &mut Console<'_>,
    put: impl AsyncFnOnce(&Value) -> Result<(), ControlError>,
) -> Result<(), ControlError> {
    validate_id("run id", run_id)?;
    let stop = Request::Stop {
        run_id: run_id.to_string(),
    };
    put(&stop.to_patch()).await?;
    writeln!(console.out, "stop requested: run {run_id} of {what}")?;
    Ok(())
}

/// Sets annotations on `name` with a JSON merge patch; a missing object is [`ControlError::NotFound`].
pub(crate) async fn annotate<K>(
    client: &Client,
    namespace: &str,
    kind: &'static str,
    name: &str,
    patch: &Value,
) -> Result<(), ControlError>
where
    K: NamespacedObject,
{
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match Api::<K>::namespaced(client.clone(), namespace)
        .patch_metadata(name, &params, &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Err(ControlError::NotFound {
            kind,
            name: name.to_string(),
            namespace: namespace.to_string(),
        }),
        Err(error) => Err(api_error(format!("annotating {kind} {name}"))(error)),
    }
}

/// How `kglue runs` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsOutput {
    /// A table for people.
    Table,
    /// status.runs as JSON.
    Json,
}

/// The kinds the cluster commands act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A kglue Job.
    Job,
    /// A Crawler.
    Crawler,
    /// A Workflow.
    Workflow,
    /// A Trigger.
    Trigger,
}

impl ObjectKind {
    /// The run owner kind of jobs and crawlers; `command` names the command for the error.
    fn run_owner(self, command: &str) -> Result<RunOwnerKind, ControlError> {
        match self {
            ObjectKind::Job => Ok(RunOwnerKind::Job),
            ObjectKind::Crawler => Ok(RunOwnerKind::Crawler),
            ObjectKind::Workflow => Err(ControlError::WrongKind(format!(
                "{command} is for jobs and crawlers; a workflow's nodes are jobs and crawlers (`kglue runs workflow NAME` shows their run ids)"
            ))),
            ObjectKind::Trigger => Err(ControlError::WrongKind(format!(
                "{command} is for jobs and crawlers; a trigger has no runs of its own"
            ))),
        }
    }
}

/// What `kglue start` asks for.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// The request id; default: a new one ([`new_request_id`]).
    pub request_id: Option<String>,
    /// The run's arguments (a workflow's run properties; a trigger's extra action arguments).
    pub arguments: BTreeMap<String, String>,
    /// Who asks, recorded as the starter's name.
    pub user: Option<String>,
    /// Follow the run to its end.
    pub wait: bool,
}

/// A namespace of the cluster, for the cluster commands.
pub struct Cluster {
    client: Client,
    namespace: String,
}

impl Cluster {
    /// The current kubeconfig context's cluster (or the pod's service account), in `namespace` if
    /// given, else the context's, else `default`.
    pub async fn connect(namespace: Option<String>) -> Result<Self, ControlError> {
        let (client, namespace) = connect(namespace).await?;
        Ok(Cluster { client, namespace })
    }

    /// `kglue start`: starts a run of a Job, Crawler or Workflow, or fires a Trigger. Returns
    /// whether the run succeeded (waiting) or the request was recorded.
    pub async fn start(
        &self,
        kind: ObjectKind,
        name: &str,
        options: StartOptions,
        console: &mut Console<'_>,
    ) -> Result<bool, ControlError> {
        match kind {
            ObjectKind::Workflow => pipelines::start_workflow(self, name, options, console).await,
            ObjectKind::Trigger => {
                pipelines::fire_trigger(self, name, options, console).await?;
                Ok(true)
            }
            kind => runs::start(self, kind.run_owner("start")?, name, options, console).await,
        }
    }

    /// `kglue stop`: asks to stop a run of a Job, Crawler or Workflow.
    pub async fn stop(
        &self,
        kind: ObjectKind,
        name: &str,
        run_id: &str,
        console: &mut Console<'_>,
    ) -> Result<(), ControlError> {
        match kind {
            ObjectKind::Workflow => pipelines::stop_workflow(self, name, run_id, console).await,
            kind => runs::stop(self, kind.run_owner("stop")?, name, run_id, console).await,
        }
    }

    /// `kglue runs`: the runs of a Job, Crawler or Workflow, or a Trigger's fires.
    pub async fn runs(
        &self,
        kind: ObjectKind,
        name: &str,
        output: RunsOutput,
        console: &mut Console<'_>,
    ) -> Result<(), ControlError> {
        match kind {
            ObjectKind::Workflow => pipelines::workflow_runs(self, name, output, console).await,
            ObjectKind::Trigger => pipelines::trigger_fires(self, name, output, console).await,
            kind => runs::runs(self, kind.run_owner("runs")?, name, output, console).await,
        }
    }

    /// `kglue logs`: the log of a Job run's or a crawl's newest attempt.
    pub async fn logs(
        &self,
        kind: ObjectKind,
        name: &str,
        run_id: Option<&str>,
        console: &mut Console<'_>,
    ) -> Result<(), ControlError> {
        let kind = kind.run_owner("logs")?;
        runs::logs(self, kind, name, run_id, console).await
    }

    /// `kglue resume`: runs a finished workflow run's failed (or named) nodes again.
    pub async fn resume(
        &self,
        kind: ObjectKind,
        name: &str,
        run_id: &str,
        nodes: &[String],
        wait: bool,
        console: &mut Console<'_>,
    ) -> Result<bool, ControlError> {
        if kind != ObjectKind::Workflow {
            return Err(ControlError::WrongKind(
                "resume is for workflows: kglue resume workflow NAME --run ID [--node NODE]...".into(),
            ));
        }
        pipelines::resume_workflow(self, name, run_id, nodes, wait, console).await
    }

    /// `kglue bookmark reset|rewind job NAME`: asks the operator to change a Job's bookmark.
    pub async fn bookmark(&self, name: &str, request: &Request, console: &mut Console<'_>) -> Result<(), ControlError> {
        runs::bookmark(self, name, request, console).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn request_ids_follow_the_annotation_rules() {
        for good in ["a", "backfill-may", "cli-1714557600-3fa2c1", "A_1.b", &"x".repeat(63)] {
            assert!(validate_id("request id", good).is_ok(), "{good}");
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
            let error = validate_id("request id", bad).expect_err(bad).to_string();
            assert!(error.contains(reason), "{bad}: {error}");
            assert!(error.starts_with("request id"), "{error}");
        }
    }

    #[test]
    fn new_request_ids_are_valid_and_carry_the_time() {
        let now: Timestamp = "2024-05-01T10:00:00Z".parse().expect("time");
        let id = new_request_id(now, 0xdead_beef);
        assert_eq!(id, "cli-1714557600-adbeef");
        assert!(validate_id("request id", &id).is_ok());
        assert_eq!(new_request_id(now, 1), "cli-1714557600-000001");
        assert_ne!(random_u32(), random_u32(), "two draws differ");
    }

    #[test]
    fn start_patch_sets_one_annotation_with_arguments_and_user() {
        let arguments = BTreeMap::from([("day".to_string(), "2024-05-01".to_string())]);
        let patch = start_request("backfill-may", arguments, Some("alice")).to_patch();
        let value = patch["metadata"]["annotations"]["run.kglue.dev/backfill-may"]
            .as_str()
            .expect("a string value");
        assert_eq!(
            serde_json::from_str::<Value>(value).expect("JSON"),
            json!({"arguments": {"day": "2024-05-01"}, "startedBy": {"kind": "Manual", "name": "alice"}})
        );
        assert_eq!(patch["metadata"]["annotations"].as_object().map(|o| o.len()), Some(1));
        // No user, no arguments: what a hand-written request would say.
        let value = |user| start_request("r", BTreeMap::new(), user).annotation().1;
        assert_eq!(value(None), r#"{"startedBy":{"kind":"Manual"}}"#);
        assert_eq!(value(Some("")), r#"{"startedBy":{"kind":"Manual"}}"#);
    }

    #[test]
    fn stop_and_bookmark_patches() {
        assert_eq!(
            Request::Stop {
                run_id: "jr-3fa29c01d2".into()
            }
            .to_patch(),
            json!({"metadata": {"annotations": {"stop.kglue.dev/jr-3fa29c01d2": ""}}})
        );
        assert_eq!(
            Request::BookmarkReset.to_patch(),
            json!({"metadata": {"annotations": {"bookmark.kglue.dev/reset": ""}}})
        );
        assert_eq!(
            Request::BookmarkRewind {
                to_run: Some("jr-1".into())
            }
            .to_patch(),
            json!({"metadata": {"annotations": {"bookmark.kglue.dev/rewind": "jr-1"}}})
        );
        assert_eq!(
            Request::BookmarkRewind { to_run: None }.to_patch(),
            json!({"metadata": {"annotations": {"bookmark.kglue.dev/rewind": ""}}})
        );
    }
}
