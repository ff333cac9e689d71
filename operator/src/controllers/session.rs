//! Session: an interactive SQL endpoint (see `crate::sessions`). The spec check here is the
//! ServiceAccount (`ServiceAccountNotFound`); everything else a Session's status says (Starting,
//! Ready, how it ended) comes from its pod, so the acting module writes the whole status
//! (`ACT_WRITES_STATUS`).

use k8s_openapi::api::core::v1::{Pod, Service};
use kglue_crds::Session;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;

use super::pipeline::{Problem, Reconcile, controller};
use super::refs::{Found, Rechecks};
use crate::context::{Act, Context};
use crate::sessions::pod::APP_NAME;

impl Reconcile for Session {
    type Refs = Found;
    const ACT: Option<Act> = Some(crate::sessions::reconcile);
    const ACT_WRITES_STATUS: bool = true;

    fn validate(&self, found: &Found) -> Vec<Problem> {
        found.missing_service_account(self).into_iter().collect()
    }

    /// The Session controller: its pod and Service (watched by their label, mapped to their
    /// owner) re-check it, so a pod that starts, fails or goes is seen at once; its own status
    /// writes (the pod's activity) reconcile it like any write; a ServiceAccount that comes
    /// re-checks the Sessions that name it.
    fn controller(ctx: &Context) -> Controller<DeserializeGuard<Self>> {
        let owned = watcher::Config::default().labels(&format!("app.kubernetes.io/name={APP_NAME}"));
        controller::<Session>(ctx)
            .owns(ctx.watch_api::<Pod>(), owned.clone())
            .owns(ctx.watch_api::<Service>(), owned)
            .recheck_references(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::pipeline::Reason;

    #[test]
    fn a_session_naming_a_missing_service_account_is_stalled_until_it_exists() {
        let session: Session = serde_saphyr::from_str(
            "apiVersion: kglue.dev/v1alpha1\nkind: Session\nmetadata: {name: adhoc, namespace: ns}\nspec:\n  serviceAccountName: analysts\n  auth: {passwordSecretRef: {name: login}}\n",
        )
        .expect("a Session");
        let mut found = Found::default();
        let problems = session.validate(&found);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].reason, Reason::ServiceAccountNotFound);
        found.service_accounts.insert("analysts".into());
        assert_eq!(session.validate(&found), vec![]);
        let mut default_account = session.clone();
        default_account.spec.service_account_name = None;
        assert_eq!(default_account.validate(&Found::default()), vec![]);
    }
}
