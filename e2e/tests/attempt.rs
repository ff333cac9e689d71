//! `kglue attempt` as the operator's Kubernetes Job runs it — a plain process with the downward
//! API's environment and a kubeconfig — against a real kube-apiserver: the RunResult it creates
//! (named after and owned by the attempt's batch/v1 Job, with metrics and bookmarks), the Table it
//! applies under the job's field manager, the exit codes and the termination message, for a
//! successful run, a failing one reported twice, a missing Job and a crawl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::batch::v1::Job as BatchJob;
use kglue_crds::run_result::AttemptOutcome;
use kglue_crds::{Crawler, Database, Job, RunResult, Table};
use kglue_e2e::harness::install_crds;
use kglue_e2e::{ControlPlane, create_namespace};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const NAMESPACE: &str = "runs";

/// A batch/v1 Job standing for the attempt's Kubernetes Job: suspended, so no pod is made; it
/// only has to exist so the RunResult's owner reference points at a real UID.
async fn attempt_job(client: &Client, name: &str) -> String {
    let job: BatchJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"suspend": true, "backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "runner", "image": "kglue"}]}}}
    }))
    .expect("valid Job");
    let created = Api::<BatchJob>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &job)
        .await
        .expect("batch Job created");
    created.uid().expect("uid")
}

struct Env {
    client: Client,
    kubeconfig: PathBuf,
    kglue: PathBuf,
    dir: tempfile::TempDir,
}

impl Env {
    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn url(&self, relative: &str) -> String {
        format!("file://{}/", self.path(relative).display())
    }

    /// Runs `kglue attempt` as the pod would, allowed the test's folder for its `file://`
    /// locations (as an operator started with `--allow-local-path` allows a mounted volume).
    fn attempt(&self, kind: &str, name: &str, run_id: &str, job: &str, uid: &str, extra: &[&str]) -> Output {
        let root = self.dir.path().display().to_string();
        let mut extra = extra.to_vec();
        extra.extend(["--allow-local-path", root.as_str()]);
        self.attempt_as_in_a_pod(kind, name, run_id, job, uid, &extra)
    }

    /// Runs `kglue attempt` with exactly `extra`: no local folder allowed unless it says so.
    fn attempt_as_in_a_pod(
        &self,
        kind: &str,
        name: &str,
        run_id: &str,
        job: &str,
        uid: &str,
        extra: &[&str],
    ) -> Output {
        let output = Command::new(&self.kglue)
            .args([
                "attempt",
                "--kind",
                kind,
                "--name",
                name,
                "--run-id",
                run_id,
                "--attempt",
                "0",
            ])
            .args(["--spill-dir", &self.path("spill").display().to_string()])
            .args([
                "--termination-log",
                &self.path(&format!("{job}.termination")).display().to_string(),
            ])
            .args(extra)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KGLUE_NAMESPACE", NAMESPACE)
            .env("KGLUE_JOB_NAME", job)
            .env("KGLUE_JOB_UID", uid)
            .output()
            .expect("kglue runs");
        eprintln!(
            "kglue attempt {name} ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn termination(&self, job: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{job}.termination"))).expect("termination message written")
    }

    async fn result(&self, job: &str) -> RunResult {
        Api::<RunResult>::namespaced(self.client.clone(), NAMESPACE)
            .get(job)
            .await
            .expect("RunResult created")
    }

    async fn apply(&self, object: serde_json::Value) {
        let name = object["metadata"]["name"].as_str().expect("name").to_string();
        let params = PatchParams::apply("kglue-test");
        match object["kind"].as_str() {
            Some("Job") => Api::<Job>::namespaced(self.client.clone(), NAMESPACE)
                .patch(&name, &params, &Patch::Apply(&object))
                .await
                .map(|_| ()),
            Some("Database") => Api::<Database>::namespaced(self.client.clone(), NAMESPACE)
                .patch(&name, &params, &Patch::Apply(&object))
                .await
                .map(|_| ()),
            Some("Crawler") => Api::<Crawler>::namespaced(self.client.clone(), NAMESPACE)
                .patch(&name, &params, &Patch::Apply(&object))
                .await
                .map(|_| ()),
            other => panic!("no API for {other:?}"),
        }
        .expect("object applied");
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kglue_attempt_reports_a_run_result_owned_by_its_job_and_applies_its_table() {
    let kglue = kglue_e2e::workspace_binary("kglue").expect("the kglue binary");
    let control_plane = ControlPlane::start().expect("the control plane starts");
    let client = control_plane.client().await.expect("client");
    install_crds(&client).await.expect("CRDs installed and Established");
    create_namespace(&client, NAMESPACE).await.expect("namespace");
    let env = Env {
        client: client.clone(),
        kubeconfig: control_plane.kubeconfig().to_path_buf(),
        kglue,
        dir: tempfile::tempdir().expect("tempdir"),
    };
    write(
        &env.path("landing/orders/dt=2024-01-01/a.csv"),
        "id,amount,region\n1,2.5,eu\n2,4,us\n3,-1,eu\n",
    );
    env.apply(json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Database",
        "metadata": {"name": "curated"}, "spec": {"databaseName": "curated"}
    }))
    .await;
    env.apply(json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Job",
        "metadata": {"name": "clean"},
        "spec": {
            "bookmark": {"option": "Enable"},
            "sources": [{"name": "orders", "storage": {"location": env.url("landing/orders"), "format": "Csv"}}],
            "sql": "CREATE VIEW cleaned AS SELECT id, amount, region FROM orders WHERE amount > CAST($min AS DOUBLE);",
            "sinks": [{"name": "cleaned", "storage": {"location": env.url("curated/orders"), "format": "Parquet"},
                       "partitionBy": ["region"], "table": {"database": "curated", "table": "orders"}}]
        }
    }))
    .await;
    // The committed bookmark lives in status, where only the operator writes it; here the test
    // plays the operator, to see the runner start from it.
    Api::<Job>::namespaced(client.clone(), NAMESPACE)
        .patch_status(
            "clean",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"bookmark": {"runId": "jr-earlier"}}})),
        )
        .await
        .expect("bookmark set in status");

    // Without --allow-local-path an attempt reaches no local folder: the run fails naming the
    // location, before anything is read or written.
    let refused = "clean-jr-0000000000-0";
    let uid = attempt_job(&client, refused).await;
    let output = env.attempt_as_in_a_pod(
        "Job",
        "clean",
        "jr-0000000000",
        refused,
        &uid,
        &["--arguments", r#"{"min":"0"}"#],
    );
    assert_ne!(output.status.code(), Some(0));
    let result = env.result(refused).await;
    assert_eq!(result.spec.outcome, AttemptOutcome::Failed);
    let error = result.spec.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "{} is a local path, which runs in the cluster may not use",
            env.url("landing/orders").trim_end_matches('/')
        )),
        "{error}"
    );
    assert!(!env.path("curated/orders").exists(), "nothing written");

    // A successful run: exit 0, the RunResult owned by the attempt's Job recording the decision
    // to commit (outcome Committing, with the sinks to finish it from), the table applied.
    let job = "clean-jr-0000000001-0";
    let uid = attempt_job(&client, job).await;
    let output = env.attempt(
        "Job",
        "clean",
        "jr-0000000001",
        job,
        &uid,
        &["--arguments", r#"{"min":"0"}"#, "--worker-size", "Small"],
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(env.termination(job), "Succeeded");
    let result = env.result(job).await;
    let owners = result.owner_references();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (
            owners[0].api_version.as_str(),
            owners[0].kind.as_str(),
            owners[0].name.as_str()
        ),
        ("batch/v1", "Job", job)
    );
    assert_eq!(owners[0].uid, uid);
    assert_eq!(owners[0].controller, Some(false));
    assert_eq!(
        result.labels().get("kglue.dev/run-id").map(String::as_str),
        Some("jr-0000000001")
    );
    assert_eq!(
        result.labels().get("kglue.dev/owner-name").map(String::as_str),
        Some("clean")
    );
    let spec = &result.spec;
    assert_eq!(spec.outcome, AttemptOutcome::Committing, "{:?}", spec.error);
    let intent = spec
        .job
        .as_ref()
        .and_then(|j| j.commit.as_ref())
        .expect("the decision's commit intent");
    assert_eq!(
        intent
            .sinks
            .iter()
            .map(|s| (s.name.as_str(), s.location.as_str()))
            .collect::<Vec<_>>(),
        [("cleaned", env.url("curated/orders").as_str())]
    );
    assert_eq!(
        intent.tables.len(),
        1,
        "the catalog write a settle attempt would finish"
    );
    assert_eq!(
        (spec.owner_name.as_str(), spec.run_id.as_str(), spec.attempt),
        ("clean", "jr-0000000001", 0)
    );
    assert!(spec.finished_at.is_some() && spec.duration_seconds > 0.0);
    let report = spec.job.as_ref().expect("a job report");
    assert_eq!(report.metrics.sources["orders"].rows, 3);
    assert_eq!(
        report.metrics.sinks["cleaned"].rows, 2,
        "the run's argument $min filtered a row"
    );
    assert_eq!(report.metrics.sinks["cleaned"].partitions_added, 2);
    assert_eq!(
        report.started_from.as_ref().and_then(|b| b.run_id.as_deref()),
        Some("jr-earlier"),
        "read the committed bookmark from status"
    );
    let next = report.next_bookmark.as_ref().expect("a proposed bookmark");
    assert!(next.sources.contains_key("orders"));

    let tables: Api<Table> = Api::namespaced(client.clone(), NAMESPACE);
    let table = tables.get("curated.orders").await.expect("the sink's table applied");
    assert_eq!(
        table
            .spec
            .partition_keys
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["region"]
    );
    assert_eq!(
        table.spec.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["id", "amount"]
    );
    let status = table.status.as_ref().expect("status written");
    assert_eq!(status.partitions.as_ref().map(|p| p.count), Some(2));
    let updated = status.last_updated.as_ref().expect("lastUpdated");
    assert_eq!(
        (updated.by.as_str(), updated.run_id.as_deref()),
        ("Job/clean", Some("jr-0000000001"))
    );
    let managers: Vec<(String, Option<String>)> = table
        .managed_fields()
        .iter()
        .map(|m| (m.manager.clone().unwrap_or_default(), m.subresource.clone()))
        .collect();
    assert!(managers.contains(&("kglue-job-clean".into(), None)), "{managers:?}");
    assert!(
        managers.contains(&("kglue-job-clean".into(), Some("status".into()))),
        "{managers:?}"
    );

    // A failing run: exit 1, a Failed RunResult naming the problem; reporting it again (a pod
    // restarted after creating its result) finds it there and leaves it alone.
    env.apply(json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Job",
        "metadata": {"name": "broken"},
        "spec": {
            "sources": [{"name": "orders", "storage": {"location": env.url("landing/orders"), "format": "Csv"}}],
            "sql": "CREATE VIEW out AS SELECT no_such_column FROM orders;",
            "sinks": [{"name": "out", "storage": {"location": env.url("broken"), "format": "Parquet"}}]
        }
    }))
    .await;
    let job = "broken-jr-0000000002-0";
    let uid = attempt_job(&client, job).await;
    let output = env.attempt("Job", "broken", "jr-0000000002", job, &uid, &[]);
    assert_eq!(output.status.code(), Some(1));
    let first = env.result(job).await;
    assert_eq!(first.spec.outcome, AttemptOutcome::Failed);
    let error = first.spec.error.clone().expect("an error");
    assert!(error.contains("no_such_column"), "{error}");
    assert!(
        env.termination(job).starts_with("Failed: ") && env.termination(job).contains("no_such_column"),
        "{}",
        env.termination(job)
    );
    let again = env.attempt("Job", "broken", "jr-0000000002", job, &uid, &[]);
    assert_eq!(again.status.code(), Some(1), "AlreadyExists counts as reported");
    assert_eq!(env.result(job).await.resource_version(), first.resource_version());

    // A Job that is gone is still reported, as Failed with a message saying so.
    let job = "gone-jr-0000000003-0";
    let uid = attempt_job(&client, job).await;
    let output = env.attempt("Job", "gone", "jr-0000000003", job, &uid, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        env.result(job).await.spec.error.as_deref(),
        Some("Job gone does not exist in namespace runs")
    );

    // A crawl reports its figures, and its tables are written under the crawler's manager.
    write(&env.path("raw/events/e.csv"), "id,kind\n1,click\n2,view\n");
    env.apply(json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Crawler",
        "metadata": {"name": "raw"},
        "spec": {"databaseName": "raw", "targets": [{"path": env.url("raw/events")}]}
    }))
    .await;
    let job = "raw-cr-0000000004-0";
    let uid = attempt_job(&client, job).await;
    let output = env.attempt("Crawler", "raw", "cr-0000000004", job, &uid, &[]);
    assert_eq!(output.status.code(), Some(0));
    let crawl = env.result(job).await.spec;
    assert_eq!(crawl.outcome, AttemptOutcome::Succeeded, "{:?}", crawl.error);
    let metrics = crawl.crawl.expect("crawl metrics");
    assert_eq!((metrics.tables_created, metrics.objects_listed), (1, 1), "{metrics:?}");
    assert!(crawl.job.is_none());
    drop(control_plane);
}
