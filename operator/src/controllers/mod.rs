//! The controllers, one module per kind, and the pipeline they share.
//!
//! A kind implements [`Reconcile`]: `read` (the only step that calls the API: the objects the spec
//! refers to), `validate` (pure: the list of [`Problem`]s), and optionally `status_extra` (pure:
//! kind-specific status fields). [`reconcile`] then builds the status ([`build_status`], pure),
//! applies it with server-side apply on the `status` subresource, publishes an Event when the
//! object turns Ready or Stalled, and returns the requeue policy. Errors are retried with a
//! per-object exponential backoff ([`error_policy`]), never a fixed interval.
//!
//! Objects are watched through `DeserializeGuard`, so a malformed object (one the API server
//! accepted but these types cannot read, e.g. after a CRD downgrade) is reported as `Stalled` with
//! reason `InvalidSpec` instead of stalling the whole controller.

pub mod classifier;
pub mod connection;
pub mod crawler;
pub mod database;
pub mod job;
pub mod table;
pub mod trigger;
pub mod workflow;

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kglue_crds::common::{CONDITION_READY, CONDITION_STALLED, ObservedStatus};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::discovery::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Why an object is Stalled: CamelCase words, as kstatus and `docs/validation.md` name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A nested column type does not parse.
    InvalidColumnType,
    /// The Database with the named `databaseName` does not exist in the namespace.
    DatabaseNotFound,
    /// A referenced Connection does not exist.
    ConnectionNotFound,
    /// The credentials Secret does not exist.
    SecretNotFound,
    /// The credentials Secret lacks a named key.
    SecretKeyNotFound,
    /// A listed Classifier does not exist.
    ClassifierNotFound,
    /// A referenced Table does not exist.
    TableNotFound,
    /// A referenced Job does not exist.
    JobNotFound,
    /// A referenced Crawler does not exist.
    CrawlerNotFound,
    /// A referenced Workflow does not exist.
    WorkflowNotFound,
    /// The cron expression or time zone does not parse.
    InvalidSchedule,
    /// An exclusion glob does not compile.
    InvalidExclusion,
    /// The grok pattern does not compile.
    InvalidPattern,
    /// Workflow nodes depend on each other in a cycle.
    CycleDetected,
    /// The object cannot be read as its kind (accepted by an older or newer schema).
    InvalidSpec,
}

impl Reason {
    /// The CamelCase word written to conditions and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidColumnType => "InvalidColumnType",
            Reason::DatabaseNotFound => "DatabaseNotFound",
            Reason::ConnectionNotFound => "ConnectionNotFound",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::SecretKeyNotFound => "SecretKeyNotFound",
            Reason::ClassifierNotFound => "ClassifierNotFound",
            Reason::TableNotFound => "TableNotFound",
            Reason::JobNotFound => "JobNotFound",
            Reason::CrawlerNotFound => "CrawlerNotFound",
            Reason::WorkflowNotFound => "WorkflowNotFound",
            Reason::InvalidSchedule => "InvalidSchedule",
            Reason::InvalidExclusion => "InvalidExclusion",
            Reason::InvalidPattern => "InvalidPattern",
            Reason::CycleDetected => "CycleDetected",
            Reason::InvalidSpec => "InvalidSpec",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that keeps an object from working as specified, with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The condition reason.
    pub reason: Reason,
    /// What is wrong and what to fix, naming the field.
    pub message: String,
}

impl Problem {
    /// A problem with a reason and a message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Problem {
            reason,
            message: message.into(),
        }
    }
}

/// What can make a reconcile fail (and be retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The object has no namespace (every kglue kind is namespaced).
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

impl Error {
    /// A short class for the error metric's label.
    pub fn class(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "ApiError",
            Error::Kube(_) => "ClientError",
            Error::NoNamespace(_) => "NoNamespace",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events on the reconciled objects.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per object, for the exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The namespace watched, or all.
    pub namespace: Option<String>,
    /// How runs are launched; `None` turns runs off (start requests stay pending).
    pub runner: Option<crate::runs::RunnerSettings>,
}

impl Context {
    /// A context; `namespace` restricts every watch to one namespace.
    pub fn new(client: Client, metrics: Arc<Metrics>, namespace: Option<String>, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: crate::FIELD_MANAGER.into(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            failures: Mutex::new(HashMap::new()),
            namespace,
            runner: None,
        }
    }

    /// The same context, launching runs with `settings`.
    pub fn with_runner(mut self, settings: crate::runs::RunnerSettings) -> Self {
        self.runner = Some(settings);
        self
    }

    /// An API handle for watching `K` in the watched namespace(s).
    pub fn watch_api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        match &self.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    /// Counts a failure of `key` and returns how many there were in a row.
    fn record_failure(&self, key: &str) -> u32 {
        // A poisoned lock only means another reconcile panicked while counting; the map is still
        // a valid map of counters.
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    fn reset_failures(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(key);
    }
}

/// A kglue kind the shared pipeline can reconcile.
pub trait Reconcile:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// What `read` found: the referenced objects, or facts about them.
    type Refs: Send + Sync;

    /// The status part every kind shares, as last written.
    fn observed(&self) -> Option<&ObservedStatus>;

    /// Reads what the spec refers to. The only step that calls the API.
    fn read(&self, client: &Client, namespace: &str) -> impl Future<Output = Result<Self::Refs, Error>> + Send;

    /// Everything that keeps the object from working, in spec order. Pure.
    fn validate(&self, refs: &Self::Refs) -> Vec<Problem>;

    /// Kind-specific status fields owned by the operator (e.g. a Database's table count). Pure.
    fn status_extra(&self, _refs: &Self::Refs) -> Map<String, Value> {
        Map::new()
    }

    /// What kinds that act do after the conditions are written: runs of Jobs and Crawlers
    /// (`crate::runs`), Trigger fires (`crate::triggers`), Workflow runs (`crate::workflows`).
    /// `blocked` is the Stalled message, if any. Returns when to look again.
    fn reconcile_runs(
        _ctx: &Context,
        _namespace: &str,
        _name: &str,
        _blocked: Option<String>,
    ) -> impl Future<Output = Result<Option<Duration>, Error>> + Send {
        async { Ok(None) }
    }
}

/// How long the healthy objects wait before they are reconciled again without a change. Every
/// reference is watched, so this is a safety net against a missed watch event, not a poll.
pub const RESYNC: Duration = Duration::from_secs(3600);

/// The longest a failing object waits between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The delay before retry number `failures` (1 for the first): 1 s doubling up to
/// [`MAX_BACKOFF`], with up to 10 % spread derived from `key` so that many objects failing
/// together (an API server restart) do not retry in lockstep.
pub fn backoff_delay(failures: u32, key: &str) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let base = Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF);
    let spread = key
        .bytes()
        .fold(0u64, |hash, byte| hash.wrapping_mul(31).wrapping_add(u64::from(byte)))
        % 100;
    base + base.mul_f64(spread as f64 / 1000.0)
}

/// What to do after a successful reconcile: every reference is watched, so a Stalled object
/// waits for a change as much as a Ready one; both get the [`RESYNC`] safety net.
pub fn requeue_policy(_problems: &[Problem]) -> Action {
    Action::requeue(RESYNC)
}

/// The longest condition message written; the rest is cut, so status stays bounded whatever the
/// number of problems.
pub const MAX_MESSAGE: usize = 4096;

/// The conditions for `problems`: `Ready` True (reason `Reconciled`) when there are none;
/// otherwise `Ready` False and `Stalled` True with the first problem's reason and every message.
/// `lastTransitionTime` is kept from `existing` when a condition's status did not change. A
/// healthy object has no `Stalled` condition: server-side apply removes the entry the operator
/// wrote before, as kstatus expects.
pub fn build_conditions(
    generation: Option<i64>,
    existing: &[Condition],
    problems: &[Problem],
    now: &Time,
) -> Vec<Condition> {
    let condition = |type_: &str, status: &str, reason: &str, message: String| {
        let last_transition_time = existing
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time,
            observed_generation: generation,
        }
    };
    match problems.first() {
        None => vec![condition(
            CONDITION_READY,
            "True",
            "Reconciled",
            "the spec is valid and every object it refers to exists".into(),
        )],
        Some(first) => {
            let mut message = problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            if message.len() > MAX_MESSAGE {
                let mut cut = MAX_MESSAGE;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
                message.push('…');
            }
            vec![
                condition(CONDITION_READY, "False", first.reason.as_str(), message.clone()),
                condition(CONDITION_STALLED, "True", first.reason.as_str(), message),
            ]
        }
    }
}

/// The status the operator applies: `observedGeneration`, the conditions and the kind's extra
/// fields. Pure.
pub fn build_status(
    generation: Option<i64>,
    existing: &[Condition],
    problems: &[Problem],
    now: &Time,
    extra: Map<String, Value>,
) -> Value {
    let mut status = extra;
    if let Some(generation) = generation {
        status.insert("observedGeneration".into(), json!(generation));
    }
    status.insert(
        "conditions".into(),
        json!(build_conditions(generation, existing, problems, now)),
    );
    Value::Object(status)
}

/// What changed between the old and new conditions that deserves an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The object became Ready.
    BecameReady,
    /// The object became Stalled, or Stalled for another reason.
    BecameStalled {
        /// The new reason.
        reason: String,
        /// The new message.
        message: String,
    },
}

/// The transition from `old` to `new` conditions, if any. Pure.
pub fn transition(old: &[Condition], new: &[Condition]) -> Option<Transition> {
    let ready = |conditions: &[Condition]| {
        conditions
            .iter()
            .any(|c| c.type_ == CONDITION_READY && c.status == "True")
    };
    let stalled = |conditions: &[Condition]| {
        conditions
            .iter()
            .find(|c| c.type_ == CONDITION_STALLED && c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    if ready(new) && !ready(old) {
        return Some(Transition::BecameReady);
    }
    match (stalled(old), stalled(new)) {
        (old, Some((reason, message))) if old.as_ref().map(|(r, _)| r) != Some(&reason) => {
            Some(Transition::BecameStalled { reason, message })
        }
        _ => None,
    }
}

fn object_key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// The shared reconcile: read → validate → build status → apply → Event → requeue.
pub async fn reconcile<K: Reconcile>(guard: Arc<DeserializeGuard<K>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let kind = K::kind(&());
    let result = reconcile_once(&guard, &ctx).await;
    ctx.metrics.reconciled(&kind, started.elapsed());
    let key = object_key(guard.as_ref());
    match &result {
        Ok(_) => ctx.reset_failures(&key),
        Err(error) => ctx.metrics.reconcile_failed(&kind, error.class()),
    }
    result
}

async fn reconcile_once<K: Reconcile>(guard: &DeserializeGuard<K>, ctx: &Context) -> Result<Action, Error> {
    let kind = K::kind(&());
    let name = guard.name_any();
    let namespace = guard
        .namespace()
        .ok_or_else(|| Error::NoNamespace(format!("{kind} {name}")))?;
    let generation = guard.meta().generation;
    let (problems, existing, extra) = match &guard.0 {
        Ok(object) => {
            let refs = object.read(&ctx.client, &namespace).await?;
            let existing = object.observed().map(|o| o.conditions.clone()).unwrap_or_default();
            (object.validate(&refs), existing, object.status_extra(&refs))
        }
        Err(invalid) => (
            vec![Problem::new(
                Reason::InvalidSpec,
                format!(
                    "the operator cannot read this {kind}: {}; fix the spec or upgrade the operator to match the CRD",
                    invalid.error
                ),
            )],
            // The status could not be read either; the first write sets every transition time.
            Vec::new(),
            Map::new(),
        ),
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = build_status(generation, &existing, &problems, &now, extra);
    let new_conditions: Vec<Condition> = serde_json::from_value(status["conditions"].clone()).unwrap_or_default();

    // A dynamic API so that the response (the whole object) need not deserialize as K: a
    // malformed object must still get its status.
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, &resource);
    let patch = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(crate::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;

    if let Some(first) = problems.first() {
        ctx.metrics.found_stalled(&kind, first.reason.as_str());
    }
    if let Some(change) = transition(&existing, &new_conditions) {
        let event = match change {
            Transition::BecameReady => Event {
                type_: EventType::Normal,
                reason: "Ready".into(),
                note: Some(format!("{kind} is valid and every object it refers to exists")),
                action: "Validate".into(),
                secondary: None,
            },
            Transition::BecameStalled { reason, message } => Event {
                type_: EventType::Warning,
                reason,
                note: Some(truncate(&message, 1000)),
                action: "Validate".into(),
                secondary: None,
            },
        };
        // An Event is a courtesy: failing to publish one must not fail (and retry) the reconcile
        // whose status is already written.
        if let Err(error) = ctx.recorder.publish(&event, &guard.object_ref(&())).await {
            tracing::warn!(%kind, %name, %namespace, %error, "publishing an Event failed");
        }
    }
    tracing::info!(%kind, %name, %namespace, ?generation, problems = problems.len(), "reconciled");
    let mut action = requeue_policy(&problems);
    if guard.0.is_ok() {
        let blocked = (!problems.is_empty()).then(|| {
            problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        });
        if let Some(after) = K::reconcile_runs(ctx, &namespace, &name, blocked).await? {
            action = Action::requeue(after.min(RESYNC));
        }
    }
    Ok(action)
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// Retries a failed reconcile after [`backoff_delay`]: exponential per object, reset by the next
/// success.
pub fn error_policy<K: Reconcile>(guard: Arc<DeserializeGuard<K>>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = object_key(guard.as_ref());
    let failures = ctx.record_failure(&key);
    let delay = backoff_delay(failures, &key);
    tracing::warn!(kind = %K::kind(&()), object = %key, %error, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The objects in `store` in `namespace` for which `refers` holds: the mapper of a watch on a
/// referenced kind.
pub fn referrers<K>(
    store: &Store<DeserializeGuard<K>>,
    namespace: Option<&str>,
    refers: impl Fn(&K) -> bool,
) -> Vec<ObjectRef<DeserializeGuard<K>>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .state()
        .iter()
        .filter(|guard| guard.meta().namespace.as_deref() == namespace)
        .filter(|guard| guard.0.as_ref().is_ok_and(&refers))
        .map(|guard| ObjectRef::from_obj(guard.as_ref()))
        .collect()
}

/// A controller of `K` with the shared settings: all watches use `DeserializeGuard`.
pub fn controller<K: Reconcile>(ctx: &Context) -> Controller<DeserializeGuard<K>> {
    Controller::new(
        ctx.watch_api::<DeserializeGuard<K>>(),
        watcher::Config::default().any_semantic(),
    )
}

/// Runs a built controller until `shutdown` turns true, logging each result.
pub async fn run<K: Reconcile>(
    controller: Controller<DeserializeGuard<K>>,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) {
    let kind = K::kind(&()).to_string();
    controller
        .graceful_shutdown_on(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                // Reconcile errors are logged by error_policy; these are watch and queue errors.
                tracing::debug!(%kind, %error, "controller stream");
            }
            futures::future::ready(())
        })
        .await;
}

/// Runs every controller until `shutdown` turns true.
pub async fn run_all(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    futures::join!(
        database::run(ctx.clone(), shutdown.clone()),
        table::run(ctx.clone(), shutdown.clone()),
        classifier::run(ctx.clone(), shutdown.clone()),
        connection::run(ctx.clone(), shutdown.clone()),
        crawler::run(ctx.clone(), shutdown.clone()),
        job::run(ctx.clone(), shutdown.clone()),
        trigger::run(ctx.clone(), shutdown.clone()),
        workflow::run(ctx, shutdown),
    );
}

/// Which of `names` exist as `K` in `namespace`, by GET. Read steps use it for references by name.
pub async fn existing_names<K>(
    client: &Client,
    namespace: &str,
    names: impl IntoIterator<Item = String>,
) -> Result<std::collections::BTreeSet<String>, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    // Metadata only: existence is all that is asked, and a malformed object still exists.
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut found = std::collections::BTreeSet::new();
    for name in names.into_iter().collect::<std::collections::BTreeSet<_>>() {
        if api.get_metadata_opt(&name).await?.is_some() {
            found.insert(name);
        }
    }
    Ok(found)
}

/// One problem per name in `wanted` that is not in `found`, in `wanted`'s order.
pub fn missing<'a>(
    wanted: impl IntoIterator<Item = (&'a str, String)>,
    found: &std::collections::BTreeSet<String>,
    reason: Reason,
    kind: &str,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (name, field) in wanted {
        if !found.contains(name) && seen.insert(name.to_string()) {
            problems.push(Problem::new(
                reason,
                format!(
                    "{field} names {kind} {name:?}, which does not exist in this namespace; create it or fix the name"
                ),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("valid"))
    }

    #[test]
    fn healthy_objects_are_ready_without_stalled() {
        let conditions = build_conditions(Some(3), &[], &[], &time(10));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].type_, "Ready");
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].observed_generation, Some(3));
    }

    #[test]
    fn problems_make_ready_false_and_stalled_true_with_the_first_reason() {
        let problems = [
            Problem::new(Reason::DatabaseNotFound, "no db"),
            Problem::new(Reason::ConnectionNotFound, "no conn"),
        ];
        let conditions = build_conditions(Some(1), &[], &problems, &time(10));
        let ready = &conditions[0];
        let stalled = &conditions[1];
        assert_eq!((ready.type_.as_str(), ready.status.as_str()), ("Ready", "False"));
        assert_eq!((stalled.type_.as_str(), stalled.status.as_str()), ("Stalled", "True"));
        assert_eq!(stalled.reason, "DatabaseNotFound");
        assert_eq!(stalled.message, "no db; no conn");
    }

    #[test]
    fn transition_times_survive_unchanged_statuses() {
        let first = build_conditions(Some(1), &[], &[], &time(10));
        let again = build_conditions(Some(2), &first, &[], &time(20));
        assert_eq!(again[0].last_transition_time, time(10));
        let stalled = build_conditions(Some(3), &again, &[Problem::new(Reason::InvalidSpec, "x")], &time(30));
        assert_eq!(stalled[0].last_transition_time, time(30));
    }

    #[test]
    fn long_messages_are_cut() {
        let problems = vec![Problem::new(Reason::TableNotFound, "é".repeat(5000))];
        let conditions = build_conditions(None, &[], &problems, &time(1));
        assert!(conditions[0].message.len() <= MAX_MESSAGE + '…'.len_utf8());
    }

    #[test]
    fn status_carries_generation_and_extra_fields() {
        let mut extra = Map::new();
        extra.insert("tables".into(), json!(2));
        let status = build_status(Some(4), &[], &[], &time(1), extra);
        assert_eq!(status["observedGeneration"], 4);
        assert_eq!(status["tables"], 2);
        assert_eq!(status["conditions"][0]["type"], "Ready");
    }

    #[test]
    fn transitions_are_reported_once() {
        let ready = build_conditions(Some(1), &[], &[], &time(1));
        let stalled = build_conditions(Some(1), &[], &[Problem::new(Reason::SecretNotFound, "m")], &time(1));
        assert_eq!(transition(&[], &ready), Some(Transition::BecameReady));
        assert_eq!(transition(&ready, &ready), None);
        assert_eq!(
            transition(&ready, &stalled),
            Some(Transition::BecameStalled {
                reason: "SecretNotFound".into(),
                message: "m".into()
            })
        );
        assert_eq!(transition(&stalled, &stalled), None);
        assert_eq!(transition(&stalled, &ready), Some(Transition::BecameReady));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let delays: Vec<Duration> = (1..=12).map(|n| backoff_delay(n, "ns/a")).collect();
        assert!(delays[0] >= Duration::from_secs(1) && delays[0] < Duration::from_millis(1100));
        assert!(delays[1] >= Duration::from_secs(2));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert!(delays[11] <= MAX_BACKOFF.mul_f64(1.1));
        assert!(backoff_delay(u32::MAX, "x") <= MAX_BACKOFF.mul_f64(1.1));
    }

    #[test]
    fn missing_names_are_reported_once_in_order() {
        let found = ["b".to_string()].into_iter().collect();
        let problems = missing(
            [
                ("a", "spec.x[0]".to_string()),
                ("b", "spec.x[1]".to_string()),
                ("a", "spec.x[2]".to_string()),
            ],
            &found,
            Reason::ClassifierNotFound,
            "Classifier",
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("spec.x[0] names Classifier \"a\""));
    }
}
