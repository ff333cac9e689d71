//! What every integration test binary shares (they run under libtest-mimic, `harness = false`):
//! starting the control plane and the test environment or failing with a message, one trial per
//! check, a namespace per trial, the CRDs installed from the committed YAML, and waiting for a
//! condition with a deadline.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use libtest_mimic::{Failed, Trial};
use tokio::runtime::Runtime;

use crate::{ControlPlane, load_manifests, repo_root};

/// The field manager of the tests' own writes.
pub const FIELD_MANAGER: &str = "kglue-e2e";

/// Starts the control plane, or says why not and gives the exit code to return.
pub fn start_control_plane() -> Result<ControlPlane, ExitCode> {
    match ControlPlane::start() {
        Ok(control_plane) => {
            eprintln!(
                "control plane up in {:.1}s (state in {})",
                control_plane.start_time.as_secs_f64(),
                control_plane.state_dir().display()
            );
            Ok(control_plane)
        }
        Err(error) => {
            eprintln!("starting the control plane failed: {error}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// The test environment `setup` built, shared by the trials, or a message and the exit code.
pub fn set_up<E>(setup: impl FnOnce() -> Result<E, Box<dyn std::error::Error>>) -> Result<Arc<E>, ExitCode> {
    setup().map(Arc::new).map_err(|error| {
        eprintln!("setup failed: {error}");
        ExitCode::FAILURE
    })
}

/// A trial that runs `check` on the shared environment.
pub fn trial<E: Send + Sync + 'static>(env: &Arc<E>, name: &str, check: fn(&E) -> Result<(), Failed>) -> Trial {
    let env = env.clone();
    Trial::test(name, move || check(&env))
}

/// An environment with a cluster that trials can have namespaces of their own in.
pub trait ClusterEnv: Send + Sync + 'static {
    /// Runs the async parts of the trials.
    fn runtime(&self) -> &Runtime;
    /// The admin client.
    fn client(&self) -> &Client;
    /// A log worth showing when a trial fails (the node agent's), if any.
    fn failure_log(&self) -> Option<PathBuf> {
        None
    }
}

/// The namespace of the trial `name`: its name with `-` for `_`, at most 50 characters.
pub fn namespace_for(name: &str) -> String {
    let namespace: String = name.replace('_', "-").chars().take(50).collect();
    namespace.trim_end_matches('-').to_string()
}

/// A trial that runs `check` in a namespace of its own (see [`namespace_for`]), created ready for
/// pods first; on failure the tail of the environment's log is printed.
pub fn namespaced_trial<E: ClusterEnv>(env: &Arc<E>, name: &str, check: fn(&E, &str) -> Result<(), Failed>) -> Trial {
    let env = env.clone();
    let namespace = namespace_for(name);
    Trial::test(name, move || {
        env.runtime()
            .block_on(create_namespace_for_pods(env.client(), &namespace))?;
        let result = check(&env, &namespace);
        if result.is_err()
            && let Some(log) = env.failure_log()
        {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of the agent's log ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        result
    })
}

/// Creates `namespace` and waits until pods can run in it: its default ServiceAccount and the
/// `kube-root-ca.crt` ConfigMap exist (the controller-manager makes them a moment later). For the
/// node agent's own suites: their fixture pods run host commands as the test's user, so this
/// namespace does not enforce the restricted standard (kglue's namespaces do, see
/// [`crate::create_namespace`]).
pub async fn create_namespace_for_pods(client: &Client, namespace: &str) -> Result<(), Failed> {
    crate::create_namespace_labelled(client, namespace, &[]).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    wait_until(
        "the namespace's default ServiceAccount and kube-root-ca.crt",
        Duration::from_secs(60),
        || async {
            Ok(
                accounts.get_opt("default").await?.is_some()
                    && config_maps.get_opt("kube-root-ca.crt").await?.is_some(),
            )
        },
    )
    .await
}

/// Polls `check` every 100 ms until it holds, failing after `timeout` with `what`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<(), Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, Failed>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {}s waiting for {what}", timeout.as_secs()).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Installs the CRDs from the committed YAML (what users install) and waits until each is
/// Established.
pub async fn install_crds(client: &Client) -> Result<(), Box<dyn std::error::Error>> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for manifest in load_manifests(&repo_root().join("crds/yaml"))? {
        let crd: CustomResourceDefinition = serde_json::from_value(manifest.object)?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd))
            .await
            .map_err(|e| format!("installing CRD {name} failed: {e}"))?;
    }
    for crd in kglue_crds::crds() {
        let name = crd.metadata.name.unwrap_or_default();
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .map_err(|_| format!("CRD {name} did not become Established within 30s"))??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_namespaces_are_valid_names() {
        assert_eq!(namespace_for("job_completes"), "job-completes");
        let long = namespace_for("failing_job_fails_after_backoff_limit_with_exit_code_and_message");
        assert!(long.len() <= 50 && !long.ends_with('-'), "{long}");
    }
}
