//! The scheduler's one job, for a single node: bind every pending pod that has no node (and is
//! meant for the default scheduler) to this node through the `pods/binding` subresource.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Client, ResourceExt};

/// Pods this agent binds: no node yet, the default scheduler, not finished.
const UNBOUND: &str = "spec.nodeName=,spec.schedulerName=default-scheduler,status.phase=Pending";
const BIND_ATTEMPTS: u32 = 5;

/// Whether a pod may be bound to a node with these labels: no scheduling gates, not being deleted,
/// and its `nodeSelector` (if any) matches.
pub fn bindable(pod: &Pod, node_labels: &BTreeMap<String, String>) -> bool {
    let Some(spec) = &pod.spec else { return false };
    if pod.metadata.deletion_timestamp.is_some() || spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
        return false;
    }
    if spec.scheduling_gates.as_ref().is_some_and(|gates| !gates.is_empty()) {
        return false;
    }
    spec.node_selector
        .as_ref()
        .is_none_or(|selector| selector.iter().all(|(k, v)| node_labels.get(k) == Some(v)))
}

/// Watches unbound pods and binds them, until the stream ends (it does not, normally).
pub async fn run(client: Client, node: String, node_labels: BTreeMap<String, String>) {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut events = watch(pods, watcher::Config::default().fields(UNBOUND))
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => pod,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "watching unbound pods failed; retrying");
                continue;
            }
        };
        if !bindable(&pod, &node_labels) {
            continue;
        }
        // Each binding runs on its own, so a slow or failing one never holds up the others.
        tokio::spawn(bind(client.clone(), pod, node.clone()));
    }
}

async fn bind(client: Client, pod: Pod, node: String) {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.clone()),
            ..Default::default()
        },
    };
    for attempt in 1..=BIND_ATTEMPTS {
        let result: Result<serde_json::Value, _> = pods
            .create_subresource("binding", &name, &PostParams::default(), &binding)
            .await;
        match result {
            Ok(_) => {
                tracing::info!(pod = %format!("{namespace}/{name}"), node, "bound pod");
                return;
            }
            // Already bound (by an earlier event) or gone: nothing to do.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => return,
            Err(error) => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), attempt, %error, "binding failed");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSchedulingGate, PodSpec};

    fn pod(selector: Option<(&str, &str)>, gated: bool) -> Pod {
        Pod {
            spec: Some(PodSpec {
                node_selector: selector.map(|(k, v)| BTreeMap::from([(k.to_string(), v.to_string())])),
                scheduling_gates: gated.then(|| vec![PodSchedulingGate { name: "g".into() }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn node_selector_and_gates_are_honoured() {
        let labels = BTreeMap::from([("kubernetes.io/os".to_string(), "linux".to_string())]);
        assert!(bindable(&pod(None, false), &labels));
        assert!(bindable(&pod(Some(("kubernetes.io/os", "linux")), false), &labels));
        assert!(!bindable(&pod(Some(("kubernetes.io/os", "windows")), false), &labels));
        assert!(!bindable(&pod(None, true), &labels));
    }
}
