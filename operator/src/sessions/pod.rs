//! A Session's pod and Service: built from the spec (pure), and what the pod is doing, as the
//! state machine reads it (pure).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, Pod, PodSpec, Probe, SecretKeySelector, Service, ServicePort,
    ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kglue_crds::connection::SecretKeyUse;
use kglue_crds::protocol::attempt::{
    LABEL_OWNER_UID, NAMESPACE_ENV, POD_NAME_ENV, SECRETS_DIR, SECRETS_DIR_ENV, SPILL_DIR, SPILL_DIR_ENV,
    TERMINATION_LOG,
};
use kglue_crds::protocol::session::{LABEL_SESSION, PASSWORD_ENV, POD_IP_ENV, ServeCommand};
use kglue_crds::{SessionSpec, Table};
use sha2::{Digest, Sha256};

use crate::runs::batch::{
    controller_reference, field_env, pod_detail, restricted_container, restricted_pod, secrets_volume, spill_volume,
    worker_resources,
};
use crate::settings::RunnerSettings;

/// What a Session's pod and Service are named after the Session: `<name>-session`.
pub const SUFFIX: &str = "-session";
/// `app.kubernetes.io/name` of a session's pod and Service (what the operator watches them by).
pub const APP_NAME: &str = "kglue-session";
/// The annotation on a session's pod holding the hash of what it was built from
/// ([`spec_hash`]): a pod whose hash differs from the spec's is replaced.
pub const SPEC_HASH_ANNOTATION: &str = "kglue.dev/session-spec-hash";
/// The name of the container port and the Service port.
pub const PORT_NAME: &str = "postgres";
/// The session's container.
pub const CONTAINER: &str = "session";

/// The name of a Session's pod and Service.
pub fn object_name(session: &str) -> String {
    format!("{session}{SUFFIX}")
}

/// Where clients connect: `<name>-session.<namespace>.svc:<port>`.
pub fn endpoint(session: &str, namespace: &str, port: i32) -> String {
    format!("{}.{namespace}.svc:{port}", object_name(session))
}

/// The Session a pod and Service belong to.
#[derive(Clone, Debug)]
pub struct SessionOwner {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its UID.
    pub uid: String,
}

/// What the Service selects the pod by: the Session's name and UID.
pub fn selector(owner: &SessionOwner) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_SESSION.to_string(), owner.name.clone()),
        (LABEL_OWNER_UID.to_string(), owner.uid.clone()),
    ])
}

/// The labels of a session's pod and Service.
pub fn labels(owner: &SessionOwner) -> BTreeMap<String, String> {
    let mut labels = selector(owner);
    labels.extend([
        ("app.kubernetes.io/name".to_string(), APP_NAME.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            crate::FIELD_MANAGER.to_string(),
        ),
    ]);
    labels
}

/// The port as `kglue serve` takes it (the schema keeps it within 1024–65535).
fn port(spec: &SessionSpec) -> u16 {
    u16::try_from(spec.port).unwrap_or(5432)
}

/// The `kglue serve` command of a Session.
pub fn serve_command(name: &str, spec: &SessionSpec, settings: &RunnerSettings) -> ServeCommand {
    ServeCommand {
        session: name.to_string(),
        port: port(spec),
        username: spec.auth.username.clone(),
        databases: spec.databases.clone(),
        worker: worker_resources(settings, spec.worker_size).0,
    }
}

/// The ServiceAccount the pod runs as.
fn service_account<'a>(spec: &'a SessionSpec, settings: &'a RunnerSettings) -> &'a str {
    spec.service_account_name
        .as_deref()
        .unwrap_or(&settings.service_account)
}

/// A short hash of everything in the spec that shapes the pod: the command line (port, user
/// name, databases), the password Secret and key, the worker size's resources and the
/// ServiceAccount. A description, an idle timeout or a maximum duration does not change it, so
/// changing those does not restart a serving session.
pub fn spec_hash(name: &str, spec: &SessionSpec, settings: &RunnerSettings) -> String {
    let (worker, _) = worker_resources(settings, spec.worker_size);
    let shape = serde_json::json!({
        "args": serve_command(name, spec, settings).to_args(),
        "password": [spec.auth.password_secret_ref.name, spec.auth.password_secret_ref.key],
        "cpu": worker.cpu,
        "memoryGiB": worker.memory_gib,
        "serviceAccount": service_account(spec, settings),
    });
    let digest = Sha256::digest(shape.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The Connections a session reaches data through: those of the Tables it exposes (of
/// `spec.databases`, or every Table of the namespace when that is empty), among `tables`.
pub fn session_connections(spec: &SessionSpec, tables: &[&Table]) -> Vec<String> {
    let mut names: Vec<String> = tables
        .iter()
        .filter(|t| spec.databases.is_empty() || spec.databases.contains(&t.spec.database_name))
        .filter_map(|t| t.spec.storage.connection.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The pod of a session. Pure.
pub fn build_pod(owner: &SessionOwner, spec: &SessionSpec, settings: &RunnerSettings, secrets: &[SecretKeyUse]) -> Pod {
    let name = object_name(&owner.name);
    let (worker, resources) = worker_resources(settings, spec.worker_size);
    let (spill, spill_mount) = spill_volume(worker.memory_gib);
    let mut volumes = vec![spill];
    let mut mounts = vec![spill_mount];
    if let Some((volume, mount)) = secrets_volume(secrets) {
        volumes.push(volume);
        mounts.push(mount);
    }
    let value = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    };
    // The kubelet expands $(KGLUE_POD_IP) in the args from these variables.
    let env = vec![
        field_env(NAMESPACE_ENV, "metadata.namespace"),
        field_env(POD_NAME_ENV, "metadata.name"),
        field_env(POD_IP_ENV, "status.podIP"),
        EnvVar {
            name: PASSWORD_ENV.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: spec.auth.password_secret_ref.name.clone(),
                    key: spec.auth.password_secret_ref.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
        value(SECRETS_DIR_ENV, SECRETS_DIR),
        value(SPILL_DIR_ENV, SPILL_DIR),
    ];
    let port = i32::from(port(spec));
    let container = Container {
        name: CONTAINER.into(),
        image: Some(settings.image.clone()),
        args: Some(serve_command(&owner.name, spec, settings).to_args()),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        resources: Some(resources),
        volume_mounts: Some(mounts),
        termination_message_path: Some(TERMINATION_LOG.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(restricted_container()),
        ..Container::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(owner.namespace.clone()),
            labels: Some(labels(owner)),
            annotations: Some(BTreeMap::from([(
                SPEC_HASH_ANNOTATION.to_string(),
                spec_hash(&owner.name, spec, settings),
            )])),
            owner_references: Some(vec![controller_reference("Session", &owner.name, &owner.uid)]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            // A session that dies is Failed: the operator does not restart it behind the user's
            // back (a new generation starts a new pod).
            restart_policy: Some("Never".into()),
            service_account_name: Some(service_account(spec, settings).to_string()),
            containers: vec![container],
            volumes: Some(volumes),
            security_context: Some(restricted_pod()),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The ClusterIP Service in front of a session's pod. Pure.
pub fn build_service(owner: &SessionOwner, spec: &SessionSpec) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(object_name(&owner.name)),
            namespace: Some(owner.namespace.clone()),
            labels: Some(labels(owner)),
            owner_references: Some(vec![controller_reference("Session", &owner.name, &owner.uid)]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector(owner)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.into()),
                port: spec.port,
                target_port: Some(IntOrString::Int(spec.port)),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The Service `<name>-session` as the state machine sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceSeen {
    /// There is none.
    Absent,
    /// The Session's, as the operator builds it.
    Current,
    /// The Session's, with another selector or port (the spec changed).
    Outdated,
    /// Not the Session's: never written or deleted by the operator.
    Foreign,
}

/// What `service` is to the Session whose Service is `desired`: the Session's own (owned by its
/// UID) as built, or changed since; or another's. Pure.
pub fn service_seen(service: Option<&Service>, desired: &Service) -> ServiceSeen {
    let Some(service) = service else {
        return ServiceSeen::Absent;
    };
    let spec = |s: &Service| {
        let spec = s.spec.clone().unwrap_or_default();
        let ports: Vec<(Option<String>, i32, Option<IntOrString>)> = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name, p.port, p.target_port))
            .collect();
        (spec.selector, ports)
    };
    let owned = service.metadata.owner_references.iter().flatten().any(|r| {
        desired
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|d| d.uid == r.uid)
    });
    match (owned, spec(service) == spec(desired)) {
        (false, _) => ServiceSeen::Foreign,
        (true, true) => ServiceSeen::Current,
        (true, false) => ServiceSeen::Outdated,
    }
}

/// A session's pod as the state machine sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodView {
    /// `metadata.name`.
    pub name: String,
    /// Whether it carries the Session's UID (else it is another object's, e.g. of a Session
    /// deleted and created again under the same name).
    pub owned: bool,
    /// Whether it is the operator's session pod at all (`app.kubernetes.io/name`).
    pub managed: bool,
    /// `status.phase`: Pending, Running, Succeeded, Failed.
    pub phase: String,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// [`SPEC_HASH_ANNOTATION`].
    pub spec_hash: Option<String>,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// How it ended (exit code, reason, termination message), or why it waits (a container's
    /// waiting reason and message, e.g. a missing password Secret).
    pub detail: Option<String>,
}

impl PodView {
    /// Whether the pod's process has ended.
    pub fn terminated(&self) -> bool {
        matches!(self.phase.as_str(), "Succeeded" | "Failed")
    }
}

/// What the state machine needs of `pod`, for the Session with UID `uid`. Pure.
pub fn pod_view(pod: &Pod, uid: &str) -> PodView {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_else(|| "Pending".into());
    let terminated = matches!(phase.as_str(), "Succeeded" | "Failed");
    let detail = if terminated {
        pod_detail(std::slice::from_ref(pod))
    } else {
        status
            .container_statuses
            .iter()
            .flatten()
            .find_map(|c| c.state.as_ref()?.waiting.clone())
            .and_then(|waiting| match (waiting.reason, waiting.message) {
                (Some(reason), Some(message)) => Some(format!("{reason}: {message}")),
                (reason, message) => reason.or(message),
            })
            .or_else(|| {
                status
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                    .and_then(|c| c.message.clone())
            })
    };
    PodView {
        name: pod.metadata.name.clone().unwrap_or_default(),
        owned: labels.get(LABEL_OWNER_UID).map(String::as_str) == Some(uid),
        managed: labels.get("app.kubernetes.io/name").map(String::as_str) == Some(APP_NAME),
        phase,
        created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        spec_hash: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SPEC_HASH_ANNOTATION).cloned()),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use kglue_crds::protocol::session::ServeArgs;
    use serde_json::Value;

    use crate::settings::WorkerSizes;

    fn settings() -> RunnerSettings {
        RunnerSettings {
            image: "kglue/runner:0.1.0".into(),
            service_account: "kglue-runner".into(),
            ttl_seconds: 86400,
            retry_backoff: std::time::Duration::from_secs(10),
            worker_sizes: WorkerSizes::default(),
            local_paths: Vec::new(),
            stream_metrics_address: None,
        }
    }

    fn spec(yaml: &str) -> SessionSpec {
        serde_saphyr::from_str(yaml).expect("a Session spec")
    }

    fn owner() -> SessionOwner {
        SessionOwner {
            name: "adhoc".into(),
            namespace: "lake".into(),
            uid: "uid-7".into(),
        }
    }

    const SPEC: &str = "
workerSize: Medium
port: 15432
databases: [sales, web]
auth:
  username: analyst
  passwordSecretRef: {name: adhoc-login, key: pw}
";

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn pod_json(spec: &SessionSpec, secrets: &[SecretKeyUse]) -> Value {
        serde_json::to_value(build_pod(&owner(), spec, &settings(), secrets)).expect("serialises")
    }

    #[test]
    fn the_pod_runs_kglue_serve_with_what_the_spec_says() {
        let spec = spec(SPEC);
        let pod = pod_json(&spec, &[]);
        let container = &pod["spec"]["containers"][0];
        let args: Vec<String> = serde_json::from_value(container["args"].clone()).expect("args");
        // The runner parses what the operator wrote, with the pod's IP expanded by the kubelet.
        let mut argv = vec!["kglue".to_string()];
        argv.extend(args.iter().skip(1).map(|a| a.replace("$(KGLUE_POD_IP)", "10.0.0.9")));
        let parsed = Cli::try_parse_from(argv)
            .expect("kglue serve parses the pod's args")
            .serve;
        assert_eq!(args[0], "serve");
        assert_eq!(parsed.session.as_deref(), Some("adhoc"));
        assert_eq!(parsed.port, 15432);
        assert_eq!(parsed.username, "analyst");
        assert_eq!(parsed.databases, ["sales", "web"]);
        assert_eq!(parsed.listen, ["10.0.0.9", "127.0.0.1"]);

        assert_eq!(pod["metadata"]["name"], "adhoc-session");
        assert_eq!(pod["metadata"]["namespace"], "lake");
        assert_eq!(container["image"], "kglue/runner:0.1.0");
        assert_eq!(container["ports"][0]["name"], "postgres");
        assert_eq!(container["ports"][0]["containerPort"], 15432);
        assert_eq!(container["readinessProbe"]["tcpSocket"]["port"], 15432);
        assert_eq!(container["resources"]["limits"]["memory"], "8Gi");
        assert_eq!(container["resources"]["requests"]["cpu"], "2");
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(container["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["serviceAccountName"], "kglue-runner");
    }

    #[test]
    fn the_pod_reads_its_password_from_the_secret_and_its_address_from_the_downward_api() {
        let pod = pod_json(&spec(SPEC), &[]);
        let env = pod["spec"]["containers"][0]["env"].as_array().expect("env").clone();
        let names: Vec<&str> = env.iter().filter_map(|e| e["name"].as_str()).collect();
        assert_eq!(
            &names[..4],
            [
                "KGLUE_NAMESPACE",
                "KGLUE_POD_NAME",
                "KGLUE_POD_IP",
                "KGLUE_SESSION_PASSWORD"
            ]
        );
        assert_eq!(env[0]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
        assert_eq!(env[1]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
        assert_eq!(env[2]["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
        assert_eq!(env[3]["valueFrom"]["secretKeyRef"]["name"], "adhoc-login");
        assert_eq!(env[3]["valueFrom"]["secretKeyRef"]["key"], "pw");
        assert!(env[3]["value"].is_null(), "the password is never in the pod spec");
    }

    #[test]
    fn the_pod_mounts_the_exposed_tables_connection_secrets_as_runs_do() {
        let connection: kglue_crds::connection::ConnectionSpec =
            serde_json::from_value(serde_json::json!({"s3": {"credentialsSecretRef": {"name": "lake-creds"}}}))
                .expect("a Connection spec");
        let pod = pod_json(&spec(SPEC), &connection.secret_keys());
        let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
        let secrets = volumes
            .iter()
            .find(|v| v["name"] == "connection-secrets")
            .expect("a projected volume");
        let sources = &secrets["projected"]["sources"];
        assert_eq!(sources[0]["secret"]["items"][0]["path"], "lake-creds/AWS_ACCESS_KEY_ID");
        assert_eq!(secrets["projected"]["defaultMode"], 0o400);
        let mounts = pod["spec"]["containers"][0]["volumeMounts"].as_array().expect("mounts");
        let mount = mounts
            .iter()
            .find(|m| m["name"] == "connection-secrets")
            .expect("mounted");
        assert_eq!(mount["mountPath"], SECRETS_DIR);
        assert_eq!(mount["readOnly"], true);
        // Without Secrets to mount, no volume.
        let bare = pod_json(&spec(SPEC), &[]);
        assert!(
            !bare["spec"]["volumes"]
                .as_array()
                .expect("volumes")
                .iter()
                .any(|v| v["name"] == "connection-secrets")
        );
    }

    fn table(database: &str, connection: Option<&str>) -> Table {
        let mut storage = serde_json::json!({"location": "s3://b/t/", "format": "Parquet"});
        if let Some(connection) = connection {
            storage["connection"] = connection.into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kglue.dev/v1alpha1", "kind": "Table",
            "metadata": {"name": format!("{database}-t"), "namespace": "lake"},
            "spec": {"databaseName": database, "tableName": "t", "storage": storage}
        }))
        .expect("a Table")
    }

    #[test]
    fn a_session_uses_the_connections_of_the_tables_it_exposes() {
        let sales = table("sales", Some("lake"));
        let web = table("web", Some("clicks"));
        let hr = table("hr", Some("private"));
        let local = table("sales", None);
        let tables = [&sales, &web, &hr, &local];
        assert_eq!(session_connections(&spec(SPEC), &tables), ["clicks", "lake"]);
        let all = spec("auth: {passwordSecretRef: {name: s}}");
        assert_eq!(session_connections(&all, &tables), ["clicks", "lake", "private"]);
    }

    #[test]
    fn pod_and_service_are_owned_labelled_and_selected_by_the_session() {
        let spec = spec(SPEC);
        let pod = pod_json(&spec, &[]);
        let service = serde_json::to_value(build_service(&owner(), &spec)).expect("serialises");
        for object in [&pod, &service] {
            let reference = &object["metadata"]["ownerReferences"][0];
            assert_eq!(reference["apiVersion"], "kglue.dev/v1alpha1");
            assert_eq!(reference["kind"], "Session");
            assert_eq!(reference["name"], "adhoc");
            assert_eq!(reference["uid"], "uid-7");
            assert_eq!(reference["controller"], true);
            let labels = &object["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/name"], "kglue-session");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "kglue-operator");
            assert_eq!(labels[LABEL_SESSION], "adhoc");
            assert_eq!(labels[LABEL_OWNER_UID], "uid-7");
            assert_eq!(object["metadata"]["name"], "adhoc-session");
        }
        assert_eq!(service["spec"]["type"], "ClusterIP");
        assert_eq!(
            service["spec"]["selector"],
            serde_json::json!({"kglue.dev/session": "adhoc", "kglue.dev/owner-uid": "uid-7"})
        );
        assert_eq!(service["spec"]["ports"][0]["port"], 15432);
        assert_eq!(service["spec"]["ports"][0]["targetPort"], 15432);
        assert_eq!(service["spec"]["ports"][0]["name"], "postgres");
        // The Service's selector matches the pod's labels.
        let selector = service["spec"]["selector"].as_object().expect("selector");
        assert!(selector.iter().all(|(k, v)| &pod["metadata"]["labels"][k] == v));
        assert_eq!(endpoint("adhoc", "lake", 15432), "adhoc-session.lake.svc:15432");
    }

    #[test]
    fn the_spec_hash_changes_with_what_shapes_the_pod_only() {
        let settings = settings();
        let base = spec(SPEC);
        let hash = spec_hash("adhoc", &base, &settings);
        assert_eq!(hash, spec_hash("adhoc", &base.clone(), &settings), "stable");
        let mut quiet = base.clone();
        quiet.description = Some("for the quarterly numbers".into());
        quiet.idle_timeout_minutes = 5;
        quiet.max_duration_minutes = Some(30);
        assert_eq!(spec_hash("adhoc", &quiet, &settings), hash);
        let changes: [fn(&mut SessionSpec); 6] = [
            |s| s.port = 5433,
            |s| s.auth.username = "other".into(),
            |s| s.databases.push("hr".into()),
            |s| s.auth.password_secret_ref.key = "password".into(),
            |s| s.worker_size = kglue_crds::common::WorkerSize::Large,
            |s| s.service_account_name = Some("analysts".into()),
        ];
        for change in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(spec_hash("adhoc", &changed, &settings), hash, "{changed:?}");
        }
        let pod = build_pod(&owner(), &base, &settings, &[]);
        assert_eq!(pod_view(&pod, "uid-7").spec_hash.as_deref(), Some(hash.as_str()));
    }

    #[test]
    fn a_service_with_another_port_is_outdated_and_one_of_another_owner_foreign() {
        let spec = spec(SPEC);
        let desired = build_service(&owner(), &spec);
        assert_eq!(service_seen(None, &desired), ServiceSeen::Absent);
        assert_eq!(service_seen(Some(&desired), &desired), ServiceSeen::Current);
        let mut moved = spec.clone();
        moved.port = 5432;
        let old = build_service(&owner(), &moved);
        assert_eq!(service_seen(Some(&old), &desired), ServiceSeen::Outdated);
        let other = SessionOwner {
            uid: "uid-8".into(),
            ..owner()
        };
        assert_eq!(
            service_seen(Some(&build_service(&other, &spec)), &desired),
            ServiceSeen::Foreign
        );
    }
}
