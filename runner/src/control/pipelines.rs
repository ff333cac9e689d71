//! `kglue start|stop|runs|resume workflow` and `kglue start trigger`: the same annotations a
//! user can write with kubectl (docs/workflows.md, docs/triggers.md), and the Workflow's and
//! Trigger's status read back.

use std::collections::BTreeMap;
use std::time::Instant;

use kglue_crds::common::RunState;
use kglue_crds::protocol::requests::{Request, ResumeBody};
use kglue_crds::workflow::WorkflowRun;
use kglue_crds::{Trigger, Workflow};
use kube::Client;

use super::render::{MESSAGE_CHARS, cut_chars, duration, render_table};
use super::{
    Cluster, Console, ControlError, RECORD_TIMEOUT, RunsOutput, StartOptions, annotate, put_start, put_stop,
    read_object, start_request, validate_id,
};

const WORKFLOW: &str = "Workflow";
const TRIGGER: &str = "Trigger";

async fn read_workflow(client: &Client, namespace: &str, name: &str) -> Result<Workflow, ControlError> {
    read_object(client, namespace, WORKFLOW, name).await
}

async fn read_trigger(client: &Client, namespace: &str, name: &str) -> Result<Trigger, ControlError> {
    read_object(client, namespace, TRIGGER, name).await
}

fn workflow_runs_of(workflow: &Workflow) -> Vec<WorkflowRun> {
    workflow.status.as_ref().map(|s| s.runs.clone()).unwrap_or_default()
}

/// The resume request of `run_id`: `nodes`, or (none given) the failed ones.
pub fn resume_request(run_id: &str, nodes: &[String]) -> Request {
    Request::Resume {
        run_id: run_id.to_string(),
        body: ResumeBody { nodes: nodes.to_vec() },
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
    console: &mut Console<'_>,
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
            writeln!(console.out, "{line}")?;
            last = line;
        }
        let resumed = resumed_from.is_none_or(|from| run.resumes.unwrap_or(0) > from);
        if resumed && run.state.is_final() {
            if let Some(message) = &run.message {
                writeln!(console.out, "{message}")?;
            }
            return Ok(run.state == RunState::Succeeded);
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// `kglue start workflow`: asks for a workflow run with run properties; prints the request id
/// and the run id; with `wait`, follows it to its end.
pub async fn start_workflow(
    cluster: &Cluster,
    name: &str,
    options: StartOptions,
    console: &mut Console<'_>,
) -> Result<bool, ControlError> {
    let (client, namespace) = (&cluster.client, cluster.namespace.as_str());
    let wait = options.wait;
    let what = format!("start workflow {name}");
    let request_id = put_start(options, &what, console, async |patch| {
        annotate::<Workflow>(client, namespace, WORKFLOW, name, patch).await
    })
    .await?;
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
    writeln!(console.out, "run {run_id}")?;
    if !wait {
        return Ok(true);
    }
    follow(client, namespace, name, &run_id, None, console).await
}

/// `kglue stop workflow`: asks to stop a workflow run (its active nodes are stopped).
pub async fn stop_workflow(
    cluster: &Cluster,
    name: &str,
    run_id: &str,
    console: &mut Console<'_>,
) -> Result<(), ControlError> {
    let (client, namespace) = (&cluster.client, cluster.namespace.as_str());
    put_stop(run_id, &format!("workflow {name}"), console, async |patch| {
        annotate::<Workflow>(client, namespace, WORKFLOW, name, patch).await
    })
    .await
}

/// `kglue resume workflow`: runs `nodes` (default: the failed ones) of a finished run again, with
/// everything downstream of them; upstream nodes keep their results. With `wait`, follows it.
pub async fn resume_workflow(
    cluster: &Cluster,
    name: &str,
    run_id: &str,
    nodes: &[String],
    wait: bool,
    console: &mut Console<'_>,
) -> Result<bool, ControlError> {
    let (client, namespace) = (&cluster.client, cluster.namespace.as_str());
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
    let patch = resume_request(run_id, nodes).to_patch();
    annotate::<Workflow>(client, namespace, WORKFLOW, name, &patch).await?;
    writeln!(
        console.out,
        "resume requested: run {run_id} of workflow {name}{}",
        if nodes.is_empty() {
            " from its failed nodes".to_string()
        } else {
            format!(" from {}", nodes.join(", "))
        }
    )?;
    if !wait {
        return Ok(true);
    }
    follow(client, namespace, name, run_id, Some(resumes), console).await
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
    render_table(&rows)
}

/// `kglue runs workflow`: prints the workflow's runs.
pub async fn workflow_runs(
    cluster: &Cluster,
    name: &str,
    output: RunsOutput,
    console: &mut Console<'_>,
) -> Result<(), ControlError> {
    let (client, namespace) = (&cluster.client, cluster.namespace.as_str());
    let runs = workflow_runs_of(&read_workflow(client, namespace, name).await?);
    match output {
        RunsOutput::Json => writeln!(console.out, "{}", serde_json::to_string_pretty(&runs)?)?,
        RunsOutput::Table => write!(console.out, "{}", render_workflow_runs(&runs))?,
    }
    Ok(())
}

/// `kglue runs trigger`: prints the trigger's recent fires.
pub async fn trigger_fires(
    cluster: &Cluster,
    name: &str,
    output: RunsOutput,
    console: &mut Console<'_>,
) -> Result<(), ControlError> {
    let (client, namespace) = (&cluster.client, cluster.namespace.as_str());
    let trigger = read_trigger(client, namespace, name).await?;
    let fires = trigger.status.map(|s| s.fires).unwrap_or_default();
    match output {
        RunsOutput::Json => writeln!(console.out, "{}", serde_json::to_string_pretty(&fires)?)?,
        RunsOutput::Table if fires.is_empty() => writeln!(console.out, "no fires")?,
        RunsOutput::Table => {
            let mut rows: Vec<Vec<String>> = vec![vec!["FIRED".into(), "REASON".into(), "STARTED".into()]];
            for fire in &fires {
                rows.push(vec![
                    fire.time.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    cut_chars(&fire.reason, MESSAGE_CHARS),
                    fire.started.join(", "),
                ]);
            }
            write!(console.out, "{}", render_table(&rows))?;
        }
    }
    Ok(())
}

/// `kglue start trigger`: fires a trigger (any type) with extra arguments for its actions;
/// prints what it started once the operator recorded the fire.
pub async fn fire_trigger(
    cluster: &Cluster,
    name: &str,
    options: StartOptions,
    console: &mut Console<'_>,
) -> Result<(), ControlError> {
    let (client, namespace) = (&cluster.client, cluster.namespace.as_str());
    let what = format!("fire trigger {name}");
    let request_id = put_start(options, &what, console, async |patch| {
        annotate::<Trigger>(client, namespace, TRIGGER, name, patch).await
    })
    .await?;
    let reason = format!("requested ({request_id})");
    let started = Instant::now();
    loop {
        let trigger = read_trigger(client, namespace, name).await?;
        let fires = trigger.status.map(|s| s.fires).unwrap_or_default();
        if let Some(fire) = fires.iter().find(|f| f.reason == reason) {
            for started in &fire.started {
                writeln!(console.out, "started {started}")?;
            }
            return Ok(());
        }
        let pending = trigger
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(&start_request(&request_id, BTreeMap::new(), None).annotation().0));
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
        let value = |nodes: &[String]| resume_request("wr-1", nodes).annotation().1;
        assert_eq!(value(&[]), "");
        assert_eq!(value(&["clean".into()]), r#"{"nodes":["clean"]}"#);
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
