//! ETL job runs against the real S3 server (versitygw, `e2e/kglue-s3`): sources and sinks reached
//! through a Connection whose credentials come from a Secret, bookmarks over new objects landing
//! between runs, Hive-partitioned Parquet written with the run id, and the written table read
//! back by a second job through the catalog.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use kglue_e2e::S3Server;
use kglue_runner::catalog::DirCatalog;
use kglue_runner::etl::run::{Resources, RunOutcome, RunRequest, RunResult, plan_run};
use kglue_runner::etl::settle::{DecideError, Decider, DirLedger, finish_commit};
use kglue_runner::etl::workers::Executors;
use kglue_runner::local::{crawl_dir, read_crawler, read_job};
use kglue_runner::storage::{Credentials, SecretsDir, StoreResolver};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

struct Setup {
    server: S3Server,
    dir: tempfile::TempDir,
}

impl Setup {
    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The Connection `lake` to this server in the catalog, and its Secret in the secrets folder.
    fn lake_connection(&self) {
        write(
            &self.path("catalog/connection.yaml"),
            &format!(
                "apiVersion: kglue.dev/v1alpha1\nkind: Connection\nmetadata: {{name: lake}}\n\
                 spec: {{s3: {{endpoint: '{}', region: us-east-1, forcePathStyle: true, credentialsSecretRef: {{name: lake-credentials}}}}}}\n",
                self.server.endpoint()
            ),
        );
        write(
            &self.path("secrets/lake-credentials/AWS_ACCESS_KEY_ID"),
            self.server.access_key(),
        );
        write(
            &self.path("secrets/lake-credentials/AWS_SECRET_ACCESS_KEY"),
            self.server.secret_key(),
        );
    }

    async fn put(&self, bucket: &str, key: &str, text: &str) {
        let store = self.server.store(bucket).expect("store");
        store
            .put(&Key::from(key), PutPayload::from(text.as_bytes().to_vec()))
            .await
            .expect("put");
    }

    fn resolver(&self, catalog: &DirCatalog) -> StoreResolver {
        StoreResolver::new(
            catalog.connections().clone(),
            Credentials {
                secrets: SecretsDir(self.path("secrets")),
                environment: Vec::new(),
            },
        )
    }

    async fn run(&self, job_file: &str, run_id: &str, bookmark: Option<kglue_crds::job::JobBookmark>) -> RunResult {
        let mut ledger = DirLedger::new(&self.path("catalog"));
        self.run_with(job_file, run_id, bookmark, &mut ledger).await
    }

    async fn run_deciding(&self, job_file: &str, run_id: &str, decider: &mut dyn Decider) -> RunResult {
        self.run_with(job_file, run_id, None, decider).await
    }

    async fn run_with(
        &self,
        job_file: &str,
        run_id: &str,
        bookmark: Option<kglue_crds::job::JobBookmark>,
        decider: &mut dyn Decider,
    ) -> RunResult {
        let resources = Resources::for_worker(kglue_crds::common::WorkerSize::Small, self.path("spill"));
        self.run_job(&self.path(job_file), run_id, bookmark, resources, decider)
            .await
    }

    async fn run_job(
        &self,
        job_file: &Path,
        run_id: &str,
        bookmark: Option<kglue_crds::job::JobBookmark>,
        resources: Resources,
        decider: &mut dyn Decider,
    ) -> RunResult {
        let job = read_job(job_file).expect("job manifest");
        let mut catalog = DirCatalog::load(&self.path("catalog")).expect("catalog");
        let resolver = self.resolver(&catalog);
        let request = RunRequest {
            job_name: "job".into(),
            spec: job.spec,
            run_id: run_id.into(),
            attempt: 0,
            arguments: BTreeMap::new(),
            bookmark,
            resources,
            stream: None,
        };
        match plan_run(request, &catalog, &resolver).await {
            Ok(planned) => planned.execute(&mut catalog, decider).await,
            Err((_, error)) => panic!("the job does not plan: {error}"),
        }
    }
}

async fn setup() -> Setup {
    let server = S3Server::start().expect("the S3 server starts");
    server.create_bucket("landing").expect("bucket");
    server.create_bucket("curated").expect("bucket");
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup { server, dir };
    write(
        &setup.path("catalog/catalog.yaml"),
        "apiVersion: kglue.dev/v1alpha1\nkind: Database\nmetadata: {name: curated}\nspec: {databaseName: curated}\n",
    );
    setup.lake_connection();
    write(
        &setup.path("clean.yaml"),
        "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {name: clean}\nspec:\n  bookmark: {option: Enable}\n  sources:\n    - name: orders\n      storage: {location: 's3://landing/orders/', format: Csv, connection: lake}\n  sql: |\n    CREATE VIEW cleaned AS SELECT id, amount, region FROM orders WHERE amount > 0;\n  sinks:\n    - name: cleaned\n      storage: {location: 's3://curated/orders/', format: Parquet, connection: lake}\n      partitionBy: [region]\n      table: {database: curated, table: orders}\n",
    );
    write(
        &setup.path("export.yaml"),
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: export}}\nspec:\n  sources:\n    - name: orders\n      table: {{database: curated, table: orders}}\n  sql: |\n    CREATE VIEW totals AS SELECT region, count(*) AS n, sum(amount) AS total, count(DISTINCT id) AS ids FROM orders GROUP BY region;\n  sinks:\n    - name: totals\n      storage: {{location: 'file://{}/', format: Csv}}\n      writeMode: Overwrite\n",
            setup.path("export").display()
        ),
    );
    setup
}

fn exported(setup: &Setup) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(setup.path("export"))
        .expect("export written")
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).expect("csv");
        lines.extend(text.lines().skip(1).map(str::to_string));
    }
    lines.sort();
    lines
}

#[tokio::test]
async fn a_bookmarked_job_on_s3_reads_each_object_once_and_its_table_reads_back() {
    let setup = setup().await;
    setup
        .put(
            "landing",
            "orders/dt=2024-01-01/a.csv",
            "id,amount,region\n1,2.5,eu\n2,4,us\n3,-1,eu\n",
        )
        .await;
    setup.put("landing", "orders/dt=2024-01-01/_SUCCESS", "").await;

    let first = setup.run("clean.yaml", "r1", None).await;
    assert_eq!(first.outcome, RunOutcome::Succeeded, "{:?}", first.error);
    assert_eq!(first.metrics.sources["orders"].rows, 3);
    assert_eq!(first.metrics.sinks["cleaned"].rows, 2);
    assert_eq!(first.metrics.sinks["cleaned"].partitions_added, 2);

    setup
        .put(
            "landing",
            "orders/dt=2024-01-02/b.csv",
            "id,amount,region\n4,1.5,eu\n5,3,ap\n",
        )
        .await;
    let second = setup.run("clean.yaml", "r2", first.next_bookmark.clone()).await;
    assert_eq!(second.outcome, RunOutcome::Succeeded, "{:?}", second.error);
    assert_eq!(second.metrics.sources["orders"].rows, 2, "only the new object");
    assert_eq!(second.metrics.sources["orders"].objects, 1);
    assert_eq!(
        second.metrics.sinks["cleaned"].partitions_added, 1,
        "ap is new, eu is not"
    );

    let store = setup.server.store("curated").expect("store");
    let keys: Vec<String> = futures::StreamExt::collect::<Vec<_>>(store.list(Some(&Key::from("orders"))))
        .await
        .into_iter()
        .map(|m| m.expect("listed").location.to_string())
        .collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(
        keys.iter().all(|k| k.contains("part-r1-") || k.contains("part-r2-")),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains("_kglue_staging")),
        "staging removed: {keys:?}"
    );

    let export = setup.run("export.yaml", "x1", None).await;
    assert_eq!(export.outcome, RunOutcome::Succeeded, "{:?}", export.error);
    assert_eq!(exported(&setup), ["ap,1,3.0,1", "eu,2,4.0,2", "us,1,4.0,1"]);
}

/// A decider standing in for the API server's answer to the decision: it keeps the decision (as
/// a recorded RunResult would) and answers as told.
struct Answer {
    recorded: Option<kglue_crds::run_result::CommitIntent>,
    lost: bool,
}

#[async_trait::async_trait]
impl Decider for Answer {
    async fn decide(
        &mut self,
        _result: &RunResult,
        intent: &kglue_crds::run_result::CommitIntent,
    ) -> Result<(), DecideError> {
        if self.lost {
            // Recorded, and the answer lost on the way back.
            self.recorded = Some(intent.clone());
            return Err(DecideError {
                message: "the connection was reset".into(),
                maybe_recorded: true,
            });
        }
        Err(DecideError::refused("admission webhook denied the request"))
    }
}

#[tokio::test]
async fn a_refused_decision_removes_the_staging_and_a_lost_answer_keeps_it_for_settling() {
    let setup = setup().await;
    setup
        .put(
            "landing",
            "orders/dt=2024-01-01/a.csv",
            "id,amount,region\n1,2.5,eu\n2,4,us\n",
        )
        .await;
    let staged = || async {
        let store = setup.server.store("curated").expect("store");
        let all: Vec<_> = store.list(None).try_collect().await.expect("list");
        let keys: Vec<String> = all.into_iter().map(|m| m.location.to_string()).collect();
        (
            keys.iter().filter(|k| k.contains("_kglue_staging")).count(),
            keys.iter().filter(|k| !k.contains("_kglue_staging")).count(),
        )
    };

    // Refused: nothing committed, nothing staged left.
    let mut refused = Answer {
        recorded: None,
        lost: false,
    };
    let result = setup.run_deciding("clean.yaml", "r1", &mut refused).await;
    assert_eq!(result.outcome, RunOutcome::Failed);
    assert!(
        result
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("admission webhook denied"),
        "{:?}",
        result.error
    );
    assert_eq!(staged().await, (0, 0));

    // The answer lost: the run stops where it is, its staging kept, nothing committed yet ...
    let mut lost = Answer {
        recorded: None,
        lost: true,
    };
    let result = setup.run_deciding("clean.yaml", "r2", &mut lost).await;
    assert_eq!(result.outcome, RunOutcome::Unfinished, "{:?}", result.error);
    let (staging, committed) = staged().await;
    assert!(
        staging > 0 && committed == 0,
        "staging {staging}, committed {committed}"
    );
    // ... and settling it from the decision that was recorded commits it, once.
    let intent = lost.recorded.expect("the decision");
    let mut catalog = DirCatalog::load(&setup.path("catalog")).expect("catalog");
    let resolver = setup.resolver(&catalog);
    finish_commit(&intent, "r2", &mut catalog, &resolver)
        .await
        .expect("settled");
    finish_commit(&intent, "r2", &mut catalog, &resolver)
        .await
        .expect("settled again");
    let (staging, committed) = staged().await;
    assert_eq!(staging, 0);
    assert!(committed > 0);
    let reloaded = DirCatalog::load(&setup.path("catalog")).expect("catalog");
    assert!(
        reloaded.table("curated", "orders").is_some(),
        "the Table written by settling"
    );
}

/// The example pipeline (examples/sales-pipeline) on S3, as the demo lands it but with more
/// orders, several versions of each: its databases, classifier and curated table, the `lake`
/// Connection to this server, and the raw tables crawled by its crawler.
async fn pipeline_setup() -> Setup {
    let server = S3Server::start().expect("the S3 server starts");
    for bucket in ["sales-landing", "sales-curated", "sales-reports"] {
        server.create_bucket(bucket).expect("bucket");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Setup { server, dir };
    let examples = kglue_e2e::repo_root().join("examples/sales-pipeline");
    for file in ["databases.yaml", "classifier.yaml", "table-orders-daily.yaml"] {
        std::fs::create_dir_all(setup.path("catalog")).expect("catalog");
        std::fs::copy(examples.join(file), setup.path("catalog").join(file)).expect("copy example");
    }
    setup.lake_connection();
    setup
        .put(
            "sales-landing",
            "customers/part-0.csv",
            "customer_id|country\n0|NL\n1|DE\n2|FR\n",
        )
        .await;
    for day in 1..=2 {
        let mut lines = String::new();
        for i in 1..=3000 {
            // Every order twice a day, the later version with another amount: the job keeps one.
            let order = (i + day * 1000) % 2500;
            lines.push_str(&format!(
                "{{\"order_id\": {order}, \"customer_id\": {}, \"amount\": {}.25, \"ordered_at\": \"2024-05-0{day} {:02}:{:02}:00\", \"items\": [{{\"sku\": \"s{}\", \"quantity\": {}}}]}}\n",
                order % 3,
                i % 97,
                i % 24,
                i % 60,
                i % 7,
                i % 5 + 1
            ));
        }
        setup
            .put(
                "sales-landing",
                &format!("orders/dt=2024-05-0{day}/part-0.json"),
                &lines,
            )
            .await;
    }
    let crawler = read_crawler(&examples.join("crawler.yaml")).expect("the example crawler");
    crawl_dir(
        &crawler,
        &setup.path("catalog"),
        Credentials {
            secrets: SecretsDir(setup.path("secrets")),
            environment: Vec::new(),
        },
        false,
    )
    .await
    .expect("the example crawl");
    // What the jobs wrote, read back by one more job: the curated table and the report, as JSON
    // lines in local files.
    write(
        &setup.path("export.yaml"),
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Job\nmetadata: {{name: export}}\nspec:\n  sources:\n    - name: orders_daily\n      table: {{database: sales_curated, table: orders_daily}}\n    - name: revenue\n      storage: {{location: 's3://sales-reports/revenue/', format: Csv, compression: Gzip, csv: {{header: true}}, connection: lake}}\n  sql: |\n    CREATE VIEW orders AS SELECT * FROM orders_daily;\n    CREATE VIEW report AS SELECT * FROM revenue;\n  sinks:\n    - name: orders\n      storage: {{location: 'file://{0}/orders/', format: Json}}\n    - name: report\n      storage: {{location: 'file://{0}/report/', format: Json}}\n",
            setup.path("export").display()
        ),
    );
    setup
}

/// Every line of every file under `dir`, sorted.
fn lines_under(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).expect("dir").flatten().map(|e| e.path()));
        } else {
            lines.extend(
                std::fs::read_to_string(&path)
                    .expect("text")
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    lines.sort();
    lines
}

/// The example pipeline's two jobs on S3 write, with three workers (executor processes without a
/// catalog, that open S3 through the `lake` Connection the tasks carry and its Secret), exactly the rows they write in one
/// process, compared row for row.
#[tokio::test]
async fn the_example_pipelines_jobs_write_the_same_rows_with_three_workers() {
    let kglue = kglue_e2e::workspace_binary("kglue").expect("the kglue binary");
    let examples = kglue_e2e::repo_root().join("examples/sales-pipeline");
    let mut written = Vec::new();
    for workers in [1, 3] {
        let setup = pipeline_setup().await;
        let resources = || {
            let one = Resources::for_worker(kglue_crds::common::WorkerSize::Medium, setup.path("spill"));
            let launch = Executors::Processes {
                program: kglue.clone(),
                secrets_dir: setup.path("secrets"),
            };
            if workers == 1 {
                one
            } else {
                one.with_workers(workers, launch)
            }
        };
        let mut results = Vec::new();
        for job in ["job-clean-orders.yaml", "job-publish-revenue.yaml"] {
            let mut ledger = DirLedger::new(&setup.path("catalog"));
            let result = setup
                .run_job(
                    &examples.join(job),
                    &format!("r-{workers}"),
                    None,
                    resources(),
                    &mut ledger,
                )
                .await;
            assert_eq!(
                result.outcome,
                RunOutcome::Succeeded,
                "{job} with {workers} workers: {:?}",
                result.error
            );
            assert_eq!(
                result.metrics.workers.as_ref().map(|w| w.executors),
                (workers > 1).then_some(workers as i64),
                "{job}"
            );
            results.push(result);
        }
        let export = setup.run("export.yaml", "x1", None).await;
        assert_eq!(export.outcome, RunOutcome::Succeeded, "{:?}", export.error);
        let orders = lines_under(&setup.path("export/orders"));
        let report = lines_under(&setup.path("export/report"));
        assert_eq!(orders.len(), 2500, "one row per order id, its latest version");
        assert!(!report.is_empty());
        written.push((orders, report, results[0].metrics.sources.clone()));
    }
    assert!(
        written[0].0 == written[1].0,
        "orders_daily differs between one process and three workers"
    );
    assert_eq!(written[0].1, written[1].1, "the revenue report differs");
    assert_eq!(written[0].2, written[1].2, "the sources' figures differ");
}
