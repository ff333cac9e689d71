//! The runner's identity in a namespace that runs pipelines: a ServiceAccount, a Role with only
//! what a run needs (brief §3: least privilege), and the RoleBinding between them. One place for
//! the rules: tests apply these objects, `kglue-operator runner-rbac` prints them, and the Helm
//! chart renders the same list.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The default name of the runner's ServiceAccount, Role and RoleBinding.
pub const RUNNER: &str = "kglue-runner";

/// One rule and who needs it.
pub struct Rule {
    /// Why the runner needs it (printed as a comment by `runner-rbac`).
    pub why: &'static str,
    /// Resources of the kglue.dev group.
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
}

/// The runner's rules, all in the kglue.dev group, each with why it remains. Not there: Secrets
/// (the operator mounts a Connection's consenting Secret into the pod), batch Jobs and Pods, any
/// write to Jobs, Crawlers or a Session's spec (their status and bookmarks are the operator's), `update` and `delete`
/// of anything (every write is a server-side apply, and the operator deletes the Tables a crawl
/// reports gone), and `list` of RunResults. What RBAC cannot say is left to the admission policy
/// (`admission.rs`: a RunResult only from its attempt's own pod) and to the runner's checks
/// before it writes (a sink inside its Connection's `allowedWritePrefixes`; docs/security.md).
/// RBAC cannot name objects that do not exist yet, so a runner may still apply any Table or
/// Database of its namespace.
pub const RUNNER_RULES: &[Rule] = &[
    Rule {
        why: "read the spec and committed bookmark of the Job or Crawler being run",
        resources: &["jobs", "crawlers"],
        verbs: &["get"],
    },
    Rule {
        why: "read the catalog: source tables, connections (endpoints, not secrets), classifiers",
        resources: &["databases", "tables", "connections", "classifiers"],
        verbs: &["get", "list"],
    },
    Rule {
        why: "create and update (server-side apply) the tables a job's sinks or a crawl write; no update (a runner never replaces a Table whole) and no delete (the operator deletes the Tables a crawl reports gone)",
        resources: &["tables"],
        verbs: &["create", "patch"],
    },
    Rule {
        why: "record a table's partitions and schema drift (server-side apply)",
        resources: &["tables/status"],
        verbs: &["patch"],
    },
    Rule {
        why: "a crawler creates its database when it does not exist",
        resources: &["databases"],
        verbs: &["create", "patch"],
    },
    Rule {
        why: "report the attempt's result to the operator (the only writer of run status and bookmarks; the admission policy kglue-runresults lets only the attempt's own pod create it); read back a decision whose answer was lost, and the decided commit a settle attempt finishes",
        resources: &["runresults"],
        verbs: &["create", "get"],
    },
    Rule {
        why: "a session's pod reads the Session it serves",
        resources: &["sessions"],
        verbs: &["get"],
    },
    Rule {
        why: "a session's pod reports its use (status.activity: serving since, queries, last activity) by server-side apply under its own field manager, kglue-session; the rest of the status is the operator's",
        resources: &["sessions/status"],
        verbs: &["patch"],
    },
    Rule {
        why: "a streaming attempt reports its progress (status.streaming: batches, rates, lag, outages) in its own RunResult's status by server-side apply, field manager kglue-stream; the admission policy kglue-runresults lets only the attempt's own pod write it",
        resources: &["runresults/status"],
        verbs: &["patch"],
    },
];

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "kglue-runner".to_string()),
            ("app.kubernetes.io/part-of".to_string(), "kglue".to_string()),
        ])),
        ..ObjectMeta::default()
    }
}

/// The runner's ServiceAccount, Role and RoleBinding in `namespace`, all named `name`.
pub fn runner_objects(name: &str, namespace: &str) -> (ServiceAccount, Role, RoleBinding) {
    let account = ServiceAccount {
        metadata: meta(name, namespace),
        ..ServiceAccount::default()
    };
    let role = Role {
        metadata: meta(name, namespace),
        rules: Some(
            RUNNER_RULES
                .iter()
                .map(|rule| PolicyRule {
                    api_groups: Some(vec![kglue_crds::API_GROUP.into()]),
                    resources: Some(rule.resources.iter().map(|r| r.to_string()).collect()),
                    verbs: rule.verbs.iter().map(|v| v.to_string()).collect(),
                    ..PolicyRule::default()
                })
                .collect(),
        ),
    };
    let binding = RoleBinding {
        metadata: meta(name, namespace),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: name.into(),
            namespace: Some(namespace.into()),
            ..Subject::default()
        }]),
    };
    (account, role, binding)
}

/// The three objects as one YAML stream, each rule of the Role preceded by a comment saying why.
pub fn runner_yaml(name: &str, namespace: &str) -> String {
    let mut yaml = format!(
        "# The kglue runner's identity in namespace {namespace}: what a run may do, and nothing more.\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {{app.kubernetes.io/name: kglue-runner, app.kubernetes.io/part-of: kglue}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {{app.kubernetes.io/name: kglue-runner, app.kubernetes.io/part-of: kglue}}\nrules:\n"
    );
    for rule in RUNNER_RULES {
        yaml.push_str(&format!(
            "  # {}\n  - apiGroups: [{}]\n    resources: [{}]\n    verbs: [{}]\n",
            rule.why,
            kglue_crds::API_GROUP,
            rule.resources.join(", "),
            rule.verbs.join(", ")
        ));
    }
    yaml.push_str(&format!(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {{app.kubernetes.io/name: kglue-runner, app.kubernetes.io/part-of: kglue}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {name}}}\nsubjects:\n  - {{kind: ServiceAccount, name: {name}, namespace: {namespace}}}\n"
    ));
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yaml_and_the_objects_say_the_same() {
        let (_, role, binding) = runner_objects(RUNNER, "lake");
        let documents: Vec<serde_json::Value> = runner_yaml(RUNNER, "lake")
            .split("\n---\n")
            .map(|doc| serde_saphyr::from_str(doc).expect("valid YAML"))
            .collect();
        assert_eq!(documents.len(), 3);
        assert_eq!(documents[1], serde_json::to_value(&role).expect("role"));
        assert_eq!(documents[2], serde_json::to_value(&binding).expect("binding"));
    }

    #[test]
    fn the_runner_cannot_touch_secrets_pods_jobs_or_specs() {
        let (_, role, _) = runner_objects(RUNNER, "lake");
        for rule in role.rules.iter().flatten() {
            assert_eq!(rule.api_groups.as_deref(), Some(&["kglue.dev".to_string()][..]));
            let resources = rule.resources.clone().unwrap_or_default();
            if resources.iter().any(|r| r == "jobs" || r == "crawlers") {
                assert_eq!(rule.verbs, ["get"]);
            }
            assert!(!resources.iter().any(|r| r == "secrets" || r == "pods" || r == "*"));
            assert!(!rule.verbs.iter().any(|v| v == "*" || v == "escalate" || v == "bind"));
            assert!(!rule.verbs.iter().any(|v| v == "update" || v == "delete"), "{rule:?}");
            if resources.iter().any(|r| r == "sessions") {
                assert_eq!(rule.verbs, ["get"], "a session's pod cannot change a Session's spec");
            }
        }
    }
}
