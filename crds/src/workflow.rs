//! `Workflow`: a DAG of crawlers and jobs, its runs with every node's state, and resume.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{OBJECT_NAME_PATTERN, ObservedStatus, RunState, StartedBy, default_history_limit};

/// A workflow node name: a DNS label, so it can be part of the names of the runs it starts.
const NODE_NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";

/// A workflow.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kglue.dev",
    version = "v1alpha1",
    kind = "Workflow",
    namespaced,
    status = "WorkflowStatus",
    shortname = "kgwf",
    category = "kglue",
    doc = "A workflow (Glue workflow): a DAG of crawler and job nodes that run when their dependencies end in the states they wait for. Started by a Trigger or on request; every run and node state is kept in status; a failed run can be resumed from chosen nodes.",
    printcolumn = r#"{"name": "Nodes", "type": "integer", "jsonPath": ".status.nodeCount"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Last Run", "type": "string", "jsonPath": ".status.runs[0].state"}"#,
    printcolumn = r#"{"name": "Started", "type": "date", "jsonPath": ".status.runs[0].startedAt"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.nodes.all(n, !has(n.dependsOn) || n.dependsOn.all(d, self.nodes.exists(m, m.name == d.node)))").message("every dependsOn.node must name a node of this workflow").field_path(".nodes"))]
#[serde(rename_all = "camelCase")]
pub struct WorkflowSpec {
    /// What the workflow does.
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// The nodes. A node without dependencies starts when the run starts; cycles are reported by
    /// the operator (`Stalled`, reason `CycleDetected`) since CEL cannot see them.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(min = 1, max = 64))]
    pub nodes: Vec<WorkflowNode>,
    /// Run properties every run starts with; nodes receive them as arguments and may update them.
    #[schemars(extend("maxProperties" = 64))]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_run_properties: BTreeMap<String, String>,
    /// How many workflow runs may be active at once; further starts wait.
    #[schemars(range(min = 1, max = 100))]
    #[serde(default = "default_max_concurrent_runs")]
    pub max_concurrent_runs: i32,
    /// How many runs `status.runs` keeps, newest first.
    #[schemars(range(min = 1, max = 100))]
    #[serde(default = "default_history_limit")]
    pub run_history_limit: i32,
}

fn default_max_concurrent_runs() -> i32 {
    1
}

/// A step of a workflow: one job or crawler.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.job) != has(self.crawler)").message("a node runs exactly one of job or crawler"),
    validation = Rule::new("!has(self.dependsOn) || !self.dependsOn.exists(d, d.node == self.name)").message("a node cannot depend on itself").field_path(".dependsOn"),
)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowNode {
    /// The node's name, unique in the workflow.
    #[schemars(pattern(NODE_NAME_PATTERN), length(max = 63))]
    pub name: String,
    /// A Job in this namespace.
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub job: Option<String>,
    /// A Crawler in this namespace.
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub crawler: Option<String>,
    /// The nodes that must end first, and in which state. All must hold.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["node".into()]))]
    #[schemars(length(max = 16))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// Arguments of the node's job run, on top of the run properties.
    #[schemars(extend("maxProperties" = 64))]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arguments: BTreeMap<String, String>,
}

/// "Wait until that node ended in this state."
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.state in ['Succeeded', 'Failed', 'Stopped', 'Timeout', 'Error']").message("a dependency waits for a final state: Succeeded, Failed, Stopped, Timeout or Error").field_path(".state"))]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// The name of another node of this workflow.
    #[schemars(pattern(NODE_NAME_PATTERN), length(max = 63))]
    pub node: String,
    /// The state it must end in. Default Succeeded.
    #[serde(default = "default_dependency_state")]
    pub state: RunState,
}

fn default_dependency_state() -> RunState {
    RunState::Succeeded
}

/// One run of a workflow.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRun {
    /// The run id.
    pub id: String,
    /// The start request this run answers.
    pub request_id: Option<String>,
    /// What started the run.
    pub started_by: StartedBy,
    /// Waiting (over `maxConcurrentRuns`), Running, Stopping, then Succeeded (every node that ran
    /// ended as its dependents wait for, or Succeeded when none waits), Failed, Stopped or Error.
    pub state: RunState,
    /// The run properties as they are now: `defaultRunProperties`, the start request's arguments,
    /// and updates made while the run is active (`properties.kglue.dev/<run-id>`). Nodes started
    /// afterwards receive them as arguments.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub run_properties: BTreeMap<String, String>,
    /// When the run started.
    pub started_at: Option<Time>,
    /// When it reached a final state.
    pub completed_at: Option<Time>,
    /// How many times the run was resumed.
    pub resumes: Option<i32>,
    /// Every node's state in this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeRun>,
    /// What happened, in words.
    pub message: Option<String>,
}

/// A node's part in a workflow run.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeRun {
    /// The node's name.
    pub name: String,
    /// The state of the node's run; unset while the node is not yet due.
    pub state: Option<RunState>,
    /// True when the node will not run in this run: a node it depends on ended in a state it does
    /// not wait for (or was skipped itself).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// The id of the job run or crawl the node started.
    pub run_id: Option<String>,
    /// When the node's run started.
    pub started_at: Option<Time>,
    /// When it ended.
    pub completed_at: Option<Time>,
    /// What happened, in words.
    pub message: Option<String>,
}

/// What the operator observed of a Workflow, and its runs.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub observed: ObservedStatus,
    /// The number of nodes in the spec.
    pub node_count: Option<i32>,
    /// Recent runs, newest first, at most `spec.runHistoryLimit`.
    #[schemars(length(max = 100))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<WorkflowRun>,
}
