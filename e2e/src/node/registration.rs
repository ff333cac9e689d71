//! The Node object and its heartbeat: the Node is created with its capacity, its status says
//! Ready, and a Lease in `kube-node-lease` plus the Ready condition's heartbeat are renewed
//! periodically, as a kubelet does.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::Error;

/// How long the node's Lease is valid; renewed every [`super::Config::heartbeat`].
const LEASE_SECONDS: i32 = 40;
const FIELD_MANAGER: &str = "kglue-node-agent";

/// What the node offers, read from the machine.
#[derive(Debug, Clone)]
pub struct Capacity {
    /// CPUs available to this process.
    pub cpus: usize,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// How many pods the node admits.
    pub pods: u32,
}

impl Capacity {
    /// Reads the CPU count and `MemTotal` of `/proc/meminfo`.
    pub fn of_this_machine(pods: u32) -> Capacity {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("MemTotal:"))
                    .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(1 << 30, |kib| kib * 1024);
        Capacity {
            cpus,
            memory_bytes,
            pods,
        }
    }

    /// As Kubernetes resources.
    pub fn resources(&self) -> BTreeMap<String, Quantity> {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(self.cpus.to_string())),
            (
                "memory".to_string(),
                Quantity(format!("{}Ki", self.memory_bytes / 1024)),
            ),
            ("pods".to_string(), Quantity(self.pods.to_string())),
            ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
        ])
    }
}

/// The labels a node carries (node selectors are matched against these).
pub fn node_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), go_arch().to_string()),
        ("kglue.dev/node-agent".to_string(), "true".to_string()),
    ])
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn ready_condition(ready: bool, reason: &str, message: &str) -> NodeCondition {
    NodeCondition {
        type_: "Ready".into(),
        status: if ready { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now()),
        last_transition_time: Some(now()),
    }
}

fn pressure_conditions() -> Vec<NodeCondition> {
    ["MemoryPressure", "DiskPressure", "PIDPressure"]
        .into_iter()
        .map(|type_| NodeCondition {
            type_: type_.into(),
            status: "False".into(),
            reason: Some(format!("KubeletHasNo{type_}")),
            message: Some("the kglue node agent does not track pressure".into()),
            last_heartbeat_time: Some(now()),
            last_transition_time: Some(now()),
        })
        .collect()
}

/// Creates the Node (or adopts an existing one of that name) and marks it Ready; `kubelet_port` is
/// where the API server finds the kubelet API (on the InternalIP, 127.0.0.1).
pub async fn register(client: &Client, name: &str, capacity: &Capacity, kubelet_port: u16) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(node_labels(name)),
            ..Default::default()
        },
        ..Default::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = name, "registered the node"),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::info!(node = name, "the node exists; taking it over")
        }
        Err(error) => return Err(error.into()),
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let mut conditions = pressure_conditions();
    conditions.push(ready_condition(
        true,
        "KubeletReady",
        "kglue-node-agent is posting ready status",
    ));
    let status = NodeStatus {
        capacity: Some(capacity.resources()),
        allocatable: Some(capacity.resources()),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: "127.0.0.1".into(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.into(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: boot_id.trim().into(),
            container_runtime_version: format!("kglue-node-agent://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: kernel.trim().into(),
            kube_proxy_version: String::new(),
            kubelet_version: format!("kglue-node-agent/{}", env!("CARGO_PKG_VERSION")),
            machine_id: machine_id.trim().into(),
            operating_system: "linux".into(),
            os_image: "local processes (kglue e2e)".into(),
            system_uuid: machine_id.trim().into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    Ok(())
}

/// Renews the Lease and the Ready condition's heartbeat.
pub async fn heartbeat(client: &Client, name: &str) -> Result<(), Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    };
    leases
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": lease.metadata,
                "spec": lease.spec,
            })),
        )
        .await?;
    let nodes: Api<Node> = Api::all(client.clone());
    // Conditions merge by type (strategic merge), so this touches only Ready; without a transition
    // time the one from registration stays.
    let ready = NodeCondition {
        last_transition_time: None,
        ..ready_condition(true, "KubeletReady", "kglue-node-agent is posting ready status")
    };
    let patch = json!({ "status": { "conditions": [ready] } });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    Ok(())
}

/// Marks the node NotReady when the agent stops (best effort).
pub async fn mark_not_ready(client: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({ "status": { "conditions": [ready_condition(
        false,
        "KubeletNotReady",
        "kglue-node-agent stopped",
    )] } });
    let (params, patch) = (PatchParams::default(), Patch::Strategic(patch));
    let update = nodes.patch_status(name, &params, &patch);
    match tokio::time::timeout(Duration::from_secs(2), update).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "cannot mark the node NotReady"),
        Err(_) => tracing::warn!("marking the node NotReady timed out"),
    }
}
