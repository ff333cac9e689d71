//! Workflow: checks, then runs (`crate::workflows`). Every node's Job or Crawler exists
//! (`JobNotFound`, `CrawlerNotFound`) and the nodes form no cycle (`CycleDetected`, the message
//! lists one cycle). The node count goes to `status.nodeCount`.

use std::collections::BTreeMap;

use kglue_crds::Workflow;
use kglue_crds::references::NamedKind;
use kglue_crds::workflow::WorkflowNode;
use serde_json::{Map, Value, json};

use super::pipeline::{Problem, Reason, Reconcile};
use super::refs::Found;
use crate::context::Act;

/// One cycle among the nodes' dependencies, as node names with the first repeated at the end, or
/// None when the nodes form a DAG. Dependencies on unknown nodes are ignored (the API server
/// refuses them).
pub fn find_cycle(nodes: &[WorkflowNode]) -> Option<Vec<String>> {
    let edges: BTreeMap<String, Vec<String>> = nodes
        .iter()
        .map(|node| {
            (
                node.name.clone(),
                node.depends_on.iter().map(|d| d.node.clone()).collect(),
            )
        })
        .collect();
    crate::graph::find_cycle(&edges)
}

impl Reconcile for Workflow {
    type Refs = Found;
    const ACT: Option<Act> = Some(crate::workflows::reconcile);

    fn validate(&self, found: &Found) -> Vec<Problem> {
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
        problems.extend(found.missing(self, NamedKind::Job));
        problems.extend(found.missing(self, NamedKind::Crawler));
        problems
    }

    fn status_extra(&self, _found: &Found) -> Map<String, Value> {
        let mut extra = Map::new();
        extra.insert("nodeCount".into(), json!(self.spec.nodes.len()));
        extra
    }
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
        let refs = Found::of_named(&[
            (NamedKind::Job, &["clean", "publish"]),
            (NamedKind::Crawler, &["landing"]),
        ]);
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
        let refs = Found::of_named(&[(NamedKind::Job, &["j"])]);
        let problems = w.validate(&refs);
        assert_eq!(problems[0].reason, Reason::CycleDetected);
        assert!(problems[0].message.contains(" → "), "{}", problems[0].message);
    }

    #[test]
    fn missing_jobs_and_crawlers_are_named() {
        let refs = Found::of_named(&[(NamedKind::Job, &["clean"])]);
        let reasons: Vec<Reason> = workflow(PIPELINE).validate(&refs).iter().map(|p| p.reason).collect();
        assert_eq!(reasons, [Reason::JobNotFound, Reason::CrawlerNotFound]);
    }
}
