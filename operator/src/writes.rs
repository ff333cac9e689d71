//! The writes every acting module shares: status fields applied under a field manager with the
//! object's `resourceVersion` as a precondition, requests put on objects as annotations and removed
//! once recorded, and Events. Runs, triggers and workflows decide purely and write through these.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kglue_crds::protocol::requests::Request;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::context::{Context, Error};

/// Something worth a Kubernetes Event, as a pure decision says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Whether it is a Warning.
    pub warning: bool,
    /// CamelCase reason, e.g. RunStarted, RunFailed, BookmarkRefused, TriggerFired.
    pub reason: &'static str,
    /// What happened.
    pub note: String,
}

/// The longest Event note; the rest is cut.
const MAX_NOTE: usize = 1000;

/// Publishes one Event about `reference`. An Event is a courtesy: a failure is logged, not
/// returned, so it never fails (and repeats) a reconcile whose writes have landed.
pub async fn publish_event(ctx: &Context, reference: &ObjectReference, event: &Event) {
    if let Err(error) = ctx.recorder.publish(event, reference).await {
        tracing::warn!(object = ?reference.name, namespace = ?reference.namespace, %error, "publishing an Event failed");
    }
}

/// Publishes `notices` about `reference` as Events of `action`.
pub async fn publish(ctx: &Context, reference: &ObjectReference, notices: &[Notice], action: &str) {
    for notice in notices {
        let event = Event {
            type_: if notice.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: notice.reason.into(),
            note: Some(cut(&notice.note, MAX_NOTE)),
            action: action.into(),
            secondary: None,
        };
        publish_event(ctx, reference, &event).await;
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A condition of `type_` with `status`, `reason` and `message` for `generation`, keeping its
/// `lastTransitionTime` from `existing` when the type had the same status there, else `now`.
pub fn condition(
    existing: &[Condition],
    generation: Option<i64>,
    now: &Time,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) -> Condition {
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
}

/// Writes `status` fields of `object` by server-side apply under `manager`, with the object's
/// `resourceVersion` as a precondition: a decision made from a stale read (or by a second
/// operator) is refused by the API server instead of recorded twice.
pub async fn apply_status<K>(api: &Api<K>, object: &K, manager: &str, status: Value) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": object.meta().name, "resourceVersion": object.meta().resource_version},
        "status": status,
    });
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch_status(&name, &PatchParams::apply(manager).force(), &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// Puts `requests` on `name` as annotations (one merge patch). `Ok(false)` when the object is
/// gone: its requests can never be answered, which the asker sees on its next read.
pub async fn put_requests<K>(api: &Api<K>, name: &str, requests: &[Request]) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = Patch::Merge(Request::patch_of(requests));
    match api.patch_metadata(name, &PatchParams::default(), &patch).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Removes the annotations `keys` (requests that are now recorded) from `name`.
pub async fn remove_annotations<K>(api: &Api<K>, name: &str, keys: &[String]) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    // Scheduled starts have no annotation.
    let removals: serde_json::Map<String, Value> = keys
        .iter()
        .filter(|key| !key.is_empty())
        .map(|key| (key.clone(), Value::Null))
        .collect();
    if removals.is_empty() {
        return Ok(());
    }
    api.patch_metadata(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": removals}})),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(cut("short", 10), "short");
        let cut_text = cut(&"é".repeat(10), 5);
        assert_eq!(cut_text, "éé…");
    }
}
