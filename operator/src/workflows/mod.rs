//! Workflow runs (docs/workflows.md): read the Workflow, its requests and its nodes' Jobs and
//! Crawlers → decide ([`machine::decide`], pure) → put start and stop requests on the nodes'
//! targets → write the runs under [`WORKFLOWS_MANAGER`] with the Workflow's `resourceVersion` as
//! a precondition → remove the handled annotations → Events and metrics.
//!
//! Node runs are started with request ids derived from the workflow run, the node and the resume
//! count, so a start asked for again after an operator restart is the same run.

pub mod machine;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kglue_crds::Workflow;
use kube::{Resource, ResourceExt};
use serde_json::json;

use kglue_crds::protocol::requests::{Requests, WorkflowRequests};

use self::machine::{Observed, decide, node_target};
use crate::context::{ActOn, Error};
use crate::starts::{Target, ask, read_targets};
use crate::writes::{apply_status, publish, remove_annotations};

/// The field manager of `status.runs` of Workflows.
pub const WORKFLOWS_MANAGER: &str = "kglue-operator-workflows";

/// [`reconcile_workflow`] as the controller calls it after the conditions.
pub fn reconcile(on: ActOn<'_>) -> futures::future::BoxFuture<'_, Result<Option<Duration>, Error>> {
    Box::pin(reconcile_workflow(on))
}

/// Reads, decides and applies the runs of Workflow `name`. Returns when to look again.
pub async fn reconcile_workflow(on: ActOn<'_>) -> Result<Option<Duration>, Error> {
    let (ctx, namespace, name, blocked) = (on.ctx, on.namespace, on.name, on.blocked);
    let Some((api, workflow)) = ctx.fresh::<Workflow>(namespace, name).await? else {
        return Ok(None);
    };
    let annotations = workflow.annotations();
    let requests = Requests::from_annotations(annotations);
    let workflow_requests = WorkflowRequests::from_annotations(annotations);
    let runs = workflow.status.as_ref().map(|s| s.runs.clone()).unwrap_or_default();
    let idle = runs.iter().all(|r| r.state.is_final());
    let asked = !requests.starts.is_empty() || !requests.stops.is_empty() || !workflow_requests.is_empty();
    if idle && !asked {
        return Ok(None);
    }
    let wanted: Vec<Target> = workflow.spec.nodes.iter().filter_map(node_target).collect();
    let targets = read_targets(&ctx.client, namespace, wanted.iter()).await?;
    let uid = workflow.uid().unwrap_or_default();
    let decision = decide(&Observed {
        now: Timestamp::now(),
        name,
        uid: &uid,
        spec: &workflow.spec,
        runs: runs.clone(),
        requests: &requests,
        workflow_requests: &workflow_requests,
        targets: &targets,
        blocked: blocked.as_deref(),
    });

    ask(&ctx.client, namespace, &decision.asks).await?;
    if decision.runs != runs {
        apply_status(&api, &workflow, WORKFLOWS_MANAGER, json!({"runs": decision.runs})).await?;
    }
    remove_annotations(&api, name, &decision.handled).await?;
    for (state, seconds) in &decision.finished {
        ctx.metrics.run_finished("Workflow", &format!("{state:?}"), *seconds);
    }
    publish(ctx, &workflow.object_ref(&()), &decision.events, "Run").await;
    // Node runs are followed through the watches on Jobs and Crawlers; this is a safety net.
    let active = decision.runs.iter().any(|r| !r.state.is_final());
    Ok(active.then_some(Duration::from_secs(60)))
}
