//! A Session's life as one pure function, [`decide`]: what is (the Session with the activity its
//! pod reports, its pod, its Service, the time) → what to do (create or delete the pod, apply or
//! delete the Service), the status to write ([`status`]) and when to look again.
//!
//! ```text
//!   (no pod) ──create──▶ Starting ──pod Running, status.activity.servingSince──▶ Ready
//!                           ▲                                                     │
//!                           └──── spec change that shapes the pod (roll) ─────────┤
//!   Ready ── idle deadline ──▶ IdleTimeout     (pod and Service deleted)          │
//!   Ready ── max deadline ───▶ MaxDuration     (pod and Service deleted)          │
//!   Starting/Ready ── pod Failed/Succeeded, or deleted by someone else ──▶ Failed ┘
//!   ended ── metadata.generation changes ──▶ Starting (a new pod)
//! ```
//!
//! Which sub-step a Starting session is in lives in its `Reconciling` condition's reason:
//! `PodStarting` (a pod was created for it: if it disappears, the session Failed) or `Replacing`
//! (the operator deletes the old pod; a new one follows).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kglue_crds::common::{CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED};
use kglue_crds::session::{SessionSpec, SessionState, SessionStatus};
use serde_json::{Value, json};

use super::pod::{PodView, ServiceSeen, endpoint, object_name};
use crate::writes::{Notice, condition};

/// Ready True: the pod serves.
pub const REASON_SERVING: &str = "Serving";
/// Ready False while the session starts.
pub const REASON_STARTING: &str = "Starting";
/// Reconciling True: a pod was created and the session waits for it to serve.
pub const REASON_POD_STARTING: &str = "PodStarting";
/// Reconciling True: an old pod is deleted first (a spec change, a restart after the end).
pub const REASON_REPLACING: &str = "Replacing";
/// Ready False and Stalled True: a pod of the session's name that is not the operator's.
pub const REASON_POD_NAME_TAKEN: &str = "PodNameTaken";
/// Ready False and Stalled True: a Service of the session's name that is not the Session's.
pub const REASON_SERVICE_NAME_TAKEN: &str = "ServiceNameTaken";

/// What [`decide`] looks at.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The Session's name.
    pub name: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The spec.
    pub spec: &'a SessionSpec,
    /// The status as the API server has it (the pod's activity included).
    pub status: &'a SessionStatus,
    /// The spec hash a pod built now would carry.
    pub desired_hash: &'a str,
    /// The pod `<name>-session`, if it exists.
    pub pod: Option<&'a PodView>,
    /// The Service `<name>-session`.
    pub service: ServiceSeen,
    /// Why the session cannot start (its validation problems: reason and messages).
    pub blocked: Option<(&'a str, &'a str)>,
    /// Now.
    pub now: Timestamp,
}

/// One condition the operator writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Said {
    /// `Ready`, `Reconciling`, `Stalled`.
    pub type_: &'static str,
    /// Whether it is True.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// For people.
    pub message: String,
}

fn said(type_: &'static str, status: bool, reason: &str, message: &str) -> Said {
    Said {
        type_,
        status,
        reason: reason.into(),
        message: message.into(),
    }
}

/// What to do, and the status to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// `status.state`.
    pub state: SessionState,
    /// `status.endpoint` (while Ready).
    pub endpoint: Option<String>,
    /// `status.startedAt`.
    pub started_at: Option<String>,
    /// `status.endedAt`.
    pub ended_at: Option<String>,
    /// `status.message`.
    pub message: Option<String>,
    /// The conditions (those not listed are removed).
    pub conditions: Vec<Said>,
    /// Create the pod (before the status is written).
    pub create_pod: bool,
    /// Delete the pod (after the status is written).
    pub delete_pod: bool,
    /// Apply the Service (before the status is written).
    pub apply_service: bool,
    /// Delete the Service (after the status is written).
    pub delete_service: bool,
    /// When to look again without a watch event: the nearest deadline of a Ready session.
    pub requeue_after: Option<Duration>,
    /// Events.
    pub notices: Vec<Notice>,
}

impl Decision {
    fn new(state: SessionState, conditions: Vec<Said>) -> Self {
        Decision {
            state,
            endpoint: None,
            started_at: None,
            ended_at: None,
            message: None,
            conditions,
            create_pod: false,
            delete_pod: false,
            apply_service: false,
            delete_service: false,
            requeue_after: None,
            notices: Vec::new(),
        }
    }

    fn notice(mut self, warning: bool, reason: &'static str, note: String) -> Self {
        self.notices.push(Notice { warning, reason, note });
        self
    }

    /// The decision once the API server refused to create the pod: the session Failed, and the
    /// Service goes unless it is another's.
    pub fn refused(self, why: &str, now: Timestamp, service: ServiceSeen) -> Decision {
        let message = format!("the session's pod could not be created: {why}");
        let mut failed =
            ended(SessionState::Failed, &message, Some(text(now)), None).notice(true, "SessionFailed", message.clone());
        failed.delete_service = service != ServiceSeen::Foreign;
        failed
    }
}

/// The word of a state, as the API writes it.
pub fn state_word(state: SessionState) -> &'static str {
    match state {
        SessionState::Starting => "Starting",
        SessionState::Ready => "Ready",
        SessionState::IdleTimeout => "IdleTimeout",
        SessionState::MaxDuration => "MaxDuration",
        SessionState::Failed => "Failed",
    }
}

/// `t` as status writes it: RFC 3339, whole seconds.
fn text(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second()).unwrap_or(t).to_string()
}

fn starting(reason: &str, message: &str) -> Decision {
    let mut d = Decision::new(
        SessionState::Starting,
        vec![
            said(CONDITION_READY, false, REASON_STARTING, message),
            said(CONDITION_RECONCILING, true, reason, message),
        ],
    );
    d.message = Some(message.to_string());
    d
}

/// An ended session: Ready False with the state as its reason; a failed one is also Stalled.
fn ended(state: SessionState, message: &str, ended_at: Option<String>, started_at: Option<String>) -> Decision {
    let reason = state_word(state);
    let mut conditions = vec![said(CONDITION_READY, false, reason, message)];
    if state == SessionState::Failed {
        conditions.push(said(CONDITION_STALLED, true, reason, message));
    }
    let mut d = Decision::new(state, conditions);
    d.message = Some(message.to_string());
    d.ended_at = ended_at;
    d.started_at = started_at;
    d
}

/// When the pod serving now began to, if it does: it runs, it is the pod the activity names, and
/// it reported serving after it was created (the activity of the pod it replaced names the same
/// pod name).
fn serving_since(o: &Observed, pod: &PodView) -> Option<(Timestamp, String)> {
    let activity = o.status.activity.as_ref()?;
    if pod.phase != "Running" || activity.pod.as_deref() != Some(pod.name.as_str()) {
        return None;
    }
    let text = activity.serving_since.clone()?;
    let since: Timestamp = text.parse().ok()?;
    // creationTimestamp has whole seconds.
    if pod
        .created
        .is_some_and(|created| since.as_second() < created.as_second())
    {
        return None;
    }
    Some((since, text))
}

fn after(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn minutes(m: i32) -> SignedDuration {
    SignedDuration::from_secs(i64::from(m.max(1)) * 60)
}

/// A serving session: Ready until its idle or maximum deadline, then ended.
fn serving(o: &Observed, since: Timestamp, since_text: String) -> Decision {
    let activity = o.status.activity.clone().unwrap_or_default();
    // A last activity before this pod served is an earlier pod's: the idle time counts from the
    // start then.
    let last = activity
        .last_activity_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .filter(|t| *t > since)
        .unwrap_or(since);
    let idle = o.spec.idle_timeout_minutes;
    let deadlines = [
        Some((SessionState::IdleTimeout, after(last, minutes(idle)))),
        o.spec
            .max_duration_minutes
            .map(|m| (SessionState::MaxDuration, after(since, minutes(m)))),
    ];
    let deadlines = deadlines.into_iter().flatten();
    let due = deadlines
        .clone()
        .filter(|(_, at)| *at <= o.now)
        .min_by_key(|(_, at)| *at);
    if let Some((state, _)) = due {
        let why = match (state, o.spec.max_duration_minutes) {
            (SessionState::MaxDuration, Some(max)) => {
                format!("the session reached its maximum duration of {max} minutes (maxDurationMinutes)")
            }
            _ => format!("no query for {idle} minutes (idleTimeoutMinutes)"),
        };
        let message = format!("{why}; the pod was removed; any change to the spec starts the session again");
        let mut d =
            ended(state, &message, Some(text(o.now)), Some(since_text)).notice(false, "SessionEnded", message.clone());
        d.delete_pod = true;
        return d;
    }
    let endpoint = endpoint(o.name, o.namespace, o.spec.port);
    let nearest = deadlines.map(|(_, at)| at).min().unwrap_or(o.now);
    let wait = nearest.duration_since(o.now).as_secs_f64().max(0.0);
    let message = format!("serving at {endpoint}");
    let mut d = Decision::new(
        SessionState::Ready,
        vec![said(CONDITION_READY, true, REASON_SERVING, &message)],
    );
    if o.status.state != Some(SessionState::Ready) {
        d = d.notice(false, "SessionReady", message);
    }
    d.endpoint = Some(endpoint);
    d.started_at = Some(since_text);
    // A second late, so that the deadline has passed when the reconcile comes.
    d.requeue_after = Some(Duration::from_secs_f64(wait + 1.0));
    d
}

fn failed(o: &Observed, message: String) -> Decision {
    ended(
        SessionState::Failed,
        &message,
        Some(text(o.now)),
        o.status.started_at.clone(),
    )
    .notice(true, "SessionFailed", message)
}

/// What to do about a Session. Pure.
pub fn decide(o: &Observed) -> Decision {
    let mut d = decide_state(o);
    let ours = matches!(o.service, ServiceSeen::Current | ServiceSeen::Outdated);
    if d.state.is_final() {
        d.apply_service = false;
        d.delete_service = ours;
        return d;
    }
    d.apply_service = matches!(o.service, ServiceSeen::Absent | ServiceSeen::Outdated);
    let taken = (o.service == ServiceSeen::Foreign).then(|| {
        (
            REASON_SERVICE_NAME_TAKEN,
            format!(
                "a Service {} that is not this Session's exists; delete it or give the Session another name",
                object_name(o.name)
            ),
        )
    });
    let blocked = o
        .blocked
        .map(|(reason, message)| (reason, message.to_string()))
        .or(taken);
    if let Some((reason, message)) = blocked
        && !d.conditions.iter().any(|c| c.type_ == CONDITION_STALLED)
    {
        d.conditions = vec![
            said(CONDITION_READY, false, reason, &message),
            said(CONDITION_STALLED, true, reason, &message),
        ];
        d.message = Some(message);
    }
    d
}

fn decide_state(o: &Observed) -> Decision {
    let status = o.status;
    let previous = status.state;
    let reconciling = status
        .observed
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_RECONCILING && c.status == "True")
        .map(|c| c.reason.as_str());
    let same_generation = status.observed.observed_generation == o.generation;

    // Ended for this generation: it stays ended; a pod still running goes (a failed one stays
    // for its log).
    if let Some(state) = previous.filter(|s| s.is_final())
        && same_generation
    {
        let mut d = ended(
            state,
            status.message.as_deref().unwrap_or_default(),
            status.ended_at.clone(),
            status.started_at.clone(),
        );
        d.delete_pod = o.pod.is_some_and(|p| !p.terminated() && !p.deleting);
        return d;
    }
    let restarting = previous.is_some_and(SessionState::is_final);
    // Whether a pod was created for the session as it is now: if it goes, the session failed.
    let had_pod = !restarting
        && (previous == Some(SessionState::Ready)
            || (previous == Some(SessionState::Starting) && reconciling == Some(REASON_POD_STARTING)));
    let pod_name = object_name(o.name);
    match o.pod {
        Some(pod) if !pod.owned && !pod.managed => {
            let message = format!(
                "a pod {pod_name} that the operator did not make for this Session exists; delete it or give the Session another name"
            );
            let mut d = starting(REASON_REPLACING, &message);
            d.conditions = vec![
                said(CONDITION_READY, false, REASON_POD_NAME_TAKEN, &message),
                said(CONDITION_STALLED, true, REASON_POD_NAME_TAKEN, &message),
            ];
            d
        }
        Some(pod) if restarting || !pod.owned => {
            let message = if restarting {
                "the spec changed: the session starts again once the pod of its last run is gone"
            } else {
                "the pod of an earlier Session of this name is removed first"
            };
            let mut d = starting(REASON_REPLACING, message);
            d.delete_pod = !pod.deleting;
            d
        }
        Some(pod) if pod.deleting => {
            if had_pod {
                failed(
                    o,
                    format!("the pod {pod_name} was deleted by something other than the operator"),
                )
            } else {
                starting(REASON_REPLACING, "waiting for the old pod to go")
            }
        }
        Some(pod) if pod.spec_hash.as_deref() != Some(o.desired_hash) && o.blocked.is_none() => {
            let message = "the spec changed how the pod is made: the pod is replaced";
            let mut d = starting(REASON_REPLACING, message).notice(false, "SessionRestarting", message.into());
            d.delete_pod = true;
            d
        }
        Some(pod) if pod.terminated() => {
            let detail = pod.detail.as_deref().unwrap_or("no termination message");
            failed(o, format!("the pod {pod_name} ended ({}): {detail}", pod.phase))
        }
        Some(pod) => match serving_since(o, pod) {
            Some((since, text)) => serving(o, since, text),
            None => {
                let message = match &pod.detail {
                    Some(detail) => format!("the pod {pod_name} is {}: {detail}", pod.phase),
                    None => format!("the pod {pod_name} is {}; waiting for it to serve", pod.phase),
                };
                starting(REASON_POD_STARTING, &message)
            }
        },
        None if had_pod => failed(
            o,
            format!("the pod {pod_name} was deleted by something other than the operator"),
        ),
        None if o.blocked.is_some() => starting(REASON_STARTING, "waiting until the spec can be carried out"),
        None => {
            let message = format!("the pod {pod_name} was created; waiting for it to serve");
            let mut d = starting(REASON_POD_STARTING, &message).notice(false, "SessionStarting", message.clone());
            d.create_pod = true;
            d
        }
    }
}

/// The status fields the operator owns; the rest (`activity`) is the pod's.
pub const OWNED_FIELDS: [&str; 7] = [
    "observedGeneration",
    "conditions",
    "state",
    "endpoint",
    "startedAt",
    "endedAt",
    "message",
];

/// The operator's status of `decision`: every field of [`OWNED_FIELDS`] it sets (the ones left
/// out are removed by server-side apply). `lastTransitionTime`s are kept from `existing`. Pure.
pub fn status(decision: &Decision, generation: Option<i64>, existing: &SessionStatus, now: Timestamp) -> Value {
    let now = Time(Timestamp::from_second(now.as_second()).unwrap_or(now));
    let existing = &existing.observed.conditions;
    let conditions: Vec<_> = decision
        .conditions
        .iter()
        .map(|c| {
            let value = if c.status { "True" } else { "False" };
            condition(existing, generation, &now, c.type_, value, &c.reason, c.message.clone())
        })
        .collect();
    let mut status = json!({
        "conditions": conditions,
        "state": state_word(decision.state),
    });
    if let Some(generation) = generation {
        status["observedGeneration"] = json!(generation);
    }
    for (key, value) in [
        ("endpoint", &decision.endpoint),
        ("startedAt", &decision.started_at),
        ("endedAt", &decision.ended_at),
        ("message", &decision.message),
    ] {
        if let Some(value) = value {
            status[key] = json!(value);
        }
    }
    status
}

/// Whether `current` (the object's status) has exactly `wanted`'s operator-owned fields: then
/// there is nothing to write.
pub fn holds(current: Option<&Value>, wanted: &Value) -> bool {
    let current = current.unwrap_or(&Value::Null);
    OWNED_FIELDS.iter().all(|key| current.get(key) == wanted.get(key))
}

#[cfg(test)]
mod tests;
