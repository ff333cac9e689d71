//! The admission policy that binds a RunResult to the pod that reports it (docs/security.md).
//!
//! A RunResult moves a Job's bookmark, so who may create one matters more than RBAC can say: the
//! runner Role lets every runner pod of a namespace create RunResults, under any name. The API
//! server knows more than RBAC uses: a service-account token bound to a pod carries the pod's name
//! and UID (`authentication.kubernetes.io/pod-name` and `pod-uid` in the request's user info). This
//! ValidatingAdmissionPolicy lets a RunResult be created only
//! - by a request whose token is bound to a pod,
//! - named after that pod's Kubernetes Job (the pod is named `<job>-` and five characters, cut as
//!   the API server cuts generated names: [`kglue_crds::protocol::ids::is_attempt_pod_name`] is the
//!   same rule in Rust, which the operator checks again),
//! - and recording that very pod in `spec.pod`;
//!
//! and a RunResult's spec never changes after. Its status (a streaming attempt's progress, which
//! moves nothing but the Job's `status.streaming`) is written under the same three rules. The operator, for its part, counts a RunResult only
//! when `spec.pod` is one of the attempt's pods (runs/mod.rs), so a result created while the policy
//! was not installed, or by hand, does not count either.
//!
//! One copy of the policy: the chart ships the YAML this module prints
//! (`kglue-operator admission-policy`; `charts/kglue/files/`), and a test fails when they differ.

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kglue_crds::protocol::ids::{GENERATED_BASE_MAX, GENERATED_SUFFIX_LEN};

/// The policy's name (and its bindings' prefix).
pub const POLICY: &str = "kglue-runresults";

/// Where the chart keeps the policy, relative to the chart's folder.
pub const CHART_FILE: &str = "files/runresult-policy.yaml";

/// The user-info keys a pod-bound service-account token adds (the API server's
/// `serviceaccount.PodNameKey` and `PodUIDKey`).
const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";

fn variable(name: &str, expression: String) -> Variable {
    Variable {
        name: name.into(),
        expression,
    }
}

fn claim(key: &str) -> String {
    format!(
        "has(request.userInfo.extra) && '{key}' in request.userInfo.extra && size(request.userInfo.extra['{key}']) > 0 ? request.userInfo.extra['{key}'][0] : ''"
    )
}

/// The checks of a create, each with the message a refused runner (or person) reads.
fn validations() -> Vec<Validation> {
    // A create, and a write of the status (a streaming attempt's progress): both only by the
    // attempt's own pod.
    let on_create = |expression: &str| {
        format!(
            "!(request.operation == 'CREATE' || (has(request.subResource) && request.subResource == 'status')) || ({expression})"
        )
    };
    vec![
        Validation {
            expression: on_create("variables.podName != ''"),
            message: Some(
                "a RunResult is created only by a run's own pod, with a service-account token bound to that pod".into(),
            ),
            ..Validation::default()
        },
        Validation {
            expression: on_create(&format!(
                "variables.podName.startsWith(variables.podPrefix) && size(variables.podName) == size(variables.podPrefix) + {GENERATED_SUFFIX_LEN}"
            )),
            message_expression: Some(
                "'pod ' + variables.podName + ' is not a pod of attempt ' + object.metadata.name + ': a RunResult is created only by its own attempt\\'s pod'".into(),
            ),
            ..Validation::default()
        },
        Validation {
            expression: on_create(
                "has(object.spec.pod) && object.spec.pod.name == variables.podName && object.spec.pod.uid == variables.podUid",
            ),
            message_expression: Some(
                "'spec.pod must name the pod whose token creates the RunResult (' + variables.podName + ')'".into(),
            ),
            ..Validation::default()
        },
        Validation {
            expression: "request.operation != 'UPDATE' || object.spec == oldObject.spec".into(),
            message: Some("a RunResult's spec does not change once it is created".into()),
            ..Validation::default()
        },
    ]
}

/// The policy: what a RunResult create (and update) must satisfy.
pub fn policy() -> ValidatingAdmissionPolicy {
    let prefix = format!(
        "size(object.metadata.name) + 1 > {GENERATED_BASE_MAX} ? (object.metadata.name + '-').substring(0, {GENERATED_BASE_MAX}) : object.metadata.name + '-'"
    );
    ValidatingAdmissionPolicy {
        metadata: ObjectMeta {
            name: Some(POLICY.into()),
            labels: Some([("app.kubernetes.io/part-of".to_string(), "kglue".to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".into()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(vec![kglue_crds::API_GROUP.into()]),
                    api_versions: Some(vec!["*".into()]),
                    operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                    resources: Some(vec!["runresults".into(), "runresults/status".into()]),
                    ..NamedRuleWithOperations::default()
                }]),
                ..MatchResources::default()
            }),
            variables: Some(vec![
                variable("podName", claim(POD_NAME_KEY)),
                variable("podUid", claim(POD_UID_KEY)),
                variable("podPrefix", prefix),
            ]),
            validations: Some(validations()),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        status: None,
    }
}

/// A binding of the policy, named `kglue-runresults-<suffix>`, that denies in the namespaces
/// `namespaces` selects.
pub fn binding(suffix: &str, namespaces: LabelSelector) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: ObjectMeta {
            name: Some(format!("{POLICY}-{suffix}")),
            labels: Some([("app.kubernetes.io/part-of".to_string(), "kglue".to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(ValidatingAdmissionPolicyBindingSpec {
            policy_name: Some(POLICY.into()),
            validation_actions: Some(vec!["Deny".into()]),
            match_resources: Some(MatchResources {
                namespace_selector: Some(namespaces),
                ..MatchResources::default()
            }),
            ..ValidatingAdmissionPolicyBindingSpec::default()
        }),
    }
}

/// The policy as the chart ships it: YAML, after a comment saying where it comes from.
pub fn policy_yaml() -> String {
    let body = serde_saphyr::to_string(&policy()).unwrap_or_else(|error| format!("# cannot render: {error}\n"));
    format!(
        "# Generated by `kglue-operator admission-policy` from operator/src/admission.rs; do not edit.\n\
         # A RunResult is created only by its own attempt's pod, and never changed (docs/security.md).\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_ships_this_policy() {
        let path = kglue_crds::crate_dir!().join("../charts/kglue").join(CHART_FILE);
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == policy_yaml(),
            "{} differs from operator/src/admission.rs: run `cargo run -q -p kglue-operator -- admission-policy > {}`",
            path.display(),
            path.display()
        );
    }

    #[test]
    fn the_policy_reads_back_as_itself() {
        let text = policy_yaml();
        let read: ValidatingAdmissionPolicy = serde_saphyr::from_str(&text).expect("valid YAML");
        assert_eq!(read, policy());
    }
}
