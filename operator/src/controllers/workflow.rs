//! Workflow: checks, then runs (`crate::workflows`). Every node's Job or Crawler exists
//! (`JobNotFound`, `CrawlerNotFound`) and the nodes form no cycle (`CycleDetected`, the message
//! lists one cycle). The node count goes to `status.nodeCount`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kglue_crds::common::ObservedStatus;
use kglue_crds::workflow::WorkflowNode;
use kglue_crds::{Crawler, Job, Workflow};
use kube::core::DeserializeGuard;
use kube::{Client, ResourceExt};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::{Context, Error, Problem, Reason, Reconcile, controller, existing_names, missing, referrers};

/// What the Workflow reconcile reads.
pub struct Refs {
    /// Jobs that exist.
    pub jobs: BTreeSet<String>,
    /// Crawlers that exist.
    pub crawlers: BTreeSet<String>,
}

fn job_refs(workflow: &Workflow) -> Vec<(&str, String)> {
    workflow
        .spec
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, node)| node.job.as_deref().map(|job| (job, format!("spec.nodes[{i}].job"))))
        .collect()
}

fn crawler_refs(workflow: &Workflow) -> Vec<(&str, String)> {
    workflow
        .spec
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, node)| {
            node.crawler
                .as_deref()
                .map(|crawler| (crawler, format!("spec.nodes[{i}].crawler")))
        })
        .collect()
}

/// One cycle among the nodes' dependencies, as node names with the first repeated at the end, or
/// None when the nodes form a DAG. Dependencies on unknown nodes are ignored (the API server
/// refuses them).
pub fn find_cycle(nodes: &[WorkflowNode]) -> Option<Vec<String>> {
    let edges: BTreeMap<&str, Vec<&str>> = nodes
        .iter()
        .map(|node| {
            (
                node.name.as_str(),
                node.depends_on.iter().map(|d| d.node.as_str()).collect(),
            )
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        InProgress,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    // Iterative depth-first search: 64 nodes at most, but no recursion keeps it obviously bounded.
    for start in edges.keys().copied() {
        if marks.contains_key(start) {
            continue;
        }
        let mut path: Vec<&str> = vec![start];
        let mut next_edge: Vec<usize> = vec![0];
        marks.insert(start, Mark::InProgress);
        while let (Some(&node), Some(index)) = (path.last(), next_edge.last_mut()) {
            let successors = edges.get(node).map(Vec::as_slice).unwrap_or_default();
            if let Some(&next) = successors.get(*index) {
                *index += 1;
                if !edges.contains_key(next) {
                    continue;
                }
                match marks.get(next) {
                    Some(Mark::InProgress) => {
                        let from = path.iter().position(|n| *n == next).unwrap_or_default();
                        let mut cycle: Vec<String> = path[from..].iter().map(|n| n.to_string()).collect();
                        cycle.push(next.to_string());
                        return Some(cycle);
                    }
                    Some(Mark::Done) => {}
                    None => {
                        marks.insert(next, Mark::InProgress);
                        path.push(next);
                        next_edge.push(0);
                    }
                }
            } else {
                marks.insert(node, Mark::Done);
                path.pop();
                next_edge.pop();
            }
        }
    }
    None
}

impl Reconcile for Workflow {
    type Refs = Refs;

    fn observed(&self) -> Option<&ObservedStatus> {
        self.status.as_ref().map(|s| &s.observed)
    }

    async fn read(&self, client: &Client, namespace: &str) -> Result<Refs, Error> {
        let jobs = job_refs(self).into_iter().map(|(n, _)| n.to_string());
        let crawlers = crawler_refs(self).into_iter().map(|(n, _)| n.to_string());
        Ok(Refs {
            jobs: existing_names::<Job>(client, namespace, jobs).await?,
            crawlers: existing_names::<Crawler>(client, namespace, crawlers).await?,
        })
    }

    async fn reconcile_runs(
        ctx: &Context,
        namespace: &str,
        name: &str,
        blocked: Option<String>,
    ) -> Result<Option<std::time::Duration>, Error> {
        crate::workflows::reconcile_workflow(ctx, namespace, name, blocked).await
    }

    fn validate(&self, refs: &Refs) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(cycle) = find_cycle(&self.spec.nodes) {
            problems.push(Problem::new(
                Reason::CycleDetected,
                format!(
                    "spec.nodes depend on each other in a cycle: {} (each waits for the next); remove one dependsOn entry",
                    cycle.join(" → ")
                ),
            ));
        }
        problems.extend(missing(job_refs(self), &refs.jobs, Reason::JobNotFound, "Job"));
        problems.extend(missing(
            crawler_refs(self),
            &refs.crawlers,
            Reason::CrawlerNotFound,
            "Crawler",
        ));
        problems
    }

    fn status_extra(&self, _refs: &Refs) -> Map<String, Value> {
        let mut extra = Map::new();
        extra.insert("nodeCount".into(), json!(self.spec.nodes.len()));
        extra
    }
}

/// Runs the Workflow controller; Job and Crawler changes re-check the Workflows that use them.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let controller = controller::<Workflow>(&ctx);
    let (by_job, by_crawler) = (controller.store(), controller.store());
    let controller = controller
        .watches(
            ctx.watch_api::<DeserializeGuard<Job>>(),
            Default::default(),
            move |job: DeserializeGuard<Job>| {
                let name = job.name_any();
                referrers(&by_job, job.namespace().as_deref(), |w: &Workflow| {
                    job_refs(w).iter().any(|(n, _)| *n == name)
                })
            },
        )
        .watches(
            ctx.watch_api::<DeserializeGuard<Crawler>>(),
            Default::default(),
            move |crawler: DeserializeGuard<Crawler>| {
                let name = crawler.name_any();
                referrers(&by_crawler, crawler.namespace().as_deref(), |w: &Workflow| {
                    crawler_refs(w).iter().any(|(n, _)| *n == name)
                })
            },
        );
    super::run(controller, ctx, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(nodes: &str) -> Workflow {
        serde_saphyr::from_str(&format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: w}}\nspec:\n  nodes:\n{nodes}"
        ))
        .expect("a Workflow")
    }

    const PIPELINE: &str = "    - {name: crawl, crawler: landing}
    - {name: clean, job: clean, dependsOn: [{node: crawl}]}
    - {name: publish, job: publish, dependsOn: [{node: clean}, {node: crawl}]}
";

    #[test]
    fn a_dag_with_its_jobs_and_crawlers_is_valid() {
        let refs = Refs {
            jobs: ["clean".to_string(), "publish".to_string()].into(),
            crawlers: ["landing".to_string()].into(),
        };
        let w = workflow(PIPELINE);
        assert_eq!(find_cycle(&w.spec.nodes), None);
        assert_eq!(w.validate(&refs), vec![]);
        assert_eq!(w.status_extra(&refs)["nodeCount"], 3);
    }

    #[test]
    fn a_cycle_is_listed() {
        let w = workflow(
            "    - {name: a, job: j, dependsOn: [{node: c}]}
    - {name: b, job: j, dependsOn: [{node: a}]}
    - {name: c, job: j, dependsOn: [{node: b}]}
    - {name: d, job: j}
",
        );
        let cycle = find_cycle(&w.spec.nodes).expect("a cycle");
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4, "{cycle:?}");
        let refs = Refs {
            jobs: ["j".to_string()].into(),
            crawlers: BTreeSet::new(),
        };
        let problems = w.validate(&refs);
        assert_eq!(problems[0].reason, Reason::CycleDetected);
        assert!(problems[0].message.contains(" → "), "{}", problems[0].message);
    }

    #[test]
    fn missing_jobs_and_crawlers_are_named() {
        let refs = Refs {
            jobs: ["clean".to_string()].into(),
            crawlers: BTreeSet::new(),
        };
        let reasons: Vec<Reason> = workflow(PIPELINE).validate(&refs).iter().map(|p| p.reason).collect();
        assert_eq!(reasons, [Reason::JobNotFound, Reason::CrawlerNotFound]);
    }
}
