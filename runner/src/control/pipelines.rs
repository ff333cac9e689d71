//! `kglue start|stop|runs|resume workflow` and `kglue start trigger`: the same annotations a
//! user can write with kubectl (docs/workflows.md, docs/triggers.md), and the Workflow's and
//! Trigger's status read back.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kglue_crds::common::RunState;
use kglue_crds::workflow::WorkflowRun;
use kglue_crds::{Trigger, Workflow};
use kube::Client;
use kube::api::Api;
use serde_json::json;

use super::{
    ControlError, MESSAGE_CHARS, RECORD_TIMEOUT, RunsOutput, STOP_PREFIX, annotate, annotation_patch, api_error,
    cut_chars, duration, new_request_id, random_u32, start_patch, validate_id,
};

/// The prefix of a resume request's annotation key.
pub const RESUME_PREFIX: &str = "resume.kglue.dev/";

const WORKFLOW: &str = "Workflow";
const TRIGGER: &str = "Trigger";

/// Reads `name`; a missing object is [`ControlError::NotFound`].
async fn read<K>(client: &Client, namespace: &str, kind: &'static str, name: &str) -> Result<K, ControlError>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(api_error(format!("reading {kind} {name}")))?
        .ok_or_else(|| ControlError::NotFound {
            kind,
            name: name.to_string(),
            namespace: namespace.to_string(),
        })
}

async fn read_workflow(client: &Client, namespace: &str, name: &str) -> Result<Workflow, ControlError> {
    read(client, namespace, WORKFLOW, name).await
}

async fn read_trigger(client: &Client, namespace: &str, name: &str) -> Result<Trigger, ControlError> {
    read(client, namespace, TRIGGER, name).await
}

fn workflow_runs_of(workflow: &Workflow) -> Vec<WorkflowRun> {
    workflow.status.as_ref().map(|s| s.runs.clone()).unwrap_or_default()
}

/// The value of a resume annotation.
pub fn resume_value(nodes: &[String]) -> String {
    if nodes.is_empty() {
        String::new()
    } else {
        json!({ "nodes": nodes }).to_string()
    }
}

/// One line per node: `name=State`, `name=skipped` or `name=-` (not due yet).
pub fn node_states(run: &WorkflowRun) -> String {
    run.nodes
        .iter()
        .map(|node| {
            let state = match (node.state, node.skipped) {
                (Some(state), _) => format!("{state:?}"),
                (None, true) => "skipped".to_string(),
                (None, false) => "-".to_string(),
            };
            format!("{}={state}", node.name)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Follows workflow run `run_id` until it is final (and, for a resume, until its resume count
/// passed `resumed_from`); prints every change of the node states. Returns whether it succeeded.
async fn follow(
    client: &Client,
    namespace: &str,
    name: &str,
    run_id: &str,
    resumed_from: Option<i32>,
) -> Result<bool, ControlError> {
    let mut last = String::new();
    loop {
        let workflow = read_workflow(client, namespace, name).await?;
        let runs = workflow_runs_of(&workflow);
        let Some(run) = runs.iter().find(|r| r.id == run_id) else {
            return Err(ControlError::RunNotFound {
                kind: WORKFLOW,
                name: name.to_string(),
                run_id: run_id.to_string(),
            });
        };
        let line = format!("run {run_id}: {:?}  {}", run.state, node_states(run));
        if line != last {
            println!("{line}");
            last = line;
        }
        let resumed = resumed_from.is_none_or(|from| run.resumes.unwrap_or(0) > from);
        if resumed && run.state.is_final() {
            if let Some(message) = &run.message {
                println!("{message}");
            }
            return Ok(run.state == RunState::Succeeded);
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// `kglue start workflow`: asks for a workflow run with run properties; prints the request id
/// and the run id; with `wait`, follows it to its end.
pub async fn start_workflow(
    client: &Client,
    namespace: &str,
    name: &str,
    request_id: Option<String>,
    properties: BTreeMap<String, String>,
    user: Option<&str>,
    wait: bool,
) -> Result<bool, ControlError> {
    let request_id = request_id.unwrap_or_else(|| new_request_id(Timestamp::now(), random_u32()));
    validate_id("request id", &request_id)?;
    annotate::<Workflow>(
        client,
        namespace,
        WORKFLOW,
        name,
        &start_patch(&request_id, &properties, user),
    )
    .await?;
    println!("request {request_id}: start workflow {name}");
    let started = Instant::now();
    let run_id = loop {
        let workflow = read_workflow(client, namespace, name).await?;
        if let Some(run) = workflow_runs_of(&workflow)
            .into_iter()
            .find(|r| r.request_id.as_deref() == Some(request_id.as_str()))
        {
            break run.id;
        }
        if started.elapsed() >= RECORD_TIMEOUT {
            return Err(ControlError::NotRecorded {
                request_id,
                seconds: RECORD_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    println!("run {run_id}");
    if !wait {
        return Ok(true);
    }
    follow(client, namespace, name, &run_id, None).await
}

/// `kglue stop workflow`: asks to stop a workflow run (its active nodes are stopped).
pub async fn stop_workflow(client: &Client, namespace: &str, name: &str, run_id: &str) -> Result<(), ControlError> {
    validate_id("run id", run_id)?;
    let patch = annotation_patch(&format!("{STOP_PREFIX}{run_id}"), "");
    annotate::<Workflow>(client, namespace, WORKFLOW, name, &patch).await?;
    println!("stop requested: run {run_id} of workflow {name}");
    Ok(())
}

/// `kglue resume workflow`: runs `nodes` (default: the failed ones) of a finished run again, with
/// everything downstream of them; upstream nodes keep their results. With `wait`, follows it.
pub async fn resume_workflow(
    client: &Client,
    namespace: &str,
    name: &str,
    run_id: &str,
    nodes: &[String],
    wait: bool,
) -> Result<bool, ControlError> {
    validate_id("run id", run_id)?;
    let workflow = read_workflow(client, namespace, name).await?;
    let Some(run) = workflow_runs_of(&workflow).into_iter().find(|r| r.id == run_id) else {
        return Err(ControlError::RunNotFound {
            kind: WORKFLOW,
            name: name.to_string(),
            run_id: run_id.to_string(),
        });
    };
    let resumes = run.resumes.unwrap_or(0);
    let patch = annotation_patch(&format!("{RESUME_PREFIX}{run_id}"), &resume_value(nodes));
    annotate::<Workflow>(client, namespace, WORKFLOW, name, &patch).await?;
    println!(
        "resume requested: run {run_id} of workflow {name}{}",
        if nodes.is_empty() {
            " from its failed nodes".to_string()
        } else {
            format!(" from {}", nodes.join(", "))
        }
    );
    if !wait {
        return Ok(true);
    }
    follow(client, namespace, name, run_id, Some(resumes)).await
}

/// The workflow run history as a table, newest first as in status.
pub fn render_workflow_runs(runs: &[WorkflowRun]) -> String {
    if runs.is_empty() {
        return "no runs\n".into();
    }
    let mut rows: Vec<Vec<String>> = vec![
        [
            "RUN",
            "STATE",
            "STARTED BY",
            "STARTED",
            "DURATION",
            "RESUMES",
            "NODES",
            "MESSAGE",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    ];
    for run in runs {
        let started_by = match &run.started_by.name {
            Some(name) => format!("{:?}/{name}", run.started_by.kind),
            None => format!("{:?}", run.started_by.kind),
        };
        let seconds = match (&run.started_at, &run.completed_at) {
            (Some(start), Some(end)) => Some(end.0.duration_since(start.0).as_secs_f64()),
            _ => None,
        };
        rows.push(vec![
            run.id.clone(),
            format!("{:?}", run.state),
            started_by,
            run.started_at
                .as_ref()
                .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default(),
            seconds.map(duration).unwrap_or_default(),
            run.resumes.unwrap_or(0).to_string(),
            node_states(run),
            run.message
                .as_deref()
                .map(|m| cut_chars(m, MESSAGE_CHARS))
                .unwrap_or_default(),
        ]);
    }
    super::render_table(&rows)
}

/// `kglue runs workflow`: prints the workflow's runs.
pub async fn workflow_runs(
    client: &Client,
    namespace: &str,
    name: &str,
    output: RunsOutput,
) -> Result<(), ControlError> {
    let runs = workflow_runs_of(&read_workflow(client, namespace, name).await?);
    match output {
        RunsOutput::Json => println!("{}", serde_json::to_string_pretty(&runs)?),
        RunsOutput::Table => print!("{}", render_workflow_runs(&runs)),
    }
    Ok(())
}

/// `kglue runs trigger`: prints the trigger's recent fires.
pub async fn trigger_fires(
    client: &Client,
    namespace: &str,
    name: &str,
    output: RunsOutput,
) -> Result<(), ControlError> {
    let trigger = read_trigger(client, namespace, name).await?;
    let fires = trigger.status.map(|s| s.fires).unwrap_or_default();
    match output {
        RunsOutput::Json => println!("{}", serde_json::to_string_pretty(&fires)?),
        RunsOutput::Table if fires.is_empty() => println!("no fires"),
        RunsOutput::Table => {
            let mut rows: Vec<Vec<String>> = vec![vec!["FIRED".into(), "REASON".into(), "STARTED".into()]];
            for fire in &fires {
                rows.push(vec![
                    fire.time.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    cut_chars(&fire.reason, MESSAGE_CHARS),
                    fire.started.join(", "),
                ]);
            }
            print!("{}", super::render_table(&rows));
        }
    }
    Ok(())
}

/// `kglue start trigger`: fires a trigger (any type) with extra arguments for its actions;
/// prints what it started once the operator recorded the fire.
pub async fn fire_trigger(
    client: &Client,
    namespace: &str,
    name: &str,
    request_id: Option<String>,
    arguments: BTreeMap<String, String>,
    user: Option<&str>,
) -> Result<(), ControlError> {
    let request_id = request_id.unwrap_or_else(|| new_request_id(Timestamp::now(), random_u32()));
    validate_id("request id", &request_id)?;
    annotate::<Trigger>(
        client,
        namespace,
        TRIGGER,
        name,
        &start_patch(&request_id, &arguments, user),
    )
    .await?;
    println!("request {request_id}: fire trigger {name}");
    let reason = format!("requested ({request_id})");
    let started = Instant::now();
    loop {
        let trigger = read_trigger(client, namespace, name).await?;
        let fires = trigger.status.map(|s| s.fires).unwrap_or_default();
        if let Some(fire) = fires.iter().find(|f| f.reason == reason) {
            for started in &fire.started {
                println!("started {started}");
            }
            return Ok(());
        }
        let pending = trigger
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(&format!("{}{request_id}", super::START_PREFIX)));
        if !pending {
            // Handled without a fire: refused (suspended, or the trigger cannot fire).
            return Err(ControlError::Refused {
                what: format!("trigger {name} did not fire; `kubectl describe kgtrigger {name}` shows why"),
            });
        }
        if started.elapsed() >= RECORD_TIMEOUT {
            return Err(ControlError::NotRecorded {
                request_id,
                seconds: RECORD_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kglue_crds::common::{StartedBy, StartedByKind};
    use kglue_crds::workflow::NodeRun;

    fn node(name: &str, state: Option<RunState>, skipped: bool) -> NodeRun {
        NodeRun {
            name: name.into(),
            state,
            skipped,
            run_id: None,
            started_at: None,
            completed_at: None,
            message: None,
        }
    }

    #[test]
    fn resume_values_name_the_nodes_or_are_empty() {
        assert_eq!(resume_value(&[]), "");
        assert_eq!(resume_value(&["clean".into()]), r#"{"nodes":["clean"]}"#);
    }

    #[test]
    fn workflow_runs_show_every_nodes_state() {
        let run = WorkflowRun {
            id: "wr-0123456789".into(),
            request_id: None,
            started_by: StartedBy {
                kind: StartedByKind::Trigger,
                name: Some("landing".into()),
            },
            state: RunState::Failed,
            run_properties: BTreeMap::new(),
            started_at: Some(Time("2030-01-01T00:00:00Z".parse().expect("a time"))),
            completed_at: Some(Time("2030-01-01T00:01:30Z".parse().expect("a time"))),
            resumes: Some(1),
            nodes: vec![
                node("crawl", Some(RunState::Succeeded), false),
                node("clean", Some(RunState::Failed), false),
                node("publish", None, true),
            ],
            message: Some("node clean ended Failed (bad row)".into()),
        };
        let table = render_workflow_runs(&[run]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("RUN "), "{table}");
        assert!(lines[1].contains("Trigger/landing"), "{table}");
        assert!(lines[1].contains("1m30s"), "{table}");
        assert!(
            lines[1].contains("crawl=Succeeded clean=Failed publish=skipped"),
            "{table}"
        );
        assert_eq!(render_workflow_runs(&[]), "no runs\n");
    }
}
