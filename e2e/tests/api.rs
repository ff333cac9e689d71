//! The kglue API against a real kube-apiserver: the CRDs install and become Established, every
//! example is accepted, bad manifests are refused with a message that names the field, and
//! `kubectl get kglue` / `kubectl explain` work.
//!
//! A custom harness (libtest-mimic) so that one control plane serves every case and is stopped
//! when they are done, whatever their outcome.

use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kglue_e2e::harness::{self, install_crds, trial};
use kglue_e2e::{Applier, ControlPlane, Kubectl, Manifest, load_manifests, repo_root};
use kube::Client;
use kube::api::Api;
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// Where examples are dry-run applied, and where update cases create their base objects.
const EXAMPLES_NAMESPACE: &str = "kglue-examples";
const UPDATES_NAMESPACE: &str = "kglue-updates";
const FIELD_MANAGER: &str = "kglue-e2e";

struct Env {
    runtime: Runtime,
    kubectl: Kubectl,
    client: Client,
    applier: Applier,
    examples: Vec<Manifest>,
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    // Owned by main and dropped when main returns, so the control plane stops whatever the cases
    // did (a panicking case is caught by the harness; a killed process is caught by --owner-pid).
    let control_plane = match harness::start_control_plane() {
        Ok(control_plane) => control_plane,
        Err(code) => return code,
    };
    let env = match harness::set_up(|| setup(&control_plane)) {
        Ok(env) => env,
        Err(code) => return code,
    };

    let mut trials = vec![
        trial(
            &env,
            "crds_are_established_with_category_and_short_names",
            crds_are_established,
        ),
        trial(&env, "kubectl_get_kglue_lists_every_kind", kubectl_get_kglue),
        trial(&env, "kubectl_explain_documents_crawler_targets", kubectl_explain),
        trial(
            &env,
            "crawler_writes_tables_with_its_own_field_manager",
            crawler_writes_tables,
        ),
        trial(
            &env,
            "crawler_never_overwrites_a_table_declared_in_git",
            crawler_respects_git_tables,
        ),
    ];
    for manifest in &env.examples {
        let object = manifest.object.clone();
        let env = env.clone();
        trials.push(Trial::test(
            format!("example_is_accepted::{}", manifest.describe()),
            move || {
                // An environment's objects carry their namespace (the overlay sets it).
                let namespace = object["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or(EXAMPLES_NAMESPACE)
                    .to_string();
                env.runtime
                    .block_on(env.applier.apply(&object, &namespace, true))
                    .map(|_| ())
                    .map_err(|e| Failed::from(format!("refused: {e}")))
            },
        ));
    }
    for case in bad_manifests() {
        let env = env.clone();
        trials.push(Trial::test(
            format!("bad_manifest_is_refused::{}", case.mistake),
            move || env.runtime.block_on(check_refused(&env, &case)),
        ));
    }

    libtest_mimic::run(&args, trials).exit_code()
}

fn setup(control_plane: &ControlPlane) -> Result<Env, Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = runtime.block_on(control_plane.client())?;
    runtime.block_on(install_crds(&client))?;
    runtime.block_on(async {
        for name in [EXAMPLES_NAMESPACE, UPDATES_NAMESPACE, "sales-dev", "sales-prod"] {
            kglue_e2e::create_namespace(&client, name).await?;
        }
        Ok::<_, kglue_e2e::Error>(())
    })?;
    // Discovery runs after the CRDs are installed, so it sees the kglue kinds.
    let applier = runtime.block_on(Applier::new(client.clone(), FIELD_MANAGER))?;
    // The pipeline's kustomize base as files, and each environment as kustomize renders it (what
    // `kubectl apply -k`, Flux and Argo CD apply). The GitOps objects under examples/gitops are
    // checked in operator/tests/chart.rs.
    let kubectl = control_plane.kubectl()?;
    let mut examples = load_manifests(&repo_root().join("examples/sales-pipeline"))?;
    if examples.is_empty() {
        return Err("examples/sales-pipeline holds no manifests".into());
    }
    let databases = load_manifests(&repo_root().join("examples/database-pipeline"))?;
    if databases.len() < 8 {
        return Err(format!("examples/database-pipeline holds only {} manifests", databases.len()).into());
    }
    examples.extend(databases);
    examples.extend(load_manifests(&repo_root().join("examples/sessions"))?);
    let streaming = load_manifests(&repo_root().join("examples/streaming"))?;
    if streaming.len() < 6 {
        return Err(format!("examples/streaming holds only {} manifests", streaming.len()).into());
    }
    examples.extend(streaming);
    for environment in ["dev", "prod"] {
        let rendered = kubectl.kustomize(&repo_root().join("examples/environments").join(environment))?;
        if rendered.len() < 10 {
            return Err(format!(
                "examples/environments/{environment} renders only {} objects",
                rendered.len()
            )
            .into());
        }
        examples.extend(rendered);
    }
    Ok(Env {
        runtime,
        kubectl,
        client,
        applier,
        examples,
    })
}

fn crds_are_established(env: &Env) -> Result<(), Failed> {
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let expected = kglue_crds::crds();
    assert_eq!(
        expected.len(),
        10,
        "the API has nine kinds, plus RunResult (the runner's report)"
    );
    for crd in expected {
        let name = crd.metadata.name.unwrap_or_default();
        let internal = crd.spec.names.kind == "RunResult";
        let live = env.runtime.block_on(crds.get(&name))?;
        let established = live
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if !established {
            return Err(format!("{name} is not Established").into());
        }
        // RunResult stays out of `kubectl get kglue`: users do not manage it.
        let wanted = (!internal).then(|| vec!["kglue".to_string()]);
        if live.spec.names.categories != wanted {
            return Err(format!(
                "{name}: categories {:?}, expected {wanted:?}",
                live.spec.names.categories
            )
            .into());
        }
        if live.spec.names.short_names.as_ref().is_none_or(|s| s.is_empty()) {
            return Err(format!("{name} has no short name").into());
        }
    }
    Ok(())
}

/// Applies the examples for real into their own namespace and lists them through the category.
fn kubectl_get_kglue(env: &Env) -> Result<(), Failed> {
    let namespace = "kglue-get";
    env.runtime.block_on(async {
        kglue_e2e::create_namespace(&env.client, namespace).await?;
        for manifest in env
            .examples
            .iter()
            .filter(|m| m.object["metadata"]["namespace"].is_null())
        {
            env.applier.apply(&manifest.object, namespace, false).await?;
        }
        Ok::<_, kglue_e2e::Error>(())
    })?;
    // The API server publishes a new CRD's categories in discovery a moment after the CRD is
    // Established; until then kubectl does not know the category.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let output = loop {
        let output = env.kubectl.run(&["get", "kglue", "-n", namespace])?;
        let unknown = String::from_utf8_lossy(&output.stderr).contains("doesn't have a resource type");
        if output.status.success() || !unknown || std::time::Instant::now() >= deadline {
            break output;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("kubectl get kglue failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    for kind in [
        "database",
        "table",
        "classifier",
        "connection",
        "crawler",
        "job",
        "trigger",
        "workflow",
        "session",
    ] {
        let prefix = format!("{kind}.kglue.dev/");
        if !stdout.contains(&prefix) {
            return Err(format!("`kubectl get kglue` lists no {prefix}…:\n{stdout}").into());
        }
    }
    // The dev environment also brings an object store (a Secret, a Service, a StatefulSet), which
    // `kubectl get kglue` does not list.
    let every_example_listed = env
        .examples
        .iter()
        .filter(|m| {
            m.object["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("kglue.dev/"))
        })
        .all(|m| {
            let name = m.object["metadata"]["name"].as_str().unwrap_or_default();
            stdout.contains(&format!("/{name} ")) || stdout.contains(&format!("/{name}\n"))
        });
    if !every_example_listed {
        return Err(format!("`kubectl get kglue` misses some examples:\n{stdout}").into());
    }
    // Printer columns: the Table's database and partition columns are there.
    let output = env.kubectl.run(&["get", "kgtable", "-n", namespace])?;
    let tables = String::from_utf8_lossy(&output.stdout);
    for header in ["DATABASE", "TABLE", "FORMAT", "PARTITIONS", "READY", "UPDATED"] {
        if !tables.contains(header) {
            return Err(format!("`kubectl get kgtable` has no {header} column:\n{tables}").into());
        }
    }
    if !tables.contains("sales_curated") || !tables.contains("orders_daily") || !tables.contains("Parquet") {
        return Err(format!("`kubectl get kgtable` does not show the table's fields:\n{tables}").into());
    }
    Ok(())
}

fn kubectl_explain(env: &Env) -> Result<(), Failed> {
    // The API server publishes a new CRD's OpenAPI schema a few seconds after it is Established.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let output = loop {
        let output = env.kubectl.run(&["explain", "crawler.spec.targets"])?;
        if output.status.success() || std::time::Instant::now() > deadline {
            break output;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("kubectl explain failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    for expected in [
        "The object-store locations to crawl",
        "sampleSize",
        "exclusions",
        "1–249",
    ] {
        if !stdout.contains(expected) {
            return Err(format!("`kubectl explain crawler.spec.targets` lacks {expected:?}:\n{stdout}").into());
        }
    }
    Ok(())
}

/// A namespace with a `raw` Database, and a landing zone of local files for a crawler named
/// `landing` whose targets are its `orders/` and `customers/` folders.
fn crawl_setup(
    env: &Env,
    namespace: &str,
    with_database: bool,
) -> Result<(tempfile::TempDir, kglue_crds::Crawler), Failed> {
    let data = tempfile::tempdir()?;
    for (path, text) in [
        ("orders/dt=2024-01-01/a.csv", "id,amount\n1,2.5\n2,3\n"),
        (
            "customers/c.json",
            "{\"customer_id\": 1, \"name\": \"Ada\", \"vip\": true}\n",
        ),
    ] {
        let file = data.path().join(path);
        std::fs::create_dir_all(file.parent().ok_or("no parent")?)?;
        std::fs::write(file, text)?;
    }
    env.runtime.block_on(async {
        kglue_e2e::create_namespace(&env.client, namespace).await?;
        if with_database {
            let database = json!({"apiVersion": "kglue.dev/v1alpha1", "kind": "Database",
                "metadata": {"name": "raw"}, "spec": {"databaseName": "raw"}});
            env.applier.apply(&database, namespace, false).await?;
        }
        Ok::<_, kglue_e2e::Error>(())
    })?;
    let crawler: kglue_crds::Crawler = serde_json::from_value(json!({
        "apiVersion": "kglue.dev/v1alpha1", "kind": "Crawler", "metadata": {"name": "landing"},
        "spec": {"databaseName": "raw", "targets": [
            {"path": format!("file://{}/orders/", data.path().display())},
            {"path": format!("file://{}/customers/", data.path().display())},
        ]}
    }))?;
    Ok((data, crawler))
}

fn crawl(
    env: &Env,
    crawler: &kglue_crds::Crawler,
    namespace: &str,
) -> Result<kglue_runner::crawl::plan::CrawlPlan, Failed> {
    let secrets = kglue_runner::storage::Credentials::default();
    Ok(env.runtime.block_on(async {
        let name = crawler.metadata.name.as_deref().unwrap_or_default();
        let owner = kglue_crds::run_result::RunOwnerKind::Crawler;
        let mut catalog =
            kglue_runner::cluster::ClusterCatalog::read(env.client.clone(), namespace, owner, name).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
            kglue_runner::crawl::crawl(crawler, &mut catalog, secrets, false).await?,
        )
    })?)
}

fn crawler_writes_tables(env: &Env) -> Result<(), Failed> {
    let namespace = "kglue-crawl";
    let (_data, crawler) = crawl_setup(env, namespace, false)?;
    let plan = crawl(env, &crawler, namespace)?;
    let actions: Vec<String> = plan
        .tables
        .iter()
        .map(|t| format!("{}:{:?}", t.table.spec.table_name, t.action))
        .collect();
    assert_eq!(actions, ["customers:Create", "orders:Create"]);

    let tables: Api<kglue_crds::Table> = Api::namespaced(env.client.clone(), namespace);
    let orders = env.runtime.block_on(tables.get("raw.orders"))?;
    let columns: Vec<String> = orders.spec.columns.iter().map(ToString::to_string).collect();
    assert_eq!(columns, ["id int", "amount double"]);
    assert_eq!(
        orders
            .spec
            .partition_keys
            .iter()
            .map(|k| k.type_.as_str())
            .collect::<Vec<_>>(),
        ["date"]
    );
    assert_eq!(orders.partition_count(), Some(1));
    let managers: Vec<(String, Option<String>)> = orders
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| (m.manager.clone().unwrap_or_default(), m.subresource.clone()))
        .collect();
    assert!(
        managers.contains(&("kglue-crawler-landing".into(), None)),
        "{managers:?}"
    );
    assert!(
        managers.contains(&("kglue-crawler-landing".into(), Some("status".into()))),
        "{managers:?}"
    );

    // A second crawl of unchanged data changes nothing.
    let plan = crawl(env, &crawler, namespace)?;
    assert!(
        plan.tables
            .iter()
            .all(|t| t.action == kglue_runner::crawl::plan::Action::Unchanged)
    );
    Ok(())
}

fn crawler_respects_git_tables(env: &Env) -> Result<(), Failed> {
    use kglue_runner::crawl::plan::Action;
    let namespace = "kglue-crawl-git";
    let (_data, crawler) = crawl_setup(env, namespace, true)?;
    let orders = json!({"apiVersion": "kglue.dev/v1alpha1", "kind": "Table", "metadata": {"name": "raw.orders"},
        "spec": {"databaseName": "raw", "tableName": "orders", "description": "declared in Git",
                 "storage": {"location": "s3://lake/orders/", "format": "Csv"},
                 "columns": [{"name": "id", "type": "int"}, {"name": "amount", "type": "int"}],
                 "partitionKeys": [{"name": "dt", "type": "date"}]}});
    let customers = json!({"apiVersion": "kglue.dev/v1alpha1", "kind": "Table", "metadata": {"name": "raw.customers"},
        "spec": {"databaseName": "raw", "tableName": "customers", "schemaLocked": true,
                 "storage": {"location": "s3://lake/customers/", "format": "Json"},
                 "columns": [{"name": "customer_id", "type": "int"}]}});
    env.runtime.block_on(async {
        env.applier.apply(&orders, namespace, false).await?;
        env.applier.apply(&customers, namespace, false).await?;
        Ok::<_, kglue_e2e::Error>(())
    })?;
    let plan = crawl(env, &crawler, namespace)?;
    let action = |name: &str| {
        plan.tables
            .iter()
            .find(|t| t.table.spec.table_name == name)
            .map(|t| t.action.clone())
    };
    // amount int → double would take over a field the Git manager owns: refused, reported.
    assert!(
        matches!(action("orders"), Some(Action::Conflict(ref m)) if m.contains("another manager owns")),
        "{:?}",
        action("orders")
    );
    // A locked table is never updated; the new columns are only reported.
    assert!(
        matches!(action("customers"), Some(Action::Logged(ref c)) if c.contains(&"new column name string".to_string())),
        "{:?}",
        action("customers")
    );

    let tables: Api<kglue_crds::Table> = Api::namespaced(env.client.clone(), namespace);
    let orders = env.runtime.block_on(tables.get("raw.orders"))?;
    let columns: Vec<String> = orders.spec.columns.iter().map(ToString::to_string).collect();
    assert_eq!(columns, ["id int", "amount int"], "the Git table keeps its columns");
    assert_eq!(orders.spec.description.as_deref(), Some("declared in Git"));
    let customers = env.runtime.block_on(tables.get("raw.customers"))?;
    assert_eq!(customers.spec.columns.len(), 1, "the locked table keeps its columns");
    Ok(())
}

/// A change to a valid example that the API server must refuse.
struct BadCase {
    /// The mistake, as a test name.
    mistake: &'static str,
    /// `Kind/name` of the example the case starts from.
    base: &'static str,
    edits: Vec<Edit>,
    /// Create the base for real first and send the edit as an update (for immutability rules).
    update: bool,
    /// A fragment of the API server's message; it names the field.
    expect: &'static str,
}

enum Edit {
    Set(&'static str, Value),
    Remove(&'static str),
}

fn set(pointer: &'static str, value: Value) -> Edit {
    Edit::Set(pointer, value)
}

fn remove(pointer: &'static str) -> Edit {
    Edit::Remove(pointer)
}

fn create(mistake: &'static str, base: &'static str, edits: Vec<Edit>, expect: &'static str) -> BadCase {
    BadCase {
        mistake,
        base,
        edits,
        update: false,
        expect,
    }
}

fn update(mistake: &'static str, base: &'static str, edits: Vec<Edit>, expect: &'static str) -> BadCase {
    BadCase {
        mistake,
        base,
        edits,
        update: true,
        expect,
    }
}

#[rustfmt::skip]
fn bad_manifests() -> Vec<BadCase> {
    const DB: &str = "Database/sales-raw";
    const TABLE: &str = "Table/sales-curated.orders-daily";
    const CLASSIFIER: &str = "Classifier/partner-pipe-csv";
    const CONNECTION: &str = "Connection/lake";
    const CRAWLER: &str = "Crawler/landing";
    const JOB: &str = "Job/clean-orders";
    const REPORT: &str = "Job/publish-revenue";
    const EVENT: &str = "Trigger/orders-landed";
    const SCHEDULED: &str = "Trigger/nightly";
    const CONDITIONAL: &str = "Trigger/alert-on-clean-failure";
    const WORKFLOW: &str = "Workflow/sales-pipeline";
    vec![
        create("database_name_with_uppercase", DB, vec![set("/spec/databaseName", json!("Sales_Raw"))], "spec.databaseName: Invalid value: \"Sales_Raw\": spec.databaseName in body should match"),
        create("database_location_not_an_object_store_url", DB, vec![set("/spec/locationUri", json!("http://bucket/x"))], "spec.locationUri: Invalid value: \"http://bucket/x\": spec.locationUri in body should match"),
        update("database_name_changed", DB, vec![set("/spec/databaseName", json!("sales_raw_v2"))], "spec.databaseName: Invalid value: \"sales_raw_v2\": databaseName is immutable"),
        create("table_without_storage", TABLE, vec![remove("/spec/storage")], "spec.storage: Required value"),
        create("table_unknown_format", TABLE, vec![set("/spec/storage/format", json!("Excel"))], "spec.storage.format: Unsupported value: \"Excel\""),
        create("table_column_type_not_a_glue_type", TABLE, vec![set("/spec/columns/2/type", json!("text"))], "spec.columns[2].type: Invalid value: \"text\": spec.columns[2].type in body should match"),
        create("table_duplicate_column", TABLE, vec![set("/spec/columns/1/name", json!("order_id"))], ".spec.columns: duplicate entries for key [name=\"order_id\"]"),
        create("table_partition_key_is_also_a_column", TABLE, vec![set("/spec/partitionKeys/0/name", json!("country"))], "spec.partitionKeys: Invalid value: a partition key cannot also be a column"),
        create("table_csv_options_on_parquet", TABLE, vec![set("/spec/storage/csv", json!({"delimiter": ","}))], "spec.storage.csv: Invalid value: csv options are only allowed when format is Csv"),
        create("table_parquet_with_bzip2", TABLE, vec![set("/spec/storage/compression", json!("Bzip2"))], "spec.storage.compression: Invalid value: compression of Parquet must be one of"),
        create("table_grok_format_without_pattern", TABLE, vec![set("/spec/storage/format", json!("Grok")), remove("/spec/storage/compression")], "spec.storage.grok: Invalid value: grok options are required when format is Grok"),
        create("table_two_character_delimiter", TABLE, vec![set("/spec/storage/format", json!("Csv")), remove("/spec/storage/compression"), set("/spec/storage/csv", json!({"delimiter": "||"}))], "spec.storage.csv.delimiter: Too long: may not be more than 1"),
        create("table_jdbc_without_connection", TABLE, vec![set("/spec/storage/format", json!("Jdbc")), remove("/spec/storage/compression"), remove("/spec/storage/connection"), set("/spec/storage/location", json!("sales.public.orders"))], "spec.storage.connection: Invalid value: format Jdbc needs connection"),
        create("table_jdbc_location_is_a_url", TABLE, vec![set("/spec/storage/format", json!("Jdbc")), remove("/spec/storage/compression"), set("/spec/storage/connection", json!("db"))], "spec.storage.location: Invalid value: location must be an object-store URL (s3://bucket/prefix/ or file:///path/), with format Jdbc the table's qualified name"),
        create("table_kafka_without_value_format", TABLE, vec![set("/spec/storage/format", json!("Kafka")), remove("/spec/storage/compression"), set("/spec/storage/location", json!("clicks"))], "spec.storage.format: Invalid value: format Kafka needs connection (the kafka Connection of the cluster) and kafka.valueFormat"),
        create("table_kafka_location_is_a_url", TABLE, vec![set("/spec/storage/format", json!("Kafka")), remove("/spec/storage/compression"), set("/spec/storage/kafka", json!({"valueFormat": "Json"}))], "spec.storage.location: Invalid value: location must be an object-store URL (s3://bucket/prefix/ or file:///path/), with format Jdbc the table's qualified name (database.schema.table or database.table), with format Kafka the topic's name"),
        create("table_kafka_options_on_parquet", TABLE, vec![set("/spec/storage/kafka", json!({"valueFormat": "Json"}))], "spec.storage.kafka: Invalid value: kafka options are for format Kafka"),
        create("table_parquet_location_is_a_table_name", TABLE, vec![set("/spec/storage/location", json!("sales.public.orders"))], "spec.storage.location: Invalid value: location must be an object-store URL"),
        update("table_name_changed", TABLE, vec![set("/spec/tableName", json!("orders_by_day"))], "spec.tableName: Invalid value: \"orders_by_day\": tableName is immutable"),
        create("classifier_with_two_kinds", CLASSIFIER, vec![set("/spec/json", json!({"jsonPath": "$[*]"}))], "spec: Invalid value: exactly one of csv, json or grok must be set"),
        create("classifier_column_names_with_header_present", CLASSIFIER, vec![set("/spec/csv/columnNames", json!(["a", "b"]))], "spec.csv.columnNames: Invalid value: columnNames replace a header"),
        create("classifier_unknown_header_policy", CLASSIFIER, vec![set("/spec/csv/header", json!("Maybe"))], "spec.csv.header: Unsupported value: \"Maybe\""),
        create("connection_without_a_type", CONNECTION, vec![remove("/spec/s3")], "spec: Invalid value: exactly one of s3, jdbc or kafka must be set"),
        create("connection_with_s3_and_jdbc", CONNECTION, vec![set("/spec/jdbc", json!({"url": "jdbc:postgresql://db/sales", "credentialsSecretRef": {"name": "db"}}))], "spec: Invalid value: exactly one of s3, jdbc or kafka must be set"),
        create("jdbc_connection_with_write_prefixes", CONNECTION, vec![remove("/spec/s3"), set("/spec/jdbc", json!({"url": "jdbc:postgresql://db/sales", "credentialsSecretRef": {"name": "db"}})), set("/spec/allowedWritePrefixes", json!(["s3://lake/"]))], "spec.allowedWritePrefixes: Invalid value: allowedWritePrefixes scope object-store locations"),
        create("jdbc_connection_verifying_without_a_ca", CONNECTION, vec![remove("/spec/s3"), set("/spec/jdbc", json!({"url": "jdbc:mysql://db/shop", "credentialsSecretRef": {"name": "db"}, "tls": {"mode": "VerifyFull"}}))], "spec.jdbc.tls: Invalid value: tls.mode VerifyFull needs tls.caSecretRef"),
        create("jdbc_connection_with_url_parameters", CONNECTION, vec![remove("/spec/s3"), set("/spec/jdbc", json!({"url": "jdbc:postgresql://db/sales?ssl=true", "credentialsSecretRef": {"name": "db"}}))], "spec.jdbc.url: Invalid value"),
        create("connection_with_s3_and_kafka", CONNECTION, vec![set("/spec/kafka", json!({"bootstrapServers": ["kafka:9092"]}))], "spec: Invalid value: exactly one of s3, jdbc or kafka must be set"),
        create("kafka_connection_broker_without_port", CONNECTION, vec![remove("/spec/s3"), set("/spec/kafka", json!({"bootstrapServers": ["kafka"]}))], "spec.kafka.bootstrapServers[0]: Invalid value: \"kafka\": spec.kafka.bootstrapServers[0] in body should match"),
        create("kafka_connection_unknown_sasl_mechanism", CONNECTION, vec![remove("/spec/s3"), set("/spec/kafka", json!({"bootstrapServers": ["kafka:9092"], "sasl": {"mechanism": "Gssapi", "credentialsSecretRef": {"name": "kafka"}}}))], "spec.kafka.sasl.mechanism: Unsupported value: \"Gssapi\""),
        create("connection_endpoint_without_scheme", CONNECTION, vec![set("/spec/s3/endpoint", json!("minio:9000"))], "spec.s3.endpoint: Invalid value: \"minio:9000\": spec.s3.endpoint in body should match"),
        create("crawler_without_targets", CRAWLER, vec![set("/spec/targets", json!([]))], "spec.targets: Invalid value: a crawler needs at least one of targets (object stores) or jdbcTargets (databases)"),
        create("crawler_sample_size_over_249", CRAWLER, vec![set("/spec/targets/0/sampleSize", json!(500))], "spec.targets[0].sampleSize: Invalid value: 500: spec.targets[0].sampleSize in body should be less than or equal to 249"),
        create("crawler_new_folders_only_with_updates", CRAWLER, vec![set("/spec/recrawlPolicy", json!("CrawlNewFoldersOnly"))], "spec.recrawlPolicy: Invalid value: recrawlPolicy CrawlNewFoldersOnly needs schemaChangePolicy updateBehavior Log and deleteBehavior Log"),
        create("crawler_new_folders_only_without_state", CRAWLER, vec![set("/spec/recrawlPolicy", json!("CrawlNewFoldersOnly")), set("/spec/schemaChangePolicy", json!({"updateBehavior": "Log", "deleteBehavior": "Log"}))], "spec.state: Invalid value: recrawlPolicy CrawlNewFoldersOnly needs state.location"),
        create("crawler_unknown_delete_behavior", CRAWLER, vec![set("/spec/schemaChangePolicy/deleteBehavior", json!("Purge"))], "spec.schemaChangePolicy.deleteBehavior: Unsupported value: \"Purge\""),
        create("crawler_path_template_without_table", CRAWLER, vec![set("/spec/grouping", json!({"pathTemplates": ["{dt}/*"]}))], "spec.grouping.pathTemplates: Invalid value: every path template needs a {table} segment"),
        create("crawler_history_limit_zero", CRAWLER, vec![set("/spec/runHistoryLimit", json!(0))], "spec.runHistoryLimit: Invalid value: 0: spec.runHistoryLimit in body should be greater than or equal to 1"),
        create("crawler_target_not_a_url", CRAWLER, vec![set("/spec/targets/1/path", json!("sales-landing/customers"))], "spec.targets[1].path: Invalid value: \"sales-landing/customers\": spec.targets[1].path in body should match"),
        create("job_source_with_table_and_storage", REPORT, vec![set("/spec/sources/0/storage", json!({"location": "s3://ref-data/fx/", "format": "Parquet"}))], "spec.sources[0]: Invalid value: a source needs exactly one of table, storage or jdbc.query"),
        create("job_source_with_neither_table_nor_storage", REPORT, vec![remove("/spec/sources/0/table")], "spec.sources[0]: Invalid value: a source needs exactly one of table, storage or jdbc.query"),
        create("job_source_query_without_connection", REPORT, vec![remove("/spec/sources/0/table"), set("/spec/sources/0/jdbc", json!({"query": "select 1"}))], "spec.sources[0].jdbc: Invalid value: jdbc.query needs jdbc.connection"),
        create("job_source_partitions_without_column", REPORT, vec![set("/spec/sources/0/jdbc", json!({"numPartitions": 4}))], "spec.sources[0].jdbc.numPartitions: Invalid value: numPartitions above 1 needs partitionColumn"),
        create("job_source_query_with_bookmark_keys", REPORT, vec![remove("/spec/sources/0/table"), set("/spec/sources/0/jdbc", json!({"query": "select 1", "connection": "db", "bookmarkKeys": ["id"]}))], "spec.sources[0].jdbc.bookmarkKeys: Invalid value: bookmarkKeys need a table"),
        create("job_source_name_not_an_identifier", JOB, vec![set("/spec/sources/0/name", json!("raw-orders"))], "spec.sources[0].name: Invalid value: \"raw-orders\": spec.sources[0].name in body should match"),
        create("job_sink_writes_avro", REPORT, vec![set("/spec/sinks/0/storage/format", json!("Avro")), remove("/spec/sinks/0/storage/compression"), remove("/spec/sinks/0/storage/csv")], "spec.sinks[0].storage.format: Invalid value: a sink writes Parquet, Csv or Json files, or a database table (Jdbc)"),
        create("job_overwrite_partitions_without_partition_by", JOB, vec![remove("/spec/sinks/0/partitionBy")], "spec.sinks[0].writeMode: Invalid value: writeMode OverwritePartitions needs partitionBy"),
        create("job_unknown_write_mode", JOB, vec![set("/spec/sinks/0/writeMode", json!("Merge"))], "spec.sinks[0].writeMode: Unsupported value: \"Merge\""),
        create("job_upsert_into_files", REPORT, vec![set("/spec/sinks/0/writeMode", json!("Upsert"))], "spec.sinks[0].writeMode: Invalid value: writeMode Upsert and jdbc options are for database tables"),
        create("job_database_sink_with_partitions", JOB, vec![set("/spec/sinks/0/storage", json!({"location": "sales.public.daily", "format": "Jdbc", "connection": "db"}))], "spec.sinks[0].writeMode: Invalid value: a database table has no partition folders"),
        create("job_streaming_unknown_starting_offsets", JOB, vec![set("/spec/streaming", json!({"startingOffsets": "beginning"}))], "spec.streaming.startingOffsets: Unsupported value: \"beginning\""),
        create("job_streaming_window_of_zero", JOB, vec![set("/spec/streaming", json!({"windowSeconds": 0}))], "spec.streaming.windowSeconds: Invalid value: 0: spec.streaming.windowSeconds in body should be greater than or equal to 1"),
        create("job_max_retries_over_10", JOB, vec![set("/spec/maxRetries", json!(11))], "spec.maxRetries: Invalid value: 11: spec.maxRetries in body should be less than or equal to 10"),
        create("job_timeout_zero", JOB, vec![set("/spec/timeoutMinutes", json!(0))], "spec.timeoutMinutes: Invalid value: 0: spec.timeoutMinutes in body should be greater than or equal to 1"),
        create("job_max_concurrent_runs_zero", JOB, vec![set("/spec/maxConcurrentRuns", json!(0))], "spec.maxConcurrentRuns: Invalid value: 0: spec.maxConcurrentRuns in body should be greater than or equal to 1"),
        create("job_unknown_bookmark_option", JOB, vec![set("/spec/bookmark/option", json!("Enabled"))], "spec.bookmark.option: Unsupported value: \"Enabled\""),
        create("job_argument_name_not_an_identifier", JOB, vec![set("/spec/defaultArguments", json!({"run-date": "2024-01-01"}))], "spec.defaultArguments: Invalid value: argument names must be SQL identifiers"),
        create("job_empty_sql", JOB, vec![set("/spec/sql", json!(""))], "spec.sql: Invalid value: \"\": spec.sql in body should be at least 1 chars long"),
        create("job_partition_by_repeats_a_column", JOB, vec![set("/spec/sinks/0/partitionBy", json!(["order_date", "order_date"]))], ".spec.sinks[name=\"orders_daily\"].partitionBy: duplicate entries for key [=\"order_date\"]"),
        create("job_without_sinks", JOB, vec![remove("/spec/sinks")], "spec.sinks: Required value"),
        create("trigger_scheduled_without_schedule", SCHEDULED, vec![remove("/spec/schedule")], "spec.schedule: Invalid value: schedule is required for type Scheduled"),
        create("trigger_schedule_on_event_trigger", EVENT, vec![set("/spec/schedule", json!({"cron": "0 * * * *"}))], "spec.schedule: Invalid value: schedule is required for type Scheduled and not allowed for other types"),
        create("trigger_predicate_on_scheduled_trigger", SCHEDULED, vec![set("/spec/predicate", json!({"conditions": [{"job": "a", "state": "Succeeded"}]}))], "spec.predicate: Invalid value: predicate is required for type Conditional and not allowed for other types"),
        create("trigger_unknown_type", SCHEDULED, vec![set("/spec/type", json!("Cron"))], "spec.type: Unsupported value: \"Cron\""),
        create("trigger_unknown_concurrency_policy", SCHEDULED, vec![set("/spec/schedule/concurrencyPolicy", json!("Skip"))], "spec.schedule.concurrencyPolicy: Unsupported value: \"Skip\""),
        create("trigger_condition_on_job_and_crawler", CONDITIONAL, vec![set("/spec/predicate/conditions/0/crawler", json!("landing"))], "spec.predicate.conditions[0]: Invalid value: a condition names exactly one of job or crawler"),
        create("trigger_condition_waits_for_running", CONDITIONAL, vec![set("/spec/predicate/conditions/0/state", json!("Running"))], "spec.predicate.conditions[0].state: Invalid value: a condition waits for a final state"),
        create("trigger_batch_window_over_900s", EVENT, vec![set("/spec/event/batchWindowSeconds", json!(1000))], "spec.event.batchWindowSeconds: Invalid value: 1000: spec.event.batchWindowSeconds in body should be less than or equal to 900"),
        create("trigger_action_names_nothing", EVENT, vec![set("/spec/actions/0", json!({"arguments": {"a": "b"}}))], "spec.actions[0]: Invalid value: an action names exactly one of job, crawler or workflow"),
        create("trigger_without_actions", EVENT, vec![set("/spec/actions", json!([]))], "spec.actions: Invalid value: 0: spec.actions in body should have at least 1 items"),
        create("workflow_depends_on_unknown_node", WORKFLOW, vec![set("/spec/nodes/2/dependsOn/0/node", json!("clean-up"))], "spec.nodes: Invalid value: every dependsOn.node must name a node of this workflow"),
        create("workflow_node_depends_on_itself", WORKFLOW, vec![set("/spec/nodes/1/dependsOn/0/node", json!("clean"))], "spec.nodes[1].dependsOn: Invalid value: a node cannot depend on itself"),
        create("workflow_node_with_job_and_crawler", WORKFLOW, vec![set("/spec/nodes/1/crawler", json!("landing"))], "spec.nodes[1]: Invalid value: a node runs exactly one of job or crawler"),
        create("workflow_node_name_with_uppercase", WORKFLOW, vec![set("/spec/nodes/0/name", json!("Crawl"))], "spec.nodes[0].name: Invalid value: \"Crawl\": spec.nodes[0].name in body should match"),
        create("workflow_duplicate_node", WORKFLOW, vec![set("/spec/nodes/2/name", json!("clean")), remove("/spec/nodes/2/dependsOn")], ".spec.nodes: duplicate entries for key [name=\"clean\"]"),
        create("workflow_max_concurrent_runs_over_100", WORKFLOW, vec![set("/spec/maxConcurrentRuns", json!(101))], "spec.maxConcurrentRuns: Invalid value: 101: spec.maxConcurrentRuns in body should be less than or equal to 100"),
    ]
}

async fn check_refused(env: &Env, case: &BadCase) -> Result<(), Failed> {
    let base = env
        .examples
        .iter()
        .find(|m| {
            format!(
                "{}/{}",
                m.object["kind"].as_str().unwrap_or_default(),
                m.object["metadata"]["name"].as_str().unwrap_or_default()
            ) == case.base
        })
        .ok_or_else(|| format!("no example {} to start from", case.base))?;
    let mut object = base.object.clone();
    for edit in &case.edits {
        apply_edit(&mut object, edit).map_err(|e| format!("{}: {e}", case.mistake))?;
    }
    if case.update {
        // Each update case gets its own copy of the base object, so cases do not interfere.
        let name = format!(
            "{}-{}",
            base.object["metadata"]["name"].as_str().unwrap_or_default(),
            case.mistake.replace('_', "-")
        );
        let mut original = base.object.clone();
        original["metadata"]["name"] = json!(name);
        object["metadata"]["name"] = json!(name);
        env.applier
            .apply(&original, UPDATES_NAMESPACE, false)
            .await
            .map_err(|e| format!("creating the base failed: {e}"))?;
    }
    let namespace = if case.update {
        UPDATES_NAMESPACE
    } else {
        EXAMPLES_NAMESPACE
    };
    match env.applier.apply(&object, namespace, true).await {
        Ok(_) => Err(format!(
            "the API server accepted it; expected a refusal containing: {}",
            case.expect
        )
        .into()),
        Err(kglue_e2e::Error::Kube(kube::Error::Api(status))) if status.message.contains(case.expect) => Ok(()),
        Err(error) => Err(format!(
            "refused, but without the expected message\n  expected fragment: {}\n  got: {error}",
            case.expect
        )
        .into()),
    }
}

fn apply_edit(object: &mut Value, edit: &Edit) -> Result<(), String> {
    let pointer = match edit {
        Edit::Set(pointer, _) | Edit::Remove(pointer) => *pointer,
    };
    let (parent, last) = pointer
        .rsplit_once('/')
        .ok_or_else(|| format!("bad pointer {pointer}"))?;
    let parent = object
        .pointer_mut(parent)
        .ok_or_else(|| format!("{parent} does not exist in the base"))?;
    match (parent, edit) {
        (Value::Object(map), Edit::Set(_, value)) => {
            map.insert(last.to_string(), value.clone());
        }
        (Value::Object(map), Edit::Remove(_)) => {
            map.remove(last)
                .ok_or_else(|| format!("{pointer} does not exist in the base"))?;
        }
        (Value::Array(items), Edit::Set(_, value)) => {
            let index: usize = last.parse().map_err(|_| format!("bad index in {pointer}"))?;
            *items
                .get_mut(index)
                .ok_or_else(|| format!("{pointer} does not exist in the base"))? = value.clone();
        }
        _ => return Err(format!("cannot edit {pointer}")),
    }
    Ok(())
}
