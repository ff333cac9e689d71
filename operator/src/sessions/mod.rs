//! Sessions (docs/operator.md, docs/sessions.md): one pod `<name>-session` running `kglue serve`
//! behind a ClusterIP Service of the same name, for as long as the session is used.
//!
//! [`reconcile_session`] is a pipeline: read (a fresh GET of the Session, with the activity its pod
//! reports, and GETs of its pod and Service) → [`machine::decide`] (pure) → create what is missing
//! (the Service by server-side apply, the pod by create: [`pod::build_pod`] is pure) → the status,
//! by server-side apply under `kglue-operator` of only the fields the operator owns
//! ([`machine::OWNED_FIELDS`]; `status.activity` is the pod's, field manager
//! `kglue-session`) → delete what has to go, after the status says why → Events.

pub mod machine;
pub mod pod;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kglue_crds::{Session, Table};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use self::machine::{Decision, Observed, decide};
use self::pod::{
    PodView, SessionOwner, build_pod, build_service, object_name, pod_view, service_seen, session_connections,
    spec_hash,
};
use crate::context::{ActOn, Error, is_status};
use crate::runs::consenting_secrets;
use crate::writes::publish;

/// [`reconcile_session`] as the Session controller calls it (`Reconcile::ACT`).
pub fn reconcile(on: ActOn<'_>) -> futures::future::BoxFuture<'_, Result<Option<Duration>, Error>> {
    Box::pin(reconcile_session(on))
}

/// Reads, decides, acts and records one Session. Nothing happens when runs are off
/// (`--no-runs`): the Session keeps the status it has. Returns when to look again without a
/// watch event (the nearest deadline of a Ready session).
pub async fn reconcile_session(on: ActOn<'_>) -> Result<Option<Duration>, Error> {
    let (ctx, namespace, name) = (on.ctx, on.namespace, on.name);
    let Some(settings) = ctx.runner.as_ref() else {
        return Ok(None);
    };
    let Some((api, session)) = ctx.fresh::<Session>(namespace, name).await? else {
        ctx.metrics.session(namespace, name, None);
        return Ok(None);
    };
    let activity = session.status.as_ref().and_then(|s| s.activity.as_ref());
    ctx.metrics.session(namespace, name, activity);
    let owner = SessionOwner {
        name: name.to_string(),
        namespace: namespace.to_string(),
        uid: session.uid().unwrap_or_default(),
    };
    let object = object_name(name);
    let pods: Api<Pod> = ctx.api(namespace);
    let services: Api<Service> = ctx.api(namespace);
    let pod: Option<PodView> = pods.get_opt(&object).await?.map(|p| pod_view(&p, &owner.uid));
    let desired_service = build_service(&owner, &session.spec);
    let service = service_seen(services.get_opt(&object).await?.as_ref(), &desired_service);
    let status = session.status.clone().unwrap_or_default();
    let hash = spec_hash(name, &session.spec, settings);
    let now = Timestamp::now();
    let blocked = on
        .blocked
        .as_deref()
        .map(|m| (on.blocked_reason.unwrap_or("Stalled"), m));
    let mut decision = decide(&Observed {
        name,
        namespace,
        generation: session.meta().generation,
        spec: &session.spec,
        status: &status,
        desired_hash: &hash,
        pod: pod.as_ref(),
        service,
        blocked,
        now,
    });

    // What is missing comes first: a status saying a pod was created is never written without it.
    if decision.apply_service {
        let params = PatchParams::apply(crate::FIELD_MANAGER).force();
        services
            .patch(&object, &params, &Patch::Apply(&desired_service))
            .await?;
    }
    if decision.create_pod {
        let cached = ctx.informers.tables.in_namespace(namespace);
        let tables: Vec<&Table> = cached.iter().filter_map(|guard| guard.0.as_ref().ok()).collect();
        let secrets = consenting_secrets(ctx, namespace, session_connections(&session.spec, &tables)).await?;
        let built = build_pod(&owner, &session.spec, settings, &secrets);
        match pods.create(&PostParams::default(), &built).await {
            Ok(_) => {}
            // Created by an earlier reconcile whose status write did not land.
            Err(error) if is_status(&error, 409) => {}
            Err(kube::Error::Api(status)) if (400..500).contains(&status.code) && status.code != 429 => {
                decision = decision.refused(&status.message, now, service);
            }
            Err(error) => return Err(error.into()),
        }
    }
    record(&api, &session, &decision, now).await?;
    // What goes, goes after the status says why: a failed write leaves the pod to decide again.
    let delete = DeleteParams::background();
    if decision.delete_pod {
        match pods.delete(&object, &delete).await {
            Ok(_) => {}
            Err(error) if is_status(&error, 404) => {}
            Err(error) => return Err(error.into()),
        }
    }
    if decision.delete_service {
        match services.delete(&object, &delete).await {
            Ok(_) => {}
            Err(error) if is_status(&error, 404) => {}
            Err(error) => return Err(error.into()),
        }
    }
    publish(ctx, &session.object_ref(&()), &decision.notices, "Serve").await;
    if !decision.notices.is_empty() {
        tracing::info!(%namespace, %name, state = machine::state_word(decision.state), "session");
    }
    Ok(decision.requeue_after)
}

/// Writes the operator's part of the status when it changed: server-side apply under
/// `kglue-operator` of [`machine::OWNED_FIELDS`], never `activity`. No `resourceVersion`
/// precondition: the pod's activity writes change it all the time, and every decision is
/// idempotent (one pod name, one Service name).
async fn record(api: &Api<Session>, session: &Session, decision: &Decision, now: Timestamp) -> Result<(), Error> {
    let existing = session.status.clone().unwrap_or_default();
    let wanted = machine::status(decision, session.meta().generation, &existing, now);
    let current: Option<Value> = serde_json::to_value(&existing).ok();
    if machine::holds(current.as_ref(), &wanted) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": Session::api_version(&()),
        "kind": Session::kind(&()),
        "status": wanted,
    });
    api.patch_status(
        &session.name_any(),
        &PatchParams::apply(crate::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
