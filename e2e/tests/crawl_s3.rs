//! Crawls against the real S3 server (versitygw, `e2e/kglue-s3`), reached through a Connection
//! whose credentials come from a Secret, as in the cluster: exact tables, report entries for bad
//! files, and clear errors for wrong credentials, a missing bucket and an unreachable endpoint.

use std::path::Path;

use kglue_crds::Table;
use kglue_e2e::S3Server;
use kglue_runner::crawl::plan::Action;
use kglue_runner::local::{crawl_dir, read_crawler};
use kglue_runner::storage::{Credentials, SecretsDir};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};

struct Setup {
    _server: S3Server,
    dir: tempfile::TempDir,
}

impl Setup {
    fn catalog(&self) -> std::path::PathBuf {
        self.dir.path().join("catalog")
    }
    fn secrets(&self) -> Credentials {
        Credentials {
            secrets: SecretsDir(self.dir.path().join("secrets")),
            environment: Vec::new(),
        }
    }
    fn crawler(&self, targets: &[&str]) -> kglue_crds::Crawler {
        self.crawler_through(targets, Some("lake"))
    }
    fn crawler_through(&self, targets: &[&str], connection: Option<&str>) -> kglue_crds::Crawler {
        let connection = connection.map(|c| format!(", connection: {c}")).unwrap_or_default();
        let targets: String = targets
            .iter()
            .map(|t| format!("    - {{path: '{t}'{connection}}}\n"))
            .collect();
        let path = self.dir.path().join("crawler.yaml");
        std::fs::write(
            &path,
            format!("apiVersion: kglue.dev/v1alpha1\nkind: Crawler\nmetadata: {{name: landing}}\nspec:\n  databaseName: raw\n  targets:\n{targets}"),
        )
        .expect("write crawler");
        read_crawler(&path).expect("a valid crawler")
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// An S3 server with a `landing` bucket, and a catalog whose Connection `lake` points at it with
/// credentials from the Secret `lake-credentials` (`secret` is the secret key written there).
async fn setup(secret: &str, endpoint: Option<&str>) -> Setup {
    let server = S3Server::start().expect("the S3 server starts");
    server.create_bucket("landing").expect("bucket");
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = endpoint.map(str::to_string).unwrap_or_else(|| server.endpoint());
    write(
        &dir.path().join("catalog/catalog.yaml"),
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Database\nmetadata: {{name: raw}}\nspec: {{databaseName: raw}}\n---\n\
             apiVersion: kglue.dev/v1alpha1\nkind: Connection\nmetadata: {{name: lake}}\n\
             spec: {{s3: {{endpoint: '{endpoint}', region: us-east-1, forcePathStyle: true, credentialsSecretRef: {{name: lake-credentials}}}}}}\n"
        ),
    );
    write(
        &dir.path().join("secrets/lake-credentials/AWS_ACCESS_KEY_ID"),
        server.access_key(),
    );
    write(
        &dir.path().join("secrets/lake-credentials/AWS_SECRET_ACCESS_KEY"),
        secret,
    );
    Setup { _server: server, dir }
}

async fn put(server_setup: &Setup, key: &str, bytes: Vec<u8>) {
    let store = server_setup._server.store("landing").expect("store");
    store.put(&Key::from(key), PutPayload::from(bytes)).await.expect("put");
}

fn table(setup: &Setup, file: &str) -> Table {
    let text = std::fs::read_to_string(setup.catalog().join(file)).expect("table written");
    serde_saphyr::from_str(&text).expect("a Table manifest")
}

#[tokio::test]
async fn crawls_partitioned_data_on_s3_and_reports_bad_files() {
    let setup = setup(kglue_e2e::s3::SECRET_KEY, None).await;
    put(
        &setup,
        "orders/dt=2024-01-01/part-0.csv",
        b"id,amount\n1,2.5\n2,4\n".to_vec(),
    )
    .await;
    put(&setup, "orders/dt=2024-01-02/part-0.csv", b"id,amount\n3,1\n".to_vec()).await;
    put(&setup, "orders/dt=2024-01-02/_SUCCESS", Vec::new()).await;
    put(
        &setup,
        "events/day=1/a.json",
        b"{\"user\": \"u1\", \"n\": 1}\n".to_vec(),
    )
    .await;
    put(
        &setup,
        "events/day=2/b.json",
        b"{\"user\": \"u2\", \"n\": 2.5}\n".to_vec(),
    )
    .await;
    put(&setup, "events/day=2/empty.json", Vec::new()).await;
    put(
        &setup,
        "events/day=2/broken.parquet",
        b"PAR1 not really parquet at all PAR1".to_vec(),
    )
    .await;
    put(
        &setup,
        "events/day=3/latin1.json",
        b"{\"user\": \"caf\xe9\"}\n".to_vec(),
    )
    .await;

    let crawler = setup.crawler(&["s3://landing/orders/", "s3://landing/events/"]);
    let plan = crawl_dir(&crawler, &setup.catalog(), setup.secrets(), false)
        .await
        .expect("the crawl succeeds");

    let actions: Vec<(String, Action)> = plan
        .tables
        .iter()
        .map(|t| (t.table.spec.table_name.clone(), t.action.clone()))
        .collect();
    assert_eq!(
        actions,
        [
            ("events".to_string(), Action::Create),
            ("orders".to_string(), Action::Create)
        ]
    );

    let orders = table(&setup, "raw.orders.yaml");
    assert_eq!(orders.spec.storage.location, "s3://landing/orders/");
    assert_eq!(orders.spec.storage.connection.as_deref(), Some("lake"));
    let columns: Vec<String> = orders.spec.columns.iter().map(ToString::to_string).collect();
    assert_eq!(columns, ["id int", "amount double"]);
    assert_eq!(orders.spec.partition_keys.len(), 1);
    assert_eq!(orders.partition_count(), Some(2));

    let events = table(&setup, "raw.events.yaml");
    let columns: Vec<String> = events.spec.columns.iter().map(ToString::to_string).collect();
    assert_eq!(columns, ["user string", "n double"]);
    let keys: Vec<String> = events.spec.partition_keys.iter().map(ToString::to_string).collect();
    assert_eq!(keys, ["day int"]);

    let skipped = |key: &str| {
        plan.report
            .skipped
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, reason)| reason.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        skipped("s3://landing/orders/dt=2024-01-02/_SUCCESS"),
        "job-output marker"
    );
    assert_eq!(skipped("s3://landing/events/day=2/empty.json"), "empty (0 bytes)");
    assert!(skipped("s3://landing/events/day=2/broken.parquet").starts_with("unclassified: corrupt Parquet file"));
    assert_eq!(
        skipped("s3://landing/events/day=3/latin1.json"),
        "unclassified: not UTF-8 text: invalid byte 0xe9 at offset 13"
    );
    assert_eq!(plan.report.objects_listed, 8);
}

#[tokio::test]
async fn an_empty_prefix_is_a_crawl_with_nothing_found() {
    let setup = setup(kglue_e2e::s3::SECRET_KEY, None).await;
    let crawler = setup.crawler(&["s3://landing/nothing-here/"]);
    let plan = crawl_dir(&crawler, &setup.catalog(), setup.secrets(), false)
        .await
        .expect("no error");
    assert!(plan.tables.is_empty());
    assert_eq!(plan.report.objects_listed, 0);
}

#[tokio::test]
async fn wrong_credentials_name_the_target() {
    let setup = setup("not-the-secret", None).await;
    let crawler = setup.crawler(&["s3://landing/orders/"]);
    let error = crawl_dir(&crawler, &setup.catalog(), setup.secrets(), false)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        error.starts_with("crawler landing: target s3://landing/orders/: listing s3://landing/orders failed"),
        "{error}"
    );
    assert!(error.contains("SignatureDoesNotMatch"), "{error}");
}

#[tokio::test]
async fn a_missing_bucket_names_the_target() {
    let setup = setup(kglue_e2e::s3::SECRET_KEY, None).await;
    let crawler = setup.crawler(&["s3://no-such-bucket/orders/"]);
    let error = crawl_dir(&crawler, &setup.catalog(), setup.secrets(), false)
        .await
        .expect_err("no bucket")
        .to_string();
    assert!(error.contains("target s3://no-such-bucket/orders/"), "{error}");
    assert!(error.contains("NoSuchBucket"), "{error}");
}

#[tokio::test]
async fn an_unreachable_endpoint_names_the_target_and_does_not_hang() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let setup = setup(kglue_e2e::s3::SECRET_KEY, Some(&format!("http://127.0.0.1:{port}"))).await;
    let crawler = setup.crawler(&["s3://landing/orders/"]);
    let started = std::time::Instant::now();
    let error = crawl_dir(&crawler, &setup.catalog(), setup.secrets(), false)
        .await
        .expect_err("unreachable")
        .to_string();
    assert!(error.contains("target s3://landing/orders/"), "{error}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "gave up after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_missing_secret_key_is_named() {
    let setup = setup(kglue_e2e::s3::SECRET_KEY, None).await;
    std::fs::remove_file(setup.dir.path().join("secrets/lake-credentials/AWS_SECRET_ACCESS_KEY")).expect("remove");
    let crawler = setup.crawler(&["s3://landing/orders/"]);
    let error = crawl_dir(&crawler, &setup.catalog(), setup.secrets(), false)
        .await
        .expect_err("no key")
        .to_string();
    assert!(
        error.contains("secret \"lake-credentials\" has no key \"AWS_SECRET_ACCESS_KEY\""),
        "{error}"
    );
}

#[tokio::test]
async fn without_a_connection_the_standard_aws_environment_is_used() {
    let setup = setup(kglue_e2e::s3::SECRET_KEY, None).await;
    put(
        &setup,
        "orders/dt=2024-01-01/part-0.csv",
        b"id,amount\n1,2.5\n".to_vec(),
    )
    .await;
    let crawler = setup.crawler_through(&["s3://landing/orders/"], None);
    // AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, the keys and the region, as the AWS tools read them.
    let environment: Vec<(String, String)> = setup
        ._server
        .aws_env()
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
    assert!(
        environment.iter().any(|(key, _)| key == "AWS_ALLOW_HTTP"),
        "{environment:?}"
    );
    let credentials = Credentials {
        secrets: SecretsDir(setup.dir.path().join("no-secrets")),
        environment,
    };
    let plan = crawl_dir(&crawler, &setup.catalog(), credentials, false)
        .await
        .expect("the crawl succeeds");
    assert_eq!(plan.tables.len(), 1);
    let orders = table(&setup, "raw.orders.yaml");
    assert_eq!(orders.spec.storage.connection, None);
    assert_eq!(orders.spec.columns.len(), 2);

    // Without the environment the same target is unreachable: the variables really were used.
    let crawler = setup.crawler_through(&["s3://landing/orders/"], None);
    let error = crawl_dir(&crawler, &setup.catalog(), Credentials::default(), true)
        .await
        .expect_err("no credentials");
    assert!(error.to_string().contains("target s3://landing/orders/"), "{error}");
}
