//! Firing Triggers (docs/triggers.md): read the Trigger, the objects it starts and watches, and
//! for Event triggers a listing of the prefix → decide ([`decide::decide`], pure) → put start
//! and stop requests on the targets → write the Trigger's fire history under [`TRIGGERS_MANAGER`]
//! with its `resourceVersion` as a precondition → remove the handled fire requests → Events.
//!
//! The requests come before the status write: if the operator dies between the two, the next
//! reconcile decides the same fire from the same status and asks the same request ids again,
//! which the targets take in once.

pub mod decide;
pub mod listing;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kglue_crds::Trigger;
use kglue_crds::trigger::{TriggerStatus, TriggerType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use kglue_crds::protocol::requests::Requests;

use self::decide::{Observed, decide, listing_due, targets};
use crate::context::{ActOn, Error, created};
use crate::starts::{ask, read_targets};
use crate::writes::{apply_status, publish, remove_annotations};

/// The field manager of the fire history in a Trigger's status.
pub const TRIGGERS_MANAGER: &str = "kglue-operator-triggers";

/// The part of a Trigger's status this module writes.
fn owned_part(status: Option<&TriggerStatus>) -> TriggerStatus {
    let mut status = status.cloned().unwrap_or_default();
    status.observed = Default::default();
    status
}

/// [`reconcile_trigger`] as the controller calls it after the conditions.
pub fn reconcile(on: ActOn<'_>) -> futures::future::BoxFuture<'_, Result<Option<Duration>, Error>> {
    Box::pin(reconcile_trigger(on))
}

/// Reads, decides and fires `name`. `blocked` is the Stalled message when the Trigger cannot fire.
/// Returns when to look again without a watch event.
pub async fn reconcile_trigger(on: ActOn<'_>) -> Result<Option<Duration>, Error> {
    let (ctx, namespace, name, blocked) = (on.ctx, on.namespace, on.name, on.blocked);
    let Some((api, trigger)) = ctx.fresh::<Trigger>(namespace, name).await? else {
        return Ok(None);
    };
    let requests = Requests::from_annotations(trigger.annotations());
    let wanted = targets(&trigger.spec);
    let found = read_targets(&ctx.client, namespace, wanted.iter()).await?;
    let before = owned_part(trigger.status.as_ref());
    let now = Timestamp::now();
    let listing = match (&trigger.spec.type_, &trigger.spec.event, &blocked) {
        (TriggerType::Event, Some(source), None) if listing_due(source, &before, now) => {
            Some(listing::list(&ctx.client, namespace, source, &ctx.local_paths).await)
        }
        _ => None,
    };
    let created = created(trigger.meta());
    let uid = trigger.uid().unwrap_or_default();
    let decision = decide(&Observed {
        now,
        name,
        uid: &uid,
        created,
        spec: &trigger.spec,
        status: &before,
        requests: &requests,
        targets: &found,
        listing,
        blocked: blocked.as_deref(),
    });

    ask(&ctx.client, namespace, &decision.asks).await?;

    if decision.status != before {
        apply_status(&api, &trigger, TRIGGERS_MANAGER, json!(decision.status)).await?;
    }
    remove_annotations(&api, name, &decision.handled).await?;
    for _ in 0..decision.fired {
        ctx.metrics.trigger_fired(&format!("{:?}", trigger.spec.type_));
    }
    publish(ctx, &trigger.object_ref(&()), &decision.events, "Fire").await;
    if decision.fired > 0 {
        tracing::info!(%name, %namespace, fires = decision.fired, "trigger fired");
    }
    Ok(decision.requeue_after)
}
