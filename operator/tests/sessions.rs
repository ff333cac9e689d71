//! Sessions on a real local control plane: the operator makes a Session's pod and Service, the
//! node agent runs the pod (`kglue serve`, the built binary) and real clients — psql, psycopg and
//! pgJDBC — connect to it. The pod reads the namespace's Tables live from the API server, reaches
//! the S3 server with the Connection's mounted Secret, writes its activity into the Session's
//! status, and the idle timeout ends it: the pod and Service are removed and status says why.

mod common;
mod gitops;

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, Operator, tail};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kglue_crds::{Session, Table};
use kglue_e2e::clients::Login;
use kglue_e2e::harness::{self, trial};
use kube::api::{Api, PostParams};
use libtest_mimic::{Arguments, Failed};
use serde_json::{Value, json};

const NAMESPACE: &str = "analytics";
const PASSWORD: &str = "correct horse battery";

struct Env {
    cluster: Cluster,
    _operator: Operator,
}

impl std::ops::Deref for Env {
    type Target = Cluster;

    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // The idle-timeout case mostly waits; it runs beside the clients' case.
    args.test_threads = Some(2);
    let env = match harness::set_up(setup) {
        Ok(env) => env,
        Err(code) => return code,
    };
    let trials = vec![
        trial(
            &env,
            "the_idle_timeout_ends_a_session_removes_its_pod_and_says_why",
            idle_timeout,
        ),
        trial(
            &env,
            "psql_psycopg_and_jdbc_query_a_sessions_pod_which_sees_new_tables_and_refuses_writes",
            clients,
        ),
    ];
    let conclusion = libtest_mimic::run(&args, trials);
    if conclusion.has_failed()
        && let Ok(env) = Arc::try_unwrap(env)
    {
        eprintln!(
            "--- {} ---\n{}",
            env._operator.log.display(),
            tail(&env._operator.log_text(), 80)
        );
    }
    conclusion.exit_code()
}

fn setup() -> Result<Env, Box<dyn std::error::Error>> {
    let cluster = Cluster::start(NAMESPACE, &["lake"])?;
    let operator = Operator::start(&cluster.control_plane, "sessions", &["--leader-elect", "false"])?;
    let env = Env {
        cluster,
        _operator: operator,
    };
    env.block(async {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "session-password"},
            "stringData": {"password": PASSWORD},
        }))?;
        Api::<Secret>::namespaced(env.client.clone(), NAMESPACE)
            .create(&PostParams::default(), &secret)
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Connection", "metadata": {"name": "lake"},
        "spec": {"s3": {"endpoint": env.s3.endpoint(), "forcePathStyle": true, "credentialsSecretRef": {"name": "lake-credentials"}}}
    }))
    .map_err(|e| format!("{e:?}"))?;
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Database", "metadata": {"name": "sales"},
        "spec": {"databaseName": "sales"}
    }))
    .map_err(|e| format!("{e:?}"))?;
    env.land(
        "lake",
        "orders/day=2024-01-01/part-0.csv",
        "id,customer_id,amount\n1,10,5.50\n2,11,7.25\n",
    )
    .map_err(|e| format!("{e:?}"))?;
    env.land(
        "lake",
        "orders/day=2024-01-02/part-0.csv",
        "id,customer_id,amount\n3,10,1.00\n",
    )
    .map_err(|e| format!("{e:?}"))?;
    env.land("lake", "customers/part-0.csv", "customer_id,name\n10,Ada\n11,Grace\n")
        .map_err(|e| format!("{e:?}"))?;
    apply_table(
        &env,
        "orders",
        &[("id", "bigint"), ("customer_id", "bigint"), ("amount", "decimal(10,2)")],
        &[("day", "date")],
    )
    .map_err(|e| format!("{e:?}"))?;
    // A session's pod mounts the Secrets of the Connections its Tables name as the operator sees
    // them when it creates the pod (docs/sessions.md): the sessions start once the operator has
    // seen the Table (it has written the Table's conditions), not while its watch still lags.
    env.wait_for(
        "the operator to see Table sales.orders",
        Duration::from_secs(60),
        || {
            let table = env
                .block(Api::<Table>::namespaced(env.client.clone(), NAMESPACE).get("sales.orders"))
                .map_err(|e| format!("get table sales.orders: {e}"))?;
            let seen = table
                .status
                .and_then(|s| s.observed.observed_generation)
                .is_some_and(|generation| Some(generation) == table.metadata.generation);
            Ok(seen.then_some(()))
        },
    )
    .map_err(|e| format!("{e:?}"))?;
    Ok(env)
}

fn apply_table(env: &Env, table: &str, columns: &[(&str, &str)], keys: &[(&str, &str)]) -> Result<(), Failed> {
    let folder = if table == "people" { "customers" } else { table };
    let columns: Vec<Value> = columns.iter().map(|(n, t)| json!({"name": n, "type": t})).collect();
    let keys: Vec<Value> = keys.iter().map(|(n, t)| json!({"name": n, "type": t})).collect();
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Table", "metadata": {"name": format!("sales.{table}")},
        "spec": {"databaseName": "sales", "tableName": table,
                 "storage": {"location": format!("s3://lake/{folder}/"), "format": "Csv", "connection": "lake"},
                 "columns": columns, "partitionKeys": keys}
    }))
}

fn free_port() -> Result<u16, Failed> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port())
}

/// Applies Session `name` listening on a free port; returns the port.
fn apply_session(env: &Env, name: &str, idle_minutes: i32) -> Result<u16, Failed> {
    let port = free_port()?;
    env.apply_object(&json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Session", "metadata": {"name": name},
        "spec": {"port": port, "idleTimeoutMinutes": idle_minutes,
                 "auth": {"username": "analyst", "passwordSecretRef": {"name": "session-password"}}}
    }))?;
    Ok(port)
}

fn session_status(env: &Env, name: &str) -> Result<Value, Failed> {
    let session = env
        .block(Api::<Session>::namespaced(env.client.clone(), NAMESPACE).get(name))
        .map_err(|e| format!("get session {name}: {e}"))?;
    Ok(serde_json::to_value(session.status.unwrap_or_default()).map_err(|e| e.to_string())?)
}

/// The Session as GitOps tools judge it (Argo CD's Lua check shipped in examples/gitops, and
/// kstatus, Flux's).
fn expect_health(env: &Env, name: &str, moment: &str, argocd: &str, kstatus: &str, says: &str) -> Result<(), Failed> {
    let session = env
        .block(Api::<Session>::namespaced(env.client.clone(), NAMESPACE).get(name))
        .map_err(|e| format!("get session {name}: {e}"))?;
    let object = serde_json::to_value(&session).map_err(|e| e.to_string())?;
    gitops::Checker::new()?.expect(moment, &object, argocd, kstatus, says)?;
    Ok(())
}

fn wait_state(env: &Env, name: &str, state: &str, limit: Duration) -> Result<Value, Failed> {
    let mut last = Value::Null;
    env.wait_for(&format!("session {name} {state}"), limit, || {
        let status = session_status(env, name)?;
        last = status.clone();
        Ok((status["state"] == state).then_some(status))
    })
    .map_err(|e| format!("{e:?}; last status: {last:#}").into())
}

fn expect(answer: &kglue_e2e::clients::Answer, what: &str, wanted: &str) -> Result<(), Failed> {
    if answer.ok && answer.out == wanted {
        Ok(())
    } else {
        Err(format!("{what}: expected {wanted:?}, got {answer:?}").into())
    }
}

fn refused(answer: &kglue_e2e::clients::Answer, what: &str, message: &str) -> Result<(), Failed> {
    if !answer.ok && answer.err.contains(message) {
        Ok(())
    } else {
        Err(format!("{what}: expected an error with {message:?}, got {answer:?}").into())
    }
}

/// The clients' case: Ready with its endpoint, answers through psql, psycopg and pgJDBC, a wrong
/// password, a Table applied after the pod started, the sandbox, and the activity in status.
fn clients(env: &Env) -> Result<(), Failed> {
    let port = apply_session(env, "adhoc", 60)?;
    let ready = wait_state(env, "adhoc", "Ready", Duration::from_secs(60))?;
    let endpoint = format!("adhoc-session.{NAMESPACE}.svc:{port}");
    if ready["endpoint"] != endpoint.as_str() || ready["startedAt"].is_null() {
        return Err(format!("a Ready session names its endpoint {endpoint} and start: {ready:#}").into());
    }
    expect_health(
        env,
        "adhoc",
        "ready",
        "Healthy",
        "Current",
        &format!("serving at {endpoint}"),
    )?;
    let services: Api<Service> = Api::namespaced(env.client.clone(), NAMESPACE);
    let service = env
        .block(services.get("adhoc-session"))
        .map_err(|e| format!("the Service: {e}"))?;
    let ports: Vec<i32> = service
        .spec
        .and_then(|s| s.ports)
        .into_iter()
        .flatten()
        .map(|p| p.port)
        .collect();
    if ports != [i32::from(port)] {
        return Err(format!("the Service should expose port {port}: {ports:?}").into());
    }
    // On the local node agent the pod's IP is 127.0.0.1: clients connect to it directly.
    let login = Login {
        port,
        user: "analyst".into(),
        password: PASSWORD.into(),
    };
    let join = "SELECT c.name, sum(o.amount) AS total FROM sales.orders o JOIN sales.customers c ON o.customer_id = c.customer_id GROUP BY c.name ORDER BY c.name";
    // customers is not a Table yet: the error names it.
    refused(&login.psql(join), "a join with a table not in the catalog", "customers")?;
    apply_table(env, "customers", &[("customer_id", "bigint"), ("name", "string")], &[])?;
    expect(
        &login.psql(join),
        "psql, after customers was applied",
        "Ada,6.50\nGrace,7.25\n",
    )?;
    expect(
        &login.psql("SELECT count(*) FROM sales.orders WHERE day = DATE '2024-01-02'"),
        "psql, one partition",
        "1\n",
    )?;
    let wrong = Login {
        password: "wrong".into(),
        ..login.clone()
    };
    refused(
        &wrong.psql("SELECT 1"),
        "psql with a wrong password",
        "assword authentication failed",
    )?;
    refused(
        &login.psql("INSERT INTO sales.orders VALUES (9, 9, 9.00)"),
        "an INSERT",
        "INSERT is not allowed in a SQL session",
    )?;
    refused(
        &login.psql("CREATE EXTERNAL TABLE pw (line TEXT) STORED AS TEXTFILE LOCATION '/etc/passwd'"),
        "a table over a local path",
        "CREATE EXTERNAL TABLE is not allowed in a SQL session",
    )?;
    let path = login.psql("SELECT * FROM '/etc/passwd'");
    if path.ok || path.out.contains("root:") || path.err.contains("root:") {
        return Err(format!("a local path in FROM must read nothing: {path:?}").into());
    }
    let psycopg = login.psycopg(
        r#"rows = conn.execute("SELECT id, amount, day FROM sales.orders WHERE customer_id = %s ORDER BY id", (10,)).fetchall()
assert rows == [(1, decimal.Decimal("5.50"), datetime.date(2024, 1, 1)), (3, decimal.Decimal("1.00"), datetime.date(2024, 1, 2))], rows
print("ok")"#,
    );
    expect(&psycopg, "psycopg", "ok\n")?;
    expect(
        &login.jdbc("SELECT name FROM sales.customers WHERE customer_id = ?", Some(11)),
        "pgJDBC",
        "name:text\nGrace\n",
    )?;
    // `kglue sql --session`: the same statements sent from the CLI, the password read from the
    // Session's Secret with the caller's rights.
    let (ok, out, err) = env.cli(&[
        "sql",
        "-n",
        NAMESPACE,
        "--session",
        "adhoc",
        "--format",
        "csv",
        "-c",
        join,
    ])?;
    if !ok || out != "name,total\nAda,6.50\nGrace,7.25\n" {
        return Err(format!("kglue sql --session: {out}{err}").into());
    }
    let (ok, _, err) = env.cli(&[
        "sql",
        "-n",
        NAMESPACE,
        "--session",
        "adhoc",
        "-c",
        "DROP TABLE sales.orders",
    ])?;
    if ok || !err.contains("DROP TABLE is not allowed in a SQL session") || !err.contains("SQLSTATE 42501") {
        return Err(format!("kglue sql --session should relay the refusal: {err}").into());
    }
    // The pod counts what it served into status.activity (written at most every 5 s): five
    // statements failed (the join before customers existed, the INSERT, the local table, the
    // path in FROM, the DROP through kglue sql); the wrong password was no statement.
    let activity = env.wait_for("the session's activity", Duration::from_secs(30), || {
        let activity = session_status(env, "adhoc")?["activity"].clone();
        let done = activity["queries"].as_i64().unwrap_or(0) >= 8
            && activity["errors"].as_i64() == Some(5)
            && activity["rowsReturned"].as_i64().unwrap_or(0) >= 6
            && activity["bytesScanned"].as_i64().unwrap_or(0) > 0
            && !activity["lastActivityTime"].is_null();
        Ok(done.then_some(activity))
    })?;
    eprintln!("session activity: {activity}");
    // The operator mirrors it on its metrics endpoint, per session.
    let series = format!("kglue_operator_session_queries{{namespace=\"{NAMESPACE}\",session=\"adhoc\"}}");
    env.wait_for(
        "the session's queries in the operator's metrics",
        Duration::from_secs(30),
        || {
            Ok(env
                ._operator
                .sample(&series)
                .filter(|&queries| {
                    Some(queries as i64)
                        == session_status(env, "adhoc")
                            .ok()
                            .and_then(|s| s["activity"]["queries"].as_i64())
                })
                .map(|_| ()))
        },
    )?;
    Ok(())
}

/// The idle timeout: a session of one minute with no query ends; its pod and Service are removed
/// and status says why.
fn idle_timeout(env: &Env) -> Result<(), Failed> {
    let port = apply_session(env, "brief", 1)?;
    wait_state(env, "brief", "Ready", Duration::from_secs(60))?;
    let login = Login {
        port,
        user: "analyst".into(),
        password: PASSWORD.into(),
    };
    expect(
        &login.psql("SELECT 41 + 1"),
        "a query to a session about to idle",
        "42\n",
    )?;
    let ended = wait_state(env, "brief", "IdleTimeout", Duration::from_secs(150))?;
    let message = ended["message"].as_str().unwrap_or_default();
    if !message.contains("idleTimeoutMinutes") || ended["endedAt"].is_null() {
        return Err(format!("an idle session says why and when it ended: {ended:#}").into());
    }
    let ready = ended["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap_or_default();
    if ready["status"] != "False" || ready["reason"] != "IdleTimeout" {
        return Err(format!("an ended session is not Ready, reason IdleTimeout: {ready:#}").into());
    }
    expect_health(env, "brief", "idle", "Suspended", "InProgress", "IdleTimeout")?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NAMESPACE);
    let services: Api<Service> = Api::namespaced(env.client.clone(), NAMESPACE);
    env.wait_for(
        "the ended session's pod and Service gone",
        Duration::from_secs(30),
        || {
            let pod = env.block(pods.get_opt("brief-session")).map_err(|e| e.to_string())?;
            let service = env
                .block(services.get_opt("brief-session"))
                .map_err(|e| e.to_string())?;
            Ok((pod.is_none() && service.is_none()).then_some(()))
        },
    )?;
    let gone = login.psql("SELECT 1");
    if gone.ok {
        return Err("an ended session must not answer".into());
    }
    Ok(())
}
