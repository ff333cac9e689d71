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
use kube::api::Api;
use kube::{Resource, ResourceExt};
use serde_json::json;

use self::machine::{Observed, decide, node_target, read_workflow_requests};
use crate::controllers::{Context, Error};
use crate::runs::request::read_requests;
use crate::runs::{apply_status, publish, remove_annotations};
use crate::starts::{Target, ask, read_targets};

/// The field manager of `status.runs` of Workflows.
pub const WORKFLOWS_MANAGER: &str = "kglue-operator-workflows";

/// Reads, decides and applies the runs of Workflow `name`. Returns when to look again.
pub async fn reconcile_workflow(
    ctx: &Context,
    namespace: &str,
    name: &str,
    blocked: Option<String>,
) -> Result<Option<Duration>, Error> {
    if ctx.runner.is_none() {
        return Ok(None);
    }
    let api: Api<Workflow> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(workflow) = api.get_opt(name).await? else {
        return Ok(None);
    };
    let annotations = workflow.annotations();
    let requests = read_requests(annotations);
    let workflow_requests = read_workflow_requests(annotations);
    let runs = workflow.status.as_ref().map(|s| s.runs.clone()).unwrap_or_default();
    let idle = runs.iter().all(|r| r.state.is_final());
    let asked = !requests.starts.is_empty()
        || !requests.stops.is_empty()
        || !workflow_requests.resumes.is_empty()
        || !workflow_requests.properties.is_empty();
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
