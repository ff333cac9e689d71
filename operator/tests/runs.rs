//! Runs on a real local control plane: the operator, the node agent playing the kubelet (so
//! Kubernetes Jobs really run the `kglue` runner as local processes, counted by the real Job
//! controller), and the S3 server.
//!
//! The cases run in order on one cluster: the example pipeline (crawl, then a bookmarked job run
//! twice), the runner's RBAC, an operator killed at several moments of a run, a killed runner
//! process retried and then stopped, a timeout, ten simultaneous start requests against a limit of
//! two, and the operator's memory with 1,000 Job CRs. Figures are printed, not asserted.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Operator, RUNNER_IMAGE, orders_json, runner_pids, tail};
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kglue_crds::common::RunState;
use kglue_crds::{Job, RunResult, Table};
use kglue_e2e::harness::{self, trial};
use kglue_e2e::{load_manifests, repo_root};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, Config, ResourceExt};
use libtest_mimic::{Arguments, Failed};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};

const NAMESPACE: &str = "sales";
/// How long a run may take to reach the expected state.
const SETTLE: Duration = Duration::from_secs(90);

struct Env {
    cluster: Cluster,
    operator: Mutex<Option<Operator>>,
    /// Request ids used so far, so each case makes fresh ones.
    requests: Mutex<u32>,
}

impl std::ops::Deref for Env {
    type Target = Cluster;

    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let env = match harness::set_up(setup) {
        Ok(env) => env,
        Err(code) => return code,
    };
    let trials = vec![
        trial(
            &env,
            "example_pipeline_crawls_then_runs_a_bookmarked_job_twice",
            pipeline,
        ),
        trial(
            &env,
            "the_runner_account_cannot_change_jobs_nor_read_secrets",
            runner_rbac,
        ),
        trial(
            &env,
            "an_operator_killed_mid_run_records_the_run_and_bookmark_once",
            operator_killed,
        ),
        trial(
            &env,
            "a_killed_runner_gets_a_new_attempt_and_a_run_can_be_stopped",
            runner_killed,
        ),
        trial(&env, "a_run_past_its_timeout_ends_as_timeout", timeout),
        trial(
            &env,
            "a_crawl_that_deletes_tables_leaves_the_deleting_to_the_operator",
            crawler_deletes_through_the_operator,
        ),
        trial(
            &env,
            "a_job_with_its_own_service_account_runs_as_that_account",
            own_service_account,
        ),
        trial(
            &env,
            "a_secret_that_did_not_opt_in_never_reaches_a_connections_endpoint",
            secret_consent,
        ),
        trial(
            &env,
            "a_database_connection_is_checked_by_the_operator_and_tested_from_the_cluster",
            database_connection,
        ),
        trial(
            &env,
            "a_runresult_made_with_another_pods_token_is_refused_by_the_api_server",
            run_results_bound_to_their_pod,
        ),
        trial(
            &env,
            "the_namespace_enforces_the_restricted_pod_security_standard",
            restricted_namespace,
        ),
        trial(
            &env,
            "ten_start_requests_run_two_at_a_time_and_none_is_lost",
            concurrency,
        ),
        trial(&env, "the_kglue_cli_starts_waits_lists_rewinds_and_shows_logs", cli),
        trial(&env, "operator_memory_with_1000_jobs", memory_with_many_jobs),
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    if let Ok(env) = Arc::try_unwrap(env)
        && let Some(operator) = env.operator.lock().unwrap_or_else(|p| p.into_inner()).take()
        && conclusion.has_failed()
    {
        eprintln!("--- {} ---\n{}", operator.log.display(), tail(&operator.log_text(), 80));
    }
    conclusion.exit_code()
}

fn operator_flags() -> Vec<&'static str> {
    vec!["--leader-elect", "false", "--retry-backoff-seconds", "1"]
}

fn setup() -> Result<Env, Box<dyn std::error::Error>> {
    let cluster = Cluster::start(NAMESPACE, &["sales-landing", "sales-curated", "sales-reports"])?;
    let operator = Operator::start(&cluster.control_plane, "runs", &operator_flags())?;
    Ok(Env {
        cluster,
        operator: Mutex::new(Some(operator)),
        requests: Mutex::new(0),
    })
}

impl Env {
    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// Asks for a run of `kind`/`name` with a fresh request id; returns the request id.
    fn start(&self, plural: &str, name: &str, arguments: &[(&str, &str)]) -> Result<String, Failed> {
        let id = {
            let mut n = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            format!("test-{n}")
        };
        let arguments: BTreeMap<&str, &str> = arguments.iter().copied().collect();
        let value = json!({"arguments": arguments}).to_string();
        self.annotate(plural, name, &format!("run.kglue.dev/{id}"), &value)?;
        Ok(id)
    }

    /// Waits until the newest attempt of the run for `request` is in a final state; returns it.
    fn wait_final(&self, plural: &str, name: &str, request: &str) -> Result<Value, Failed> {
        self.wait_run(plural, name, request, SETTLE, |run| {
            run["state"]
                .as_str()
                .is_some_and(|s| ["Succeeded", "Failed", "Timeout", "Stopped", "Error"].contains(&s))
        })
    }

    /// Waits until the newest record of the run for `request` satisfies `done`.
    fn wait_run(
        &self,
        plural: &str,
        name: &str,
        request: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, Failed> {
        let deadline = Instant::now() + limit;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let runs = self.runs(plural, name)?;
            if let Some(run) = newest(&runs, request) {
                if done(run) {
                    return Ok(run.clone());
                }
                last = run.clone();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("{plural}/{name} request {request}: not there within {limit:?}; last seen: {last:#}").into())
    }

    fn restart_operator(&self) -> Result<(), Failed> {
        let mut slot = self.operator.lock().unwrap_or_else(|p| p.into_inner());
        drop(slot.take());
        *slot = Some(Operator::start(&self.control_plane, "runs", &operator_flags()).map_err(|e| e.to_string())?);
        Ok(())
    }
}

/// The newest record (attempt) of the run answering `request`.
fn newest<'a>(runs: &'a [Value], request: &str) -> Option<&'a Value> {
    runs.iter().find(|r| r["requestId"] == request)
}

fn state(run: &Value) -> &str {
    run["state"].as_str().unwrap_or_default()
}

fn expect_state(run: &Value, wanted: &str) -> Result<(), Failed> {
    if state(run) == wanted {
        Ok(())
    } else {
        Err(format!("expected {wanted}, got {:#}", run).into())
    }
}

fn rows(run: &Value, side: &str, name: &str) -> i64 {
    run["metrics"][side][name]["rows"].as_i64().unwrap_or(-1)
}

/// Applies the example pipeline with the Connection pointed at the local S3 server (what a dev
/// overlay does), runs the crawler, then the job twice with new objects landing between the runs.
fn pipeline(env: &Env) -> Result<(), Failed> {
    for manifest in load_manifests(&repo_root().join("examples/sales-pipeline")).map_err(|e| e.to_string())? {
        let mut object = manifest.object.clone();
        // The triggers would start runs of their own (tests/pipelines.rs covers them); these
        // cases count every run.
        if object["kind"] == "Trigger" {
            continue;
        }
        if object["kind"] == "Connection" {
            object["spec"]["s3"]["endpoint"] = json!(env.s3.endpoint());
        }
        env.block(env.applier.apply(&object, NAMESPACE, false))
            .map_err(|e| format!("{}: {e}", manifest.describe()))?;
    }
    env.land(
        "sales-landing",
        "orders/dt=2024-05-01/part-0.json",
        &orders_json(1, 20, "2024-05-01"),
    )?;
    env.land(
        "sales-landing",
        "customers/part-0.csv",
        "customer_id|country\n0|NL\n1|DE\n2|FR\n",
    )?;

    // Ready means the operator has seen the Crawler's Database: a start request it handles before
    // that is refused for the missing Database (seen under load in CI), as it would be for a user.
    env.wait_ready("crawlers", "landing", Duration::from_secs(30))?;
    let crawl = env.start("crawlers", "landing", &[])?;
    let crawled = env.wait_final("crawlers", "landing", &crawl)?;
    expect_state(&crawled, "Succeeded")?;
    let tables: Vec<String> = env
        .block(Api::<Table>::namespaced(env.client.clone(), NAMESPACE).list(&ListParams::default()))
        .map_err(|e| e.to_string())?
        .items
        .iter()
        .map(|t| format!("{}.{}", t.spec.database_name, t.spec.table_name))
        .collect();
    for wanted in ["sales_raw.orders", "sales_raw.customers"] {
        if !tables.iter().any(|t| t == wanted) {
            return Err(format!("the crawl did not create {wanted}; tables: {tables:?}; crawl: {crawled:#}").into());
        }
    }

    // The job was Stalled (TableNotFound) until the crawl; wait until it is Ready.
    wait_ready(env, "clean-orders")?;
    let started = Instant::now();
    let first = env.start("jobs", "clean-orders", &[])?;
    let figures = measure_latencies(env, "clean-orders", &first, started)?;
    let run = env.wait_final("jobs", "clean-orders", &first)?;
    expect_state(&run, "Succeeded")?;
    if rows(&run, "sources", "orders") != 20 || rows(&run, "sinks", "orders_daily") != 20 {
        return Err(format!("the first run should read and write 20 orders: {run:#}").into());
    }
    let job = env.block(env.jobs().get("clean-orders")).map_err(|e| e.to_string())?;
    let bookmark = job
        .status
        .as_ref()
        .and_then(|s| s.bookmark.clone())
        .ok_or("no bookmark committed")?;
    if bookmark.run_id.as_deref() != run["id"].as_str() || !bookmark.sources.contains_key("orders") {
        return Err(format!("the bookmark should be the first run's, with source orders: {bookmark:?}").into());
    }

    env.land(
        "sales-landing",
        "orders/dt=2024-05-02/part-0.json",
        &orders_json(100, 7, "2024-05-02"),
    )?;
    let second = env.start("jobs", "clean-orders", &[])?;
    let run2 = env.wait_final("jobs", "clean-orders", &second)?;
    expect_state(&run2, "Succeeded")?;
    if rows(&run2, "sources", "orders") != 7 {
        return Err(format!("the second run should read only the 7 new orders: {run2:#}").into());
    }
    let curated = env.block(async {
        let store = env.s3.store("sales-curated").map_err(|e| e.to_string())?;
        let listed: Vec<_> = store.list(Some(&ObjectPath::from("orders_daily"))).collect().await;
        Ok::<_, String>(
            listed
                .into_iter()
                .filter_map(Result::ok)
                .map(|o| o.location.to_string())
                .collect::<Vec<_>>(),
        )
    })?;
    for day in ["order_date=2024-05-01", "order_date=2024-05-02"] {
        if !curated.iter().any(|key| key.contains(day) && key.ends_with(".parquet")) {
            return Err(format!("no Parquet file under {day}: {curated:?}").into());
        }
    }
    eprintln!("{figures}");
    Ok(())
}

fn wait_ready(env: &Env, job: &str) -> Result<(), Failed> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let object = env.block(env.jobs().get(job)).map_err(|e| e.to_string())?;
        if object.status.as_ref().is_some_and(|s| s.observed.is_ready()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("Job {job} did not become Ready: {:?}", object.status).into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Start request → runner process started, and runner exit → run recorded, observed by polling
/// every 10 ms (so each figure is exact to about 10 ms plus one API round trip).
fn measure_latencies(env: &Env, job: &str, request: &str, requested: Instant) -> Result<String, Failed> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NAMESPACE);
    let deadline = Instant::now() + SETTLE;
    let (mut process_started, mut pod_done, mut recorded) = (None, None, None);
    while Instant::now() < deadline && recorded.is_none() {
        if let Some(run) = newest(&env.runs("jobs", job)?, request) {
            let kubernetes_job = run["kubernetesJob"].as_str().unwrap_or_default().to_string();
            if !kubernetes_job.is_empty() && pod_done.is_none() {
                let selector = format!("batch.kubernetes.io/job-name={kubernetes_job}");
                let list = env
                    .block(pods.list(&ListParams::default().labels(&selector)))
                    .map_err(|e| e.to_string())?;
                for pod in list.items {
                    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
                    if process_started.is_none() && (phase == "Running" || phase == "Succeeded") {
                        process_started = Some(requested.elapsed());
                    }
                    if phase == "Succeeded" || phase == "Failed" {
                        pod_done = Some(Instant::now());
                    }
                }
            }
            if RunState::Succeeded == serde_json::from_value(run["state"].clone()).unwrap_or(RunState::Waiting) {
                recorded = pod_done.map(|done| done.elapsed());
                if recorded.is_none() {
                    recorded = Some(Duration::ZERO);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(format!(
        "FIGURES: start request -> runner process running: {}; pod finished -> run recorded Succeeded: {}",
        process_started.map_or("not seen".into(), |d| format!("{} ms", d.as_millis())),
        recorded.map_or("not seen".into(), |d| format!("{} ms", d.as_millis())),
    ))
}

/// A client with a token of the runner's service account, not bound to a pod.
fn runner_client(env: &Env) -> Result<Client, Failed> {
    runner_client_of(env, None)
}

/// A client with a token of the runner's service account, bound to `pod` as a kubelet binds the
/// token it gives a pod (the token then names the pod to the API server).
fn runner_client_of(env: &Env, pod: Option<&Pod>) -> Result<Client, Failed> {
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(600),
            bound_object_ref: pod.map(|pod| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let token = env
        .block(accounts.create_token_request(kglue_operator::rbac::RUNNER, &PostParams::default(), &request))
        .map_err(|e| format!("token request: {e}"))?
        .status
        .map(|s| s.token)
        .ok_or("no token")?;
    let mut config: Config = env
        .block(async {
            let kubeconfig = kube::config::Kubeconfig::read_from(env.control_plane.kubeconfig())?;
            Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await
        })
        .map_err(|e| e.to_string())?;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    // The client spawns its buffer task, which needs the runtime entered.
    let _runtime = env.runtime.enter();
    Ok(Client::try_from(config).map_err(|e| e.to_string())?)
}

fn forbidden<T>(result: Result<T, kube::Error>, what: &str) -> Result<(), Failed> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
        Err(other) => Err(format!("{what}: expected 403 Forbidden, got {other}").into()),
        Ok(_) => Err(format!("{what}: the runner was allowed to").into()),
    }
}

/// A jdbc Connection in the cluster: the operator checks every Secret it names (credentials and
/// CA) and reports a missing key by its field; `kglue connection test -n` reads the Connection and
/// its Secrets with the caller's credentials and reaches the real PostgreSQL server, verifying its
/// certificate against the CA from the Secret.
fn database_connection(env: &Env) -> Result<(), Failed> {
    let server = kglue_e2e::databases::DatabaseServer::start(kglue_e2e::databases::Engine::Postgres)
        .map_err(|e| format!("starting PostgreSQL: {e}"))?;
    let ca = std::fs::read_to_string(server.ca_certificate())?;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    for (name, data) in [
        (
            "sales-db",
            json!({"username": kglue_e2e::databases::USER, "password": kglue_e2e::databases::PASSWORD}),
        ),
        ("sales-db-ca", json!({"ca.crt": ca})),
        ("sales-db-half", json!({"username": kglue_e2e::databases::USER})),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kglue.dev/secret-type": "connection"}},
            "stringData": data,
        }))?;
        env.block(secrets.create(&PostParams::default(), &secret))?;
    }
    let connection = |name: &str, secret: &str| {
        json!({
            "apiVersion": "kglue.dev/v1alpha1", "kind": "Connection", "metadata": {"name": name},
            "spec": {"jdbc": {"url": server.jdbc_url(), "credentialsSecretRef": {"name": secret},
                              "tls": {"mode": "VerifyFull", "caSecretRef": {"name": "sales-db-ca"}}}}
        })
    };
    env.apply_object(&connection("sales-db", "sales-db"))?;
    env.apply_object(&connection("sales-db-half", "sales-db-half"))?;
    env.wait_ready("connections", "sales-db", Duration::from_secs(30))?;
    let connections: Api<kglue_crds::Connection> = Api::namespaced(env.client.clone(), NAMESPACE);
    env.wait_for(
        "Connection sales-db-half Stalled with SecretKeyNotFound naming passwordKey",
        Duration::from_secs(30),
        || {
            let status = env.block(connections.get("sales-db-half"))?.status.unwrap_or_default();
            Ok(status
                .conditions
                .iter()
                .find(|c| {
                    c.type_ == "Stalled"
                        && c.status == "True"
                        && c.reason == "SecretKeyNotFound"
                        && c.message.contains("spec.jdbc.credentialsSecretRef.passwordKey")
                })
                .map(|_| ()))
        },
    )?;

    // A storage location cannot go through a database Connection.
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Job", "metadata": {"name": "through-a-database"},
        "spec": {
            "sources": [{"name": "rows", "storage": {"location": "s3://sales-landing/orders/", "format": "Csv", "connection": "sales-db"}}],
            "sql": "CREATE VIEW out AS SELECT * FROM rows",
            "sinks": [{"name": "out", "storage": {"location": "s3://sales-reports/through-a-database/", "format": "Parquet"}}],
        }
    }))?;
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), NAMESPACE);
    env.wait_for(
        "Job through-a-database Stalled with ConnectionTypeMismatch",
        Duration::from_secs(30),
        || {
            let status = env.block(jobs.get("through-a-database"))?.status.unwrap_or_default();
            Ok(status
                .observed
                .conditions
                .iter()
                .find(|c| {
                    c.type_ == "Stalled"
                        && c.reason == "ConnectionTypeMismatch"
                        && c.message.contains("spec.sources[0].storage.connection names Connection \"sales-db\", which is a jdbc connection")
                })
                .map(|_| ()))
        },
    )
    .map_err(|e| {
        let status = env.block(jobs.get("through-a-database")).map(|j| j.status);
        format!("{:?}; the Job's status: {status:?}", e.message())
    })?;
    env.block(jobs.delete("through-a-database", &DeleteParams::default()))?;

    let (ok, out, err) = env.cli(&["connection", "test", "sales-db", "-n", NAMESPACE])?;
    let expected = format!("reached PostgreSQL at 127.0.0.1:{}\n", server.port());
    if !ok || !out.starts_with(&expected) || !out.contains("tls:               TLSv1.") {
        return Err(
            format!("kglue connection test -n should reach the server over verified TLS:\n{out}\n{err}").into(),
        );
    }
    let (ok, out, err) = env.cli(&["connection", "test", "sales-db-half", "-n", NAMESPACE])?;
    if ok || !err.contains("kglue: connection \"sales-db-half\": Secret \"sales-db-half\" has no key \"password\"") {
        return Err(format!("a missing password must be named:\n{out}\n{err}").into());
    }
    database_pipeline(env, &server)?;
    for name in ["sales-db", "sales-db-half"] {
        env.block(connections.delete(name, &DeleteParams::default()))?;
    }
    for name in ["sales-db", "sales-db-ca", "sales-db-half"] {
        env.block(secrets.delete(name, &DeleteParams::default()))?;
    }
    Ok(())
}

/// In the cluster, through the node agent: a crawl of the database makes a Table of format Jdbc,
/// and a job reads it by key bookmark into a database table it creates, over verified TLS with
/// the Connection's Secrets mounted; the second run reads only the rows added since the first.
fn database_pipeline(env: &Env, server: &kglue_e2e::databases::DatabaseServer) -> Result<(), Failed> {
    server
        .sql(
            "create table orders (id bigint generated always as identity primary key, customer text not null, amount numeric(12,2));
             insert into orders (customer, amount) select 'c' || (i % 5), i / 4.0 from generate_series(1, 100) i;",
        )
        .map_err(|e| e.to_string())?;
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Database", "metadata": {"name": "shop"},
        "spec": {"databaseName": "shop"}
    }))?;
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Crawler", "metadata": {"name": "shop-db"},
        "spec": {"databaseName": "shop", "jdbcTargets": [{"connectionName": "sales-db", "path": "kglue/public/orders"}]}
    }))?;
    env.wait_ready("crawlers", "shop-db", Duration::from_secs(30))?;
    let request = env.start("crawlers", "shop-db", &[])?;
    expect_state(&env.wait_final("crawlers", "shop-db", &request)?, "Succeeded")?;
    let table = env.block(Api::<Table>::namespaced(env.client.clone(), NAMESPACE).get("shop.kglue-public-orders"))?;
    let columns: Vec<String> = table.spec.columns.iter().map(ToString::to_string).collect();
    if table.spec.storage.location != "kglue.public.orders"
        || columns != ["id bigint", "customer string", "amount decimal(12,2)"]
        || table.spec.parameters.get("primaryKey").map(String::as_str) != Some("id")
    {
        return Err(format!("the crawled Table is not the database's table: {:#?}", table.spec).into());
    }
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Job", "metadata": {"name": "copy-orders"},
        "spec": {
            "sources": [{"name": "orders", "table": {"database": "shop", "table": "kglue_public_orders"}, "jdbc": {"bookmarkKeys": ["id"], "partitionColumn": "id", "numPartitions": 2}}],
            "sql": "CREATE VIEW out AS SELECT id, customer, amount FROM orders",
            "sinks": [{"name": "out", "storage": {"location": "kglue.public.orders_copy", "format": "Jdbc", "connection": "sales-db"},
                       "jdbc": {"createTable": true, "upsertKeys": ["id"]}}],
            "bookmark": {"option": "Enable"},
        }
    }))?;
    wait_ready(env, "copy-orders")?;
    let first = env.start("jobs", "copy-orders", &[])?;
    let run = env.wait_final("jobs", "copy-orders", &first)?;
    expect_state(&run, "Succeeded")?;
    if rows(&run, "sources", "orders") != 100 || rows(&run, "sinks", "out") != 100 {
        return Err(format!("the first run should copy 100 rows: {run:#}").into());
    }
    server
        .sql("insert into orders (customer, amount) select 'new', 1 from generate_series(1, 7)")
        .map_err(|e| e.to_string())?;
    let second = env.start("jobs", "copy-orders", &[])?;
    let run = env.wait_final("jobs", "copy-orders", &second)?;
    expect_state(&run, "Succeeded")?;
    if rows(&run, "sources", "orders") != 7 {
        return Err(format!("the second run should read only the 7 new rows: {run:#}").into());
    }
    let copied = server
        .sql("select count(*), count(distinct id), max(id) from orders_copy")
        .map_err(|e| e.to_string())?;
    if copied.trim() != "107\t107\t107" {
        return Err(format!("the copy should hold each of the 107 rows once: {copied}").into());
    }
    let job = env.block(Api::<Job>::namespaced(env.client.clone(), NAMESPACE).get("copy-orders"))?;
    let key = job
        .status
        .and_then(|s| s.bookmark)
        .and_then(|b| b.sources.get("orders").cloned())
        .map(|b| b.key);
    if key.as_ref().and_then(|k| k.first()).map(|k| k.value.as_str()) != Some("107") {
        return Err(format!("the committed bookmark should hold key 107: {key:?}").into());
    }
    // `kglue sql -n` reads the crawled Table from the API server and reaches the database with
    // the Connection's Secret, read with the caller's rights.
    let (ok, out, err) = env.cli(&[
        "sql",
        "-n",
        NAMESPACE,
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n, max(id) AS last FROM shop.kglue_public_orders",
    ])?;
    if !ok || out != "n,last\n107,107\n" {
        return Err(format!("kglue sql -n should count the 107 rows: {out}{err}").into());
    }
    maria_db_crawl(env)?;
    env.block(Api::<Job>::namespaced(env.client.clone(), NAMESPACE).delete("copy-orders", &DeleteParams::default()))?;
    env.block(
        Api::<kglue_crds::Crawler>::namespaced(env.client.clone(), NAMESPACE)
            .delete("shop-db", &DeleteParams::default()),
    )?;
    Ok(())
}

/// A MariaDB database crawled through the operator: its Connection's Secret mounted in the
/// crawl's pod, the Table typed from MariaDB's own types.
fn maria_db_crawl(env: &Env) -> Result<(), Failed> {
    let server = kglue_e2e::databases::DatabaseServer::start(kglue_e2e::databases::Engine::Mysql)
        .map_err(|e| format!("starting MariaDB: {e}"))?;
    server
        .sql("create table items (id int unsigned not null primary key, paid tinyint(1), price decimal(10,2), at datetime(6))")
        .map_err(|e| e.to_string())?;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "maria-db", "labels": {"kglue.dev/secret-type": "connection"}},
        "stringData": {"username": kglue_e2e::databases::USER, "password": kglue_e2e::databases::PASSWORD},
    }))?;
    env.block(secrets.create(&PostParams::default(), &secret))?;
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Connection", "metadata": {"name": "maria-db"},
        "spec": {"jdbc": {"url": server.jdbc_url(), "credentialsSecretRef": {"name": "maria-db"}}}
    }))?;
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Crawler", "metadata": {"name": "maria-db"},
        "spec": {"databaseName": "shop", "tablePrefix": "maria_", "jdbcTargets": [{"connectionName": "maria-db", "path": "kglue/%"}]}
    }))?;
    env.wait_ready("crawlers", "maria-db", Duration::from_secs(30))?;
    let request = env.start("crawlers", "maria-db", &[])?;
    expect_state(&env.wait_final("crawlers", "maria-db", &request)?, "Succeeded")?;
    let table = env.block(Api::<Table>::namespaced(env.client.clone(), NAMESPACE).get("shop.maria-kglue-items"))?;
    let columns: Vec<String> = table.spec.columns.iter().map(ToString::to_string).collect();
    if table.spec.storage.location != "kglue.items"
        || columns != ["id bigint", "paid boolean", "price decimal(10,2)", "at timestamp"]
    {
        return Err(format!(
            "the crawled MariaDB Table is not the database's table: {:#?}",
            table.spec
        )
        .into());
    }
    env.block(
        Api::<kglue_crds::Crawler>::namespaced(env.client.clone(), NAMESPACE)
            .delete("maria-db", &DeleteParams::default()),
    )?;
    env.block(
        Api::<kglue_crds::Connection>::namespaced(env.client.clone(), NAMESPACE)
            .delete("maria-db", &DeleteParams::default()),
    )?;
    env.block(secrets.delete("maria-db", &DeleteParams::default()))?;
    Ok(())
}

/// The chart's admission policy (common::Cluster installs it for every namespace of the suite, so
/// every run here reports through it) lets a RunResult be created only by its own attempt's pod,
/// recording that pod, and never changed: the API server refuses one made with another pod's
/// token, one naming another pod, one made without a pod's token, and a change to a result. Its
/// status (a streaming attempt's progress) is written only with its own pod's token.
fn run_results_bound_to_their_pod(env: &Env) -> Result<(), Failed> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NAMESPACE);
    // Pods as the Job controller names an attempt's, held by a scheduling gate: they never run,
    // but tokens can be bound to them.
    let gated = |name: &str| -> Result<Pod, Failed> {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "schedulingGates": [{"name": "kglue.dev/test"}],
                "serviceAccountName": kglue_operator::rbac::RUNNER,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "runner", "image": RUNNER_IMAGE, "securityContext": {
                    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
            }
        }))?;
        Ok(env.block(pods.create(&PostParams::default(), &pod))?)
    };
    let mine = gated("mine-jr-0123456789-0-x7k2q")?;
    let theirs = gated("theirs-jr-0123456789-0-b4c5d")?;
    let result = |name: &str, pod: &Pod| -> Result<RunResult, Failed> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "kglue.dev/v1alpha1", "kind": "RunResult",
            "metadata": {"name": name},
            "spec": {"ownerKind": "Job", "ownerName": name.split("-jr-").next(), "runId": "jr-0123456789",
                     "attempt": 0, "outcome": "Succeeded",
                     "pod": {"name": pod.metadata.name, "uid": pod.metadata.uid}}
        }))?)
    };
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let refused = |client: Client, object: RunResult, expected: &str, what: &str| -> Result<(), Failed> {
        let results: Api<RunResult> = Api::namespaced(client, NAMESPACE);
        match env.block(results.create(&dry_run, &object)) {
            Err(kube::Error::Api(status)) if status.code < 500 && status.message.contains(expected) => Ok(()),
            other => Err(format!("{what}: expected a refusal naming {expected:?}, got {other:?}").into()),
        }
    };
    let as_mine = runner_client_of(env, Some(&mine))?;
    refused(
        as_mine.clone(),
        result("theirs-jr-0123456789-0", &mine)?,
        "pod mine-jr-0123456789-0-x7k2q is not a pod of attempt theirs-jr-0123456789-0",
        "another attempt's result, made with this pod's token",
    )?;
    refused(
        as_mine.clone(),
        result("mine-jr-0123456789-0", &theirs)?,
        "spec.pod must name the pod whose token creates the RunResult",
        "this attempt's result naming another pod",
    )?;
    for (client, what) in [
        (runner_client(env)?, "the runner's token bound to no pod"),
        (env.client.clone(), "the cluster admin"),
    ] {
        refused(
            client,
            result("mine-jr-0123456789-0", &mine)?,
            "a RunResult is created only by a run's own pod",
            what,
        )?;
    }
    // The pod's own result is accepted, and then cannot change.
    let results: Api<RunResult> = Api::namespaced(as_mine, NAMESPACE);
    let created = env
        .block(results.create(&PostParams::default(), &result("mine-jr-0123456789-0", &mine)?))
        .map_err(|e| format!("the attempt's own pod must create its result: {e}"))?;
    // Its status (a streaming attempt's progress) is written by its own pod only, too.
    let progress = json!({"apiVersion": "kglue.dev/v1alpha1", "kind": "RunResult",
                          "status": {"streaming": {"state": "Running", "batches": 4}}});
    let apply = PatchParams::apply("kglue-stream").force();
    let write_status = |client: Client| {
        let api: Api<RunResult> = Api::namespaced(client, NAMESPACE);
        env.block(api.patch_status(&created.name_any(), &apply, &Patch::Apply(&progress)))
    };
    for (client, expected, what) in [
        (
            runner_client_of(env, Some(&theirs))?,
            "pod theirs-jr-0123456789-0-b4c5d is not a pod of attempt mine-jr-0123456789-0",
            "another attempt's pod writing this result's status",
        ),
        (
            runner_client(env)?,
            "a RunResult is created only by a run's own pod",
            "the runner's token bound to no pod writing a result's status",
        ),
    ] {
        match write_status(client) {
            Err(kube::Error::Api(status)) if status.code < 500 && status.message.contains(expected) => {}
            other => return Err(format!("{what}: expected a refusal naming {expected:?}, got {other:?}").into()),
        }
    }
    let written = write_status(results.clone().into_client())
        .map_err(|e| format!("the attempt's own pod must write its result's status: {e}"))?;
    let batches = written.status.and_then(|s| s.streaming).map(|p| p.batches);
    if batches != Some(4) {
        return Err(format!("the status write should have landed, got batches {batches:?}").into());
    }
    let admin_results: Api<RunResult> = Api::namespaced(env.client.clone(), NAMESPACE);
    let change = json!({"spec": {"outcome": "Failed"}});
    match env.block(admin_results.patch(&created.name_any(), &PatchParams::default(), &Patch::Merge(&change))) {
        Err(kube::Error::Api(status)) if status.message.contains("does not change once it is created") => {}
        other => return Err(format!("changing a result's spec must be refused, got {other:?}").into()),
    }
    env.block(admin_results.delete(&created.name_any(), &DeleteParams::default()))?;
    for pod in [&mine, &theirs] {
        env.block(pods.delete(&pod.name_any(), &DeleteParams::default()))?;
    }
    Ok(())
}

/// Every run of this suite runs in a namespace whose Pod Security admission enforces the
/// restricted standard: a pod that breaks it is refused there, so the runs that pass prove the
/// runner's pods meet it.
fn restricted_namespace(env: &Env) -> Result<(), Failed> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NAMESPACE);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "unrestricted"},
        "spec": {"containers": [{"name": "c", "image": RUNNER_IMAGE}]}
    }))?;
    match env.block(pods.create(&PostParams::default(), &pod)) {
        Err(kube::Error::Api(status))
            if status.code == 403 && status.message.contains("violates PodSecurity \"restricted:latest\"") => {}
        other => return Err(format!("a pod without a security context must be refused, got {other:?}").into()),
    }
    let accepted = env.block(pods.list(&ListParams::default().labels("app.kubernetes.io/name=kglue-runner")))?;
    if accepted.items.is_empty() {
        return Err("no runner pod was admitted in this namespace".into());
    }
    Ok(())
}

/// A Job's `serviceAccountName` is the identity of its runs, proven by RBAC: in a namespace whose
/// default runner account may not create RunResults, a run under that account cannot report and
/// fails with nothing written, while the Job naming an account with the full runner Role
/// succeeds. A Job naming an account that does not exist is Stalled until it does.
fn own_service_account(env: &Env) -> Result<(), Failed> {
    let namespace = "identity";
    let pp = PostParams::default();
    env.block(async {
        kglue_e2e::create_namespace(&env.client, namespace).await?;
        // The default runner of this namespace cannot report a run.
        common::create_runner_identity(&env.client, namespace, kglue_operator::rbac::RUNNER, |role| {
            if let Some(rules) = role.rules.as_mut() {
                rules.retain(|rule| !rule.resources.iter().flatten().any(|r| r == "runresults"));
            }
        })
        .await?;
        common::create_runner_identity(&env.client, namespace, "orders-pipeline", |_| {}).await?;
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "lake-credentials", "labels": {"kglue.dev/secret-type": "connection"}},
            "stringData": {"AWS_ACCESS_KEY_ID": env.s3.access_key(), "AWS_SECRET_ACCESS_KEY": env.s3.secret_key()},
        }))?;
        Api::<Secret>::namespaced(env.client.clone(), namespace)
            .create(&pp, &secret)
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
    .map_err(|e| e.to_string())?;
    env.land("sales-landing", "identity/orders.csv", "id,amount\n1,2.5\n2,3.5\n")?;
    let apply = |object: Value| -> Result<(), Failed> {
        env.block(env.applier.apply(&object, namespace, false))
            .map_err(|e| format!("applying {object}: {e}"))?;
        Ok(())
    };
    apply(json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Connection", "metadata": {"name": "lake"},
        "spec": {"s3": {"endpoint": env.s3.endpoint(), "forcePathStyle": true, "credentialsSecretRef": {"name": "lake-credentials"}}}
    }))?;
    let job = |name: &str, account: Option<&str>| {
        let mut spec = json!({
            "sources": [{"name": "orders", "storage": {"location": "s3://sales-landing/identity/", "format": "Csv", "connection": "lake"}}],
            "sql": "CREATE VIEW cleaned AS SELECT id, amount FROM orders",
            "sinks": [{"name": "cleaned", "storage": {"location": format!("s3://sales-reports/identity/{name}/"), "format": "Parquet", "connection": "lake"}}],
        });
        if let Some(account) = account {
            spec["serviceAccountName"] = json!(account);
        }
        json!({"apiVersion": "kglue.dev/v1alpha1", "kind": "Job", "metadata": {"name": name}, "spec": spec})
    };
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), namespace);
    let condition = |name: &str| -> Result<(String, String), Failed> {
        let job = env.block(jobs.get(name))?;
        let observed = job.status.map(|s| s.observed).unwrap_or_default();
        let stalled = observed
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True");
        Ok(match stalled {
            Some(c) => (c.reason.clone(), c.message.clone()),
            None if observed.is_ready() => ("Ready".into(), String::new()),
            None => (String::new(), String::new()),
        })
    };

    // An account that does not exist yet: Stalled, naming it; Ready once it is created.
    apply(job("later", Some("later-pipeline")))?;
    env.wait_for(
        "Job later Stalled with ServiceAccountNotFound",
        Duration::from_secs(30),
        || {
            let (reason, message) = condition("later")?;
            Ok((reason == "ServiceAccountNotFound" && message.contains("\"later-pipeline\"")).then_some(()))
        },
    )?;
    let (account, _, _) = kglue_operator::rbac::runner_objects("later-pipeline", namespace);
    env.block(Api::<ServiceAccount>::namespaced(env.client.clone(), namespace).create(&pp, &account))?;
    env.wait_for(
        "Job later Ready once its account exists",
        Duration::from_secs(30),
        || Ok((condition("later")?.0 == "Ready").then_some(())),
    )?;

    let final_run = |name: &str| -> Result<Value, Failed> {
        let patch = json!({"metadata": {"annotations": {"run.kglue.dev/identity": "{\"arguments\":{}}"}}});
        env.block(jobs.patch(name, &PatchParams::default(), &Patch::Merge(&patch)))?;
        env.wait_for(&format!("a final run of {name}"), Duration::from_secs(120), || {
            let job = env.block(jobs.get(name))?;
            let runs = serde_json::to_value(job.status.map(|s| s.runs).unwrap_or_default())?;
            Ok(runs
                .as_array()
                .and_then(|runs| runs.first())
                .filter(|run| {
                    ["Succeeded", "Failed", "Error", "Timeout", "Stopped"]
                        .contains(&run["state"].as_str().unwrap_or_default())
                })
                .cloned())
        })
    };
    apply(job("as-pipeline", Some("orders-pipeline")))?;
    apply(job("as-runner", None))?;
    let own = final_run("as-pipeline")?;
    if own["state"] != "Succeeded" {
        return Err(format!("the run under its own account should succeed: {own:#}").into());
    }
    let attempt: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(env.client.clone(), namespace);
    let attempt = env.block(attempt.get(own["kubernetesJob"].as_str().unwrap_or_default()))?;
    let pod_account = attempt
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.service_account_name);
    assert_eq!(pod_account.as_deref(), Some("orders-pipeline"));

    let default = final_run("as-runner")?;
    if default["state"] == "Succeeded" {
        return Err(format!("the default account may not report a run here, yet it succeeded: {default:#}").into());
    }
    let written = |name: &str| -> Result<usize, Failed> {
        let store = env.s3.store("sales-reports").map_err(|e| e.to_string())?;
        let prefix = ObjectPath::from(format!("identity/{name}"));
        let listed: Vec<_> = env.block(store.list(Some(&prefix)).collect::<Vec<_>>());
        Ok(listed
            .into_iter()
            .filter_map(Result::ok)
            .filter(|o| o.location.as_ref().ends_with(".parquet"))
            .count())
    };
    assert!(
        written("as-pipeline")? > 0,
        "the run under its own account wrote its sink"
    );
    assert_eq!(
        written("as-runner")?,
        0,
        "the run that could not report committed nothing"
    );
    Ok(())
}

/// An HTTP endpoint that records every request it gets and answers 403: a Connection's endpoint
/// chosen by someone who wants the credentials a run would send.
struct Capture {
    port: u16,
    seen: Arc<Mutex<String>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Capture {
    fn start() -> Result<Self, Failed> {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let seen = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (record, stopped) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                        let mut buffer = [0u8; 16384];
                        let read = stream.read(&mut buffer).unwrap_or(0);
                        record
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push_str(&String::from_utf8_lossy(&buffer[..read]));
                        let _ = stream
                            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Capture { port, seen, stop })
    }

    fn seen(&self) -> String {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A Connection may only use a Secret that carries the consent label: one naming a Secret of
/// another team is Stalled (`SecretNotOptedIn`), and a run through it never mounts the Secret,
/// so its key never reaches the Connection's endpoint (a recording server here). Once the Secret
/// opts in, the key does reach it: the check can see a leak.
fn secret_consent(env: &Env) -> Result<(), Failed> {
    const KEY: &str = "AKIANOTCONSENTED0001";
    let capture = Capture::start()?;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "other-team"},
        "stringData": {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": "not-yours"},
    }))?;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NAMESPACE);
    env.block(secrets.create(&PostParams::default(), &secret))?;
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Connection", "metadata": {"name": "elsewhere"},
        "spec": {"s3": {"endpoint": format!("http://127.0.0.1:{}", capture.port), "forcePathStyle": true,
                         "credentialsSecretRef": {"name": "other-team"}}}
    }))?;
    let connections: Api<kglue_crds::Connection> = Api::namespaced(env.client.clone(), NAMESPACE);
    let reason = |connections: &Api<kglue_crds::Connection>| -> Result<String, Failed> {
        let connection = env.block(connections.get("elsewhere"))?;
        let observed = connection.status.unwrap_or_default();
        Ok(if observed.is_ready() {
            "Ready".into()
        } else {
            observed
                .conditions
                .iter()
                .find(|c| c.type_ == "Stalled" && c.status == "True")
                .map(|c| c.reason.clone())
                .unwrap_or_default()
        })
    };
    env.wait_for(
        "Connection elsewhere Stalled with SecretNotOptedIn",
        Duration::from_secs(30),
        || Ok((reason(&connections)? == "SecretNotOptedIn").then_some(())),
    )?;
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Job", "metadata": {"name": "exfiltrate"},
        "spec": {
            "sources": [{"name": "loot", "storage": {"location": "s3://loot/data/", "format": "Csv", "connection": "elsewhere"}}],
            "sql": "CREATE VIEW out AS SELECT * FROM loot",
            "sinks": [{"name": "out", "storage": {"location": "s3://sales-reports/exfiltrate/", "format": "Parquet", "connection": "lake"}}],
        }
    }))?;
    let run = |what: &str| -> Result<Value, Failed> {
        let request = env.start("jobs", "exfiltrate", &[])?;
        env.wait_for(what, Duration::from_secs(120), || {
            Ok(env.runs("jobs", "exfiltrate")?.into_iter().find(|r| {
                r["requestId"] == request.as_str()
                    && r["state"] != "Waiting"
                    && r["state"] != "Starting"
                    && r["state"] != "Running"
            }))
        })
    };
    let first = run("a final run through the Connection whose Secret did not opt in")?;
    if first["state"] == "Succeeded" {
        return Err(format!("the run cannot have read anything: {first:#}").into());
    }
    let attempt: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(env.client.clone(), NAMESPACE);
    if let Some(name) = first["kubernetesJob"].as_str() {
        let job = env.block(attempt.get(name))?;
        let volumes = serde_json::to_string(&job.spec.and_then(|s| s.template.spec).map(|s| s.volumes))?;
        assert!(!volumes.contains("other-team"), "the Secret was mounted: {volumes}");
    }
    let seen = capture.seen();
    assert!(!seen.contains(KEY), "the Secret's key reached the endpoint:\n{seen}");

    // Opted in: the key is sent, so the check above could have seen it.
    let patch = json!({"metadata": {"labels": {"kglue.dev/secret-type": "connection"}}});
    env.block(secrets.patch("other-team", &PatchParams::default(), &Patch::Merge(&patch)))?;
    env.wait_for(
        "Connection elsewhere Ready once its Secret opts in",
        Duration::from_secs(30),
        || Ok((reason(&connections)? == "Ready").then_some(())),
    )?;
    run("a final run once the Secret opted in")?;
    let seen = capture.seen();
    assert!(
        seen.contains(KEY),
        "with consent the run signs with the key; the endpoint saw:\n{seen}"
    );
    Ok(())
}

fn runner_rbac(env: &Env) -> Result<(), Failed> {
    let runner = runner_client(env)?;
    let jobs: Api<Job> = Api::namespaced(runner.clone(), NAMESPACE);
    // What a run needs works...
    env.block(jobs.get("clean-orders"))
        .map_err(|e| format!("the runner must read its Job: {e}"))?;
    env.block(Api::<Table>::namespaced(runner.clone(), NAMESPACE).list(&ListParams::default()))
        .map_err(|e| format!("the runner must list Tables: {e}"))?;
    // ...and nothing else.
    let patch = json!({"spec": {"maxRetries": 9}});
    forbidden(
        env.block(jobs.patch("clean-orders", &PatchParams::default(), &Patch::Merge(&patch))),
        "patching a Job's spec",
    )?;
    forbidden(
        env.block(jobs.patch_status(
            "clean-orders",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"runs": []}})),
        )),
        "writing a Job's status (runs, bookmark)",
    )?;
    forbidden(
        env.block(Api::<Secret>::namespaced(runner.clone(), NAMESPACE).get("lake-credentials")),
        "reading the connection's Secret",
    )?;
    forbidden(
        env.block(Api::<Pod>::namespaced(runner.clone(), NAMESPACE).list(&ListParams::default())),
        "listing pods",
    )?;
    forbidden(
        env.block(Api::<RunResult>::namespaced(runner.clone(), NAMESPACE).list(&ListParams::default())),
        "reading other runs' results",
    )?;
    // Tables: written with server-side apply only, never replaced or deleted by a runner.
    let tables: Api<Table> = Api::namespaced(runner, NAMESPACE);
    let table = env
        .block(tables.list(&ListParams::default()))?
        .items
        .into_iter()
        .next()
        .ok_or("no Table to try on")?;
    forbidden(
        env.block(tables.delete(&table.name_any(), &DeleteParams::default())),
        "deleting a Table",
    )?;
    forbidden(
        env.block(tables.replace(&table.name_any(), &PostParams::default(), &table)),
        "replacing a Table (update)",
    )?;
    Ok(())
}

/// A crawl with `deleteBehavior: DeleteFromDatabase` whose data disappeared: the runner cannot
/// delete Tables, so it reports the Table, and the operator deletes it when it records the crawl;
/// the crawler's other Table stays.
fn crawler_deletes_through_the_operator(env: &Env) -> Result<(), Failed> {
    env.land("sales-landing", "sweep/keep/part-0.csv", "id,amount\n1,2.5\n")?;
    env.land("sales-landing", "sweep/gone/part-0.csv", "id,note\n1,x\n")?;
    let crawler = json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Crawler", "metadata": {"name": "sweeper"},
        "spec": {
            "databaseName": "sweep",
            "targets": [{"path": "s3://sales-landing/sweep/keep/", "connection": "lake"},
                        {"path": "s3://sales-landing/sweep/gone/", "connection": "lake"}],
            "schemaChangePolicy": {"deleteBehavior": "DeleteFromDatabase"}
        }
    });
    let database = json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Database", "metadata": {"name": "sweep"},
        "spec": {"databaseName": "sweep"}
    });
    for object in [&database, &crawler] {
        env.block(env.applier.apply(object, NAMESPACE, false))?;
    }
    env.wait_ready("crawlers", "sweeper", SETTLE)?;
    let tables: Api<Table> = Api::namespaced(env.client.clone(), NAMESPACE);
    let swept = || -> Result<Vec<String>, Failed> {
        let mut names: Vec<String> = env
            .block(tables.list(&ListParams::default()))?
            .items
            .into_iter()
            .filter(|t| t.spec.database_name == "sweep")
            .map(|t| t.spec.table_name)
            .collect();
        names.sort();
        Ok(names)
    };
    let first = env.start("crawlers", "sweeper", &[])?;
    expect_state(&env.wait_final("crawlers", "sweeper", &first)?, "Succeeded")?;
    if swept()? != ["gone", "keep"] {
        return Err(format!("the first crawl should make tables gone and keep: {:?}", swept()?).into());
    }
    env.block(async {
        let store = env.s3.store("sales-landing").map_err(|e| e.to_string())?;
        store
            .delete(&ObjectPath::from("sweep/gone/part-0.csv"))
            .await
            .map_err(|e| e.to_string())
    })?;
    let second = env.start("crawlers", "sweeper", &[])?;
    let crawled = env.wait_final("crawlers", "sweeper", &second)?;
    expect_state(&crawled, "Succeeded")?;
    if crawled["metrics"]["tablesDeprecated"] != 1 {
        return Err(format!("the crawl should count one table gone: {crawled:#}").into());
    }
    // Deleted before the crawl was recorded.
    if swept()? != ["keep"] {
        return Err(format!("the operator should have deleted table gone: {:?}", swept()?).into());
    }
    Ok(())
}

/// Kills the operator at several moments of a bookmarked run and restarts it: each run is
/// recorded once and its bookmark committed once.
fn operator_killed(env: &Env) -> Result<(), Failed> {
    for (round, delay_ms) in [0u64, 300, 1200].into_iter().enumerate() {
        let day = format!("2024-06-0{}", round + 1);
        env.land(
            "sales-landing",
            &format!("orders/dt={day}/part-0.json"),
            &orders_json(1000 * (round as u32 + 1), 5, &day),
        )?;
        let request = env.start("jobs", "clean-orders", &[])?;
        std::thread::sleep(Duration::from_millis(delay_ms));
        if let Some(operator) = env.operator.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            operator.signal(rustix::process::Signal::KILL);
        }
        std::thread::sleep(Duration::from_millis(500));
        env.restart_operator()?;
        let run = env.wait_final("jobs", "clean-orders", &request)?;
        expect_state(&run, "Succeeded")?;
        if rows(&run, "sources", "orders") != 5 {
            return Err(format!("round {round}: the run should read the 5 new orders: {run:#}").into());
        }
        let runs = env.runs("jobs", "clean-orders")?;
        let records = runs.iter().filter(|r| r["requestId"] == request.as_str()).count();
        if records != 1 {
            return Err(format!("round {round}: {records} records for one request: {runs:#?}").into());
        }
        let job = env.block(env.jobs().get("clean-orders")).map_err(|e| e.to_string())?;
        let status = job.status.unwrap_or_default();
        let id = run["id"].as_str().unwrap_or_default();
        let committed = status.bookmark.as_ref().and_then(|b| b.run_id.as_deref());
        let history = status.bookmark_history.iter().filter(|e| e.run_id == id).count();
        if committed != Some(id) || history != 1 {
            return Err(format!(
                "round {round}: the bookmark should be committed once by {id}: current {committed:?}, history entries {history}"
            )
            .into());
        }
    }
    Ok(())
}

const SLOW_JOB: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Job
metadata: {name: NAME}
spec:
  sources:
    - name: seed
      storage: {location: "s3://sales-reports/seed/", format: Csv, connection: lake}
  sql: "CREATE VIEW spin AS SELECT count(*) AS n FROM range(1, 2000000000000)"
  sinks:
    - name: spin
      storage: {location: "s3://sales-reports/NAME/", format: Csv, connection: lake}
  maxRetries: RETRIES
  timeoutMinutes: TIMEOUT
"#;

fn slow_job(name: &str, retries: u32, timeout_minutes: u32) -> String {
    SLOW_JOB
        .replace("NAME", name)
        .replace("RETRIES", &retries.to_string())
        .replace("TIMEOUT", &timeout_minutes.to_string())
}

fn runner_killed(env: &Env) -> Result<(), Failed> {
    env.land("sales-reports", "seed/seed.csv", "x\n1\n")?;
    env.apply(&slow_job("spin", 1, 30))?;
    let request = env.start("jobs", "spin", &[])?;
    let running = env.wait_run("jobs", "spin", &request, SETTLE, |run| state(run) == "Running")?;
    let run_id = running["id"].as_str().unwrap_or_default().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let pids = loop {
        let pids = runner_pids(&run_id);
        if !pids.is_empty() || Instant::now() > deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if pids.is_empty() {
        return Err(format!("no runner process for {run_id}").into());
    }
    for pid in pids {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    // Attempt 0 is Failed with how it ended; attempt 1 starts after the backoff.
    let retry = env.wait_run("jobs", "spin", &request, SETTLE, |run| {
        run["attempt"] == 1 && state(run) == "Running"
    })?;
    let runs = env.runs("jobs", "spin")?;
    let first = runs
        .iter()
        .find(|r| r["id"] == run_id.as_str() && r["attempt"] == 0)
        .ok_or("attempt 0 is not in the history")?;
    expect_state(first, "Failed")?;
    let message = first["message"].as_str().unwrap_or_default();
    if !message.contains("without reporting a result") {
        return Err(format!("attempt 0 should say the runner ended without a result: {first:#}").into());
    }
    // Stop attempt 1.
    env.annotate("jobs", "spin", &format!("stop.kglue.dev/{run_id}"), "")?;
    let stopped = env.wait_run("jobs", "spin", &request, SETTLE, |run| state(run) == "Stopped")?;
    if stopped["attempt"] != retry["attempt"] {
        return Err(format!("the stopped record should be attempt 1: {stopped:#}").into());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !runner_pids(&run_id).is_empty() {
        if Instant::now() > deadline {
            return Err("the stopped run's process is still alive".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn timeout(env: &Env) -> Result<(), Failed> {
    env.apply(&slow_job("spin-timeout", 2, 1))?;
    let request = env.start("jobs", "spin-timeout", &[])?;
    let run = env.wait_run("jobs", "spin-timeout", &request, Duration::from_secs(150), |run| {
        state(run) == "Timeout"
            || (run["state"]
                .as_str()
                .is_some_and(|s| s != "Running" && s != "Starting" && s != "Waiting"))
    })?;
    expect_state(&run, "Timeout")?;
    let runs = env.runs("jobs", "spin-timeout")?;
    if runs.iter().filter(|r| r["requestId"] == request.as_str()).count() != 1 {
        return Err(format!("a timeout is not retried: {runs:#?}").into());
    }
    Ok(())
}

const QUICK_JOB: &str = r#"
apiVersion: kglue.dev/v1alpha1
kind: Job
metadata: {name: quick}
spec:
  sources:
    - name: seed
      storage: {location: "s3://sales-reports/seed/", format: Csv, connection: lake}
  sql: "CREATE VIEW total AS SELECT count(*) AS n FROM range(1, 30000000)"
  sinks:
    - name: total
      storage: {location: "s3://sales-reports/quick/", format: Csv, connection: lake}
  maxConcurrentRuns: 2
  runHistoryLimit: 20
"#;

fn concurrency(env: &Env) -> Result<(), Failed> {
    env.apply(QUICK_JOB)?;
    wait_ready(env, "quick")?;
    // Count the pods that run at once, from a watch started before the requests.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NAMESPACE);
    let peak = Arc::new(Mutex::new((BTreeSet::<String>::new(), 0usize)));
    let watching = {
        let peak = peak.clone();
        let config = watcher::Config::default().labels("kglue.dev/owner-name=quick");
        env.runtime.spawn(async move {
            let mut events = watcher(pods, config).boxed();
            while let Some(Ok(event)) = events.next().await {
                let changed: Vec<Pod> = match event {
                    watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => vec![pod],
                    watcher::Event::Delete(mut pod) => {
                        pod.status = None;
                        vec![pod]
                    }
                    _ => vec![],
                };
                let mut guard = peak.lock().unwrap_or_else(|p| p.into_inner());
                for pod in changed {
                    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    if running {
                        guard.0.insert(pod.name_any());
                    } else {
                        guard.0.remove(&pod.name_any());
                    }
                    guard.1 = guard.1.max(guard.0.len());
                }
            }
        })
    };
    // Ten requests in one write, as simultaneous as it gets.
    let annotations: serde_json::Map<String, Value> = (0..10)
        .map(|i| (format!("run.kglue.dev/burst-{i}"), json!("")))
        .collect();
    env.block(env.jobs().patch(
        "quick",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": annotations}})),
    ))
    .map_err(|e| e.to_string())?;
    let mut states = BTreeMap::new();
    for i in 0..10 {
        let run = env.wait_run(
            "jobs",
            "quick",
            &format!("burst-{i}"),
            Duration::from_secs(180),
            |run| {
                run["state"]
                    .as_str()
                    .is_some_and(|s| ["Succeeded", "Failed", "Error", "Timeout", "Stopped"].contains(&s))
            },
        )?;
        states.insert(
            run["id"].as_str().unwrap_or_default().to_string(),
            state(&run).to_string(),
        );
    }
    watching.abort();
    let peak = peak.lock().unwrap_or_else(|p| p.into_inner()).1;
    if states.len() != 10 || states.values().any(|s| s != "Succeeded") {
        return Err(format!("all ten runs should succeed under distinct ids: {states:?}").into());
    }
    if peak > 2 {
        return Err(format!("{peak} runner pods ran at once; the limit is 2").into());
    }
    if peak == 0 {
        return Err("the watch saw no running pod at all".into());
    }
    eprintln!("FIGURES: ten requests, maxConcurrentRuns 2: peak {peak} pods running at once, all ten Succeeded");
    Ok(())
}

/// Runs `kglue ARGS…` as a user would, against the test cluster's kubeconfig.
/// The CLI against the operator: start and wait, list the runs, read the runner's log through
/// the Pod log API, rewind a bookmark.
fn cli(env: &Env) -> Result<(), Failed> {
    let (ok, out, err) = env.cli(&[
        "start",
        "job",
        "quick",
        "-n",
        NAMESPACE,
        "--request-id",
        "cli-wait",
        "--wait",
    ])?;
    if !ok {
        return Err(format!("kglue start --wait failed:\n{out}\n{err}").into());
    }
    let run = newest(&env.runs("jobs", "quick")?, "cli-wait")
        .cloned()
        .ok_or("the CLI's request is not recorded")?;
    expect_state(&run, "Succeeded")?;
    let run_id = run["id"].as_str().unwrap_or_default().to_string();
    if !format!("{out}{err}").contains(&run_id) {
        return Err(format!("kglue start should print the run id {run_id}:\n{out}\n{err}").into());
    }
    let (ok, listed, err) = env.cli(&["runs", "job", "quick", "-n", NAMESPACE])?;
    if !ok || !listed.contains(&run_id) || !listed.contains("Succeeded") {
        return Err(format!("kglue runs should list {run_id} Succeeded:\n{listed}\n{err}").into());
    }
    let (ok, log, err) = env.cli(&["logs", "job", "quick", "-n", NAMESPACE, "--run", &run_id])?;
    if !ok || !log.contains(&run_id) {
        return Err(format!("kglue logs should print the runner's log of {run_id}:\n{log}\n{err}").into());
    }

    // Rewind clean-orders to where its last run started: that run's orders are read again.
    let before = env
        .block(env.jobs().get("clean-orders"))
        .map_err(|e| e.to_string())?
        .status
        .unwrap_or_default();
    let last = before
        .bookmark
        .as_ref()
        .and_then(|b| b.run_id.clone())
        .ok_or("clean-orders has no bookmark")?;
    let (ok, out, err) = env.cli(&[
        "bookmark",
        "rewind",
        "job",
        "clean-orders",
        "-n",
        NAMESPACE,
        "--to-run",
        &last,
    ])?;
    if !ok {
        return Err(format!("kglue bookmark rewind failed:\n{out}\n{err}").into());
    }
    let deadline = Instant::now() + SETTLE;
    loop {
        let status = env
            .block(env.jobs().get("clean-orders"))
            .map_err(|e| e.to_string())?
            .status
            .unwrap_or_default();
        let current = status.bookmark.as_ref().and_then(|b| b.run_id.clone());
        if current.as_deref() != Some(last.as_str()) {
            let expected = before
                .bookmark_history
                .iter()
                .find(|e| e.run_id == last)
                .and_then(|e| e.bookmark.clone());
            if status.bookmark != expected {
                return Err(format!(
                    "the rewound bookmark should be the one {last} started from: {:?}",
                    status.bookmark
                )
                .into());
            }
            break;
        }
        if Instant::now() > deadline {
            return Err("the rewind was not applied".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let again = env.start("jobs", "clean-orders", &[])?;
    let rerun = env.wait_final("jobs", "clean-orders", &again)?;
    expect_state(&rerun, "Succeeded")?;
    let last_rows = env
        .runs("jobs", "clean-orders")?
        .iter()
        .find(|r| r["id"] == last.as_str() && r["state"] == "Succeeded")
        .map(|r| rows(r, "sources", "orders"))
        .ok_or(format!("run {last} is not in the history"))?;
    if rows(&rerun, "sources", "orders") != last_rows {
        return Err(format!(
            "after the rewind the next run should read what {last} read ({last_rows} rows): {rerun:#}"
        )
        .into());
    }
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn memory_with_many_jobs(env: &Env) -> Result<(), Failed> {
    let namespace = "scale";
    env.block(kglue_e2e::create_namespace(&env.client, namespace))
        .map_err(|e| e.to_string())?;
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), namespace);
    let started = Instant::now();
    env.block(async {
        let mut creates = futures::stream::iter((0..1000).map(|i| {
            let jobs = jobs.clone();
            async move {
                let job: Job = serde_json::from_value(json!({
                    "apiVersion": "kglue.dev/v1alpha1", "kind": "Job",
                    "metadata": {"name": format!("job-{i:04}")},
                    "spec": {
                        "sources": [{"name": "s", "storage": {"location": "s3://sales-landing/orders/", "format": "Csv"}}],
                        "sql": "CREATE VIEW out AS SELECT * FROM s",
                        "sinks": [{"name": "out", "storage": {"location": format!("s3://sales-reports/scale/{i}/"), "format": "Parquet"}}],
                    }
                }))
                .map_err(|e| e.to_string())?;
                jobs.create(&PostParams::default(), &job).await.map_err(|e| e.to_string())
            }
        }))
        .buffer_unordered(16);
        while let Some(result) = creates.next().await {
            result?;
        }
        Ok::<_, String>(())
    })?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let list = env
            .block(jobs.list(&ListParams::default()))
            .map_err(|e| e.to_string())?;
        let ready = list
            .items
            .iter()
            .filter(|j| j.status.as_ref().is_some_and(|s| s.observed.is_ready()))
            .count();
        if ready == 1000 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {ready} of 1000 Jobs became Ready").into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let reconciled = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let pid = env
        .operator
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|o| o.child.id())
        .ok_or("no operator")?;
    let rss = rss_kib(pid).ok_or("cannot read the operator's VmRSS")?;
    eprintln!(
        "FIGURES: 1000 Job CRs created and Ready in {:.1} s; operator resident memory {:.1} MiB",
        reconciled.as_secs_f64(),
        rss as f64 / 1024.0
    );
    Ok(())
}
