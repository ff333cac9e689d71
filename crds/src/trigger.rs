//! `Trigger`: starts jobs, crawlers and workflows on a schedule, on conditions, on request or on events.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{OBJECT_NAME_PATTERN, ObservedStatus, RunState, STORAGE_URL_PATTERN, Schedule};

/// A trigger.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kglue.dev",
    version = "v1alpha1",
    kind = "Trigger",
    namespaced,
    status = "TriggerStatus",
    shortname = "kgtrigger",
    category = "kglue",
    doc = "A trigger (Glue trigger): starts jobs, crawlers and workflows on a schedule, when other runs end in given states, on request, or when new objects land under a prefix.",
    printcolumn = r#"{"name": "Type", "type": "string", "jsonPath": ".spec.type"}"#,
    printcolumn = r#"{"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule.cron"}"#,
    printcolumn = r#"{"name": "Suspended", "type": "boolean", "jsonPath": ".spec.suspend"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Last Fired", "type": "date", "jsonPath": ".status.lastFired"}"#,
    printcolumn = r#"{"name": "Next", "type": "date", "jsonPath": ".status.nextFireTime"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("has(self.schedule) == (self.type == 'Scheduled')").message("schedule is required for type Scheduled and not allowed for other types").field_path(".schedule"),
    validation = Rule::new("has(self.predicate) == (self.type == 'Conditional')").message("predicate is required for type Conditional and not allowed for other types").field_path(".predicate"),
    validation = Rule::new("has(self.event) == (self.type == 'Event')").message("event is required for type Event and not allowed for other types").field_path(".event"),
)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSpec {
    /// `Scheduled`: on a cron schedule (needs `schedule`). `Conditional`: when watched runs end
    /// in given states (needs `predicate`). `OnDemand`: only when asked, with `kglue start trigger`
    /// or a `run.kglue.dev/<id>` annotation. `Event`: when new objects land under a prefix (needs
    /// `event`).
    #[serde(rename = "type")]
    pub type_: TriggerType,
    /// What the trigger is for.
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// When a Scheduled trigger fires.
    pub schedule: Option<TriggerSchedule>,
    /// The run states a Conditional trigger waits for.
    pub predicate: Option<Predicate>,
    /// The objects an Event trigger watches for.
    pub event: Option<EventSource>,
    /// What to start when the trigger fires.
    #[schemars(length(min = 1, max = 50))]
    pub actions: Vec<TriggerAction>,
    /// While true the trigger never fires: schedule ticks that pass are made up for only within
    /// `startingDeadlineSeconds`, objects that land are passed over, and runs that end are not
    /// waited for. Default false.
    #[serde(default)]
    pub suspend: bool,
}

/// The kinds of trigger.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerType {
    /// On a cron schedule.
    Scheduled,
    /// When watched runs end in given states.
    Conditional,
    /// Only when asked (CLI or annotation).
    OnDemand,
    /// When new objects land under a prefix.
    Event,
}

/// A schedule with CronJob-like overlap and catch-up rules.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSchedule {
    /// The cron expression and time zone.
    #[serde(flatten)]
    pub schedule: Schedule,
    /// What a tick does while runs the trigger started earlier are still active: Allow (start
    /// more, the default), Forbid (skip the tick) or Replace (stop them, then start).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// How late a missed tick (the operator was down, or the trigger suspended) may still fire,
    /// in seconds; only the latest missed tick fires. Unset: a tick fires only when it is less
    /// than a minute late.
    #[schemars(range(min = 0, max = 86400))]
    pub starting_deadline_seconds: Option<i64>,
}

/// What a scheduled tick does while earlier runs are active.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConcurrencyPolicy {
    /// Start anyway (each job's maxConcurrentRuns still applies).
    #[default]
    Allow,
    /// Skip the tick.
    Forbid,
    /// Stop the active runs, then start new ones.
    Replace,
}

/// How the conditions of a predicate combine.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Logical {
    /// All conditions must hold (Glue's AND).
    #[default]
    And,
    /// One condition is enough (Glue's ANY).
    Any,
}

/// The condition of a Conditional trigger.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    /// `And` (the default): every condition must hold. `Any`: one condition is enough.
    #[serde(default)]
    pub logical: Logical,
    /// The watched runs. The trigger fires once per set of latest runs that satisfies them, never
    /// twice for the same runs.
    #[schemars(length(min = 1, max = 20))]
    pub conditions: Vec<PredicateCondition>,
}

/// A watched run: the latest run of this job (or crawler) ended in this state.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.job) != has(self.crawler)").message("a condition names exactly one of job or crawler"),
    validation = Rule::new("self.state in ['Succeeded', 'Failed', 'Stopped', 'Timeout', 'Error']").message("a condition waits for a final state: Succeeded, Failed, Stopped, Timeout or Error").field_path(".state"),
)]
#[serde(rename_all = "camelCase")]
pub struct PredicateCondition {
    /// A Job in this namespace.
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub job: Option<String>,
    /// A Crawler in this namespace.
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub crawler: Option<String>,
    /// The final state the latest run must be in.
    pub state: RunState,
}

/// New objects under a prefix, gathered into batches.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventSource {
    /// The object-store prefix to watch (`s3://bucket/landing/`).
    #[schemars(pattern(STORAGE_URL_PATTERN), length(max = 2048))]
    pub location: String,
    /// The Connection that says how to reach the location.
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub connection: Option<String>,
    /// Fire when this many new objects have arrived. Default 1.
    #[schemars(range(min = 1, max = 10000))]
    #[serde(default = "default_batch_size")]
    pub batch_size: i32,
    /// Or when this many seconds have passed since the first new object of the batch arrived.
    /// Default 900, the most Glue allows.
    #[schemars(range(min = 1, max = 900))]
    #[serde(default = "default_batch_window")]
    pub batch_window_seconds: i32,
    /// How often to list the prefix, in seconds. Default 30.
    #[schemars(range(min = 5, max = 3600))]
    pub poll_interval_seconds: Option<i32>,
}

fn default_batch_size() -> i32 {
    1
}

fn default_batch_window() -> i32 {
    900
}

/// Something a trigger starts.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.job), has(self.crawler), has(self.workflow)].filter(x, x).size() == 1").message("an action names exactly one of job, crawler or workflow"))]
#[serde(rename_all = "camelCase")]
pub struct TriggerAction {
    /// A Job in this namespace.
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub job: Option<String>,
    /// A Crawler in this namespace.
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub crawler: Option<String>,
    /// A Workflow in this namespace.
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub workflow: Option<String>,
    /// Arguments of the job run (or run properties of the workflow run).
    #[schemars(extend("maxProperties" = 64))]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arguments: BTreeMap<String, String>,
}

/// One time a trigger fired.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerFire {
    /// When.
    pub time: Time,
    /// Why: the schedule tick, the runs that satisfied the predicate, the objects of the batch, or
    /// the request.
    pub reason: String,
    /// What was started, as `Job/<name>`, `Crawler/<name>` or `Workflow/<name>`, with the run id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub started: Vec<String>,
}

/// What the operator observed of a Trigger.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub observed: ObservedStatus,
    /// When the trigger last fired.
    pub last_fired: Option<Time>,
    /// When a Scheduled trigger fires next.
    pub next_fire_time: Option<Time>,
    /// Recent fires, newest first, at most 20.
    #[schemars(length(max = 20))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fires: Vec<TriggerFire>,
    /// Conditional triggers: the runs (`Job/<name>/<run id>`) that last satisfied the predicate, so
    /// the same runs never fire it twice.
    #[schemars(length(max = 20))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_satisfied_by: Vec<String>,
    /// Event triggers: new objects seen and not yet part of a fired batch.
    pub pending_objects: Option<i32>,
    /// Scheduled triggers: every tick up to this instant fired or was skipped.
    pub last_schedule_time: Option<Time>,
    /// Event triggers: how far the prefix has been followed.
    pub event_cursor: Option<EventCursor>,
}

/// How far an Event trigger has followed its prefix. An object is new when it was modified after
/// `modifiedAfter`, or within the safety band before it and is not among `recentKeys` (objects
/// can show up in a listing later than their modification time says).
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventCursor {
    /// The newest modification time seen.
    pub modified_after: Option<Time>,
    /// Hashes (16 hex digits of SHA-256) of the keys already counted whose modification time is
    /// within the safety band before `modifiedAfter`.
    #[schemars(length(max = 20000))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_keys: Vec<String>,
    /// When the first object of the pending batch was seen.
    pub pending_since: Option<Time>,
    /// When the prefix was last listed; it is listed again a poll interval later.
    pub listed_at: Option<Time>,
    /// Why the last listing failed, if it did.
    pub error: Option<String>,
}
