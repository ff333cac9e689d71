//! The pipeline every controller shares. A kind implements [`Reconcile`]: `read` (the only step
//! that calls the API: the objects the spec refers to), `validate` (pure: the list of
//! [`Problem`]s), and optionally `status_extra` (pure: kind-specific status fields). [`reconcile`]
//! then builds the status ([`build_status`], pure), applies it with server-side apply on the
//! `status` subresource, publishes an Event when the object turns Ready or Stalled, hands over to
//! the kind's acting module (`reconcile_runs`), and returns the requeue policy. Errors are retried
//! with a per-object exponential backoff ([`error_policy`]), never a fixed interval.
//!
//! Objects are watched through `DeserializeGuard`, so a malformed object (one the API server
//! accepted but these types cannot read, e.g. after a CRD downgrade) is reported as `Stalled` with
//! reason `InvalidSpec` instead of stalling the whole controller.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kglue_crds::common::{CONDITION_READY, CONDITION_STALLED};
use kglue_crds::references::{Observed, References};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::discovery::ApiResource;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

pub use super::problem::{Problem, Reason};
use super::refs::{Changes, Informed, ReadRefs, Rechecks};
use crate::context::{Act, ActOn, Context, Error};
use crate::writes::{cut, publish_event};

/// A kglue kind the shared pipeline can reconcile.
pub trait Reconcile:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Informed
    + Observed
    + References
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// What the read step found: the referenced objects, or facts about them.
    type Refs: ReadRefs<Self>;

    /// What the kind does once its conditions are written: runs of Jobs and Crawlers
    /// (`crate::runs`), Trigger fires (`crate::triggers`), Workflow runs (`crate::workflows`);
    /// `None` for kinds that only describe.
    const ACT: Option<Act> = None;

    /// Whether `ACT` writes the whole operator-owned status, conditions included, from what it
    /// finds (a Session's Ready says its pod serves, not only that its spec is valid): the
    /// pipeline then writes no status of a readable object and hands the problems to `ACT`.
    const ACT_WRITES_STATUS: bool = false;

    /// Everything that keeps the object from working, in spec order. Pure.
    fn validate(&self, refs: &Self::Refs) -> Vec<Problem>;

    /// Kind-specific status fields owned by the operator (e.g. a Database's table count). Pure.
    fn status_extra(&self, _refs: &Self::Refs) -> Map<String, Value> {
        Map::new()
    }

    /// The kind's controller with its watches: what else, when it changes, re-checks objects of
    /// the kind. Default: the objects themselves and everything their references name.
    fn controller(ctx: &Context) -> Controller<DeserializeGuard<Self>> {
        controller::<Self>(ctx).recheck_references(ctx)
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
        crate::writes::condition(existing, generation, now, type_, status, reason, message)
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

/// Whether `current` (an object's status) already holds every field of `status`: then applying
/// `status` would change nothing, and the write is not sent. Most reconciles end here: a change
/// of a referenced object that leaves this one as it was.
pub fn status_holds(current: Option<&Value>, status: &Value) -> bool {
    let (Some(Value::Object(current)), Value::Object(wanted)) = (current, status) else {
        return false;
    };
    wanted.iter().all(|(key, value)| current.get(key) == Some(value))
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

impl Transition {
    /// The Event of the transition of a `kind` object.
    pub fn event(self, kind: &str) -> Event {
        match self {
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
                note: Some(cut(&message, 1000)),
                action: "Validate".into(),
                secondary: None,
            },
        }
    }
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
    let (problems, existing, extra, current) = match &guard.0 {
        Ok(object) => {
            let refs = <K::Refs as ReadRefs<K>>::read(object, ctx, &namespace).await?;
            let existing = object.observed().map(|o| o.conditions.clone()).unwrap_or_default();
            let current = serde_json::to_value(object)
                .ok()
                .and_then(|mut o| o.get_mut("status").map(Value::take));
            let mut problems = object.validate(&refs);
            problems.extend(super::problem::local_paths_refused(object, &ctx.local_paths));
            (problems, existing, object.status_extra(&refs), current)
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
            None,
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
    // A kind whose acting module writes its status (a Session) gets it there, problems
    // included; a malformed object gets the pipeline's.
    let act_writes_status = K::ACT_WRITES_STATUS && guard.0.is_ok();
    if !act_writes_status && !status_holds(current.as_ref(), &status) {
        api.patch_status(
            &name,
            &PatchParams::apply(crate::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }

    if let Some(first) = problems.first() {
        ctx.metrics.found_stalled(&kind, first.reason.as_str());
    }
    if !act_writes_status && let Some(change) = transition(&existing, &new_conditions) {
        publish_event(ctx, &guard.object_ref(&()), &change.event(&kind)).await;
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
        let on = ActOn {
            ctx,
            namespace: &namespace,
            name: &name,
            blocked,
            blocked_reason: problems.first().map(|p| p.reason.as_str()),
        };
        if let Some(act) = K::ACT
            && let Some(after) = act(on).await?
        {
            action = Action::requeue(after.min(RESYNC));
        }
    }
    Ok(action)
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

/// A controller of `K` with the shared settings: it reconciles from the shared watch of `K`
/// (`DeserializeGuard`, so a malformed object is reported, not fatal), at most
/// `ctx.concurrency` objects at once.
pub fn controller<K: Reconcile>(ctx: &Context) -> Controller<DeserializeGuard<K>> {
    let informer = K::informer(&ctx.informers);
    Controller::for_stream(informer.subscribe(Changes::Applied), informer.store())
        .with_config(controller::Config::default().concurrency(ctx.concurrency))
}

/// A controller of `K` that also watches the Kubernetes Jobs of its runs' attempts (Jobs and
/// Crawlers), so a finished attempt is recorded at once.
pub fn controller_with_attempts<K: Reconcile>(ctx: &Context) -> Controller<DeserializeGuard<K>> {
    controller::<K>(ctx).owns(
        ctx.watch_api::<k8s_openapi::api::batch::v1::Job>(),
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={}", crate::FIELD_MANAGER)),
    )
}

/// Runs `controller` (built by [`Reconcile::controller`]) until `shutdown` turns true, logging
/// each result.
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
    fn a_status_already_written_is_not_written_again() {
        let conditions = build_conditions(Some(2), &[], &[], &time(10));
        let status = build_status(Some(2), &conditions, &[], &time(20), Map::new());
        let mut current = status.clone();
        current["runs"] = json!([{"id": "r1"}]);
        assert!(
            status_holds(Some(&current), &status),
            "fields the pipeline does not own do not count"
        );
        let newer = build_status(Some(3), &conditions, &[], &time(20), Map::new());
        assert!(!status_holds(Some(&current), &newer), "a new generation is written");
        let stalled = build_status(
            Some(2),
            &conditions,
            &[Problem::new(Reason::InvalidSpec, "x")],
            &time(20),
            Map::new(),
        );
        assert!(!status_holds(Some(&current), &stalled));
        assert!(!status_holds(None, &status), "an object without status gets one");
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
}
