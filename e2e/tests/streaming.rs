//! Streaming jobs against a real Kafka broker (`e2e/kglue-kafka`), run by the built `kglue run`
//! binary: each record reaches the sink exactly once through kills and restarts, bad records reach
//! the dead-letter location with their offsets, and a broker outage loses nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;
use kglue_e2e::kafka::{KafkaBroker, Offsets, produce, read_sink};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::UnknownTopicHandling;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

struct Lake {
    dir: tempfile::TempDir,
}

impl Lake {
    fn new(broker: &KafkaBroker, window_seconds: u32, max_records: u32) -> Lake {
        let connection = format!(r#"{{bootstrapServers: ["{}"]}}"#, broker.bootstrap());
        Lake::with_connection(&connection, window_seconds, max_records)
    }

    /// A lake whose `events` Connection is `connection` (the `kafka` field, as YAML).
    fn with_connection(connection: &str, window_seconds: u32, max_records: u32) -> Lake {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let lake = Lake { dir };
        std::fs::create_dir_all(lake.path("catalog")).expect("catalog folder");
        std::fs::create_dir_all(lake.path("ref/pages")).expect("reference folder");
        std::fs::write(
            lake.path("ref/pages/pages.csv"),
            "page,section\n/p0,home\n/p1,shop\n/p2,shop\n/p3,help\n",
        )
        .expect("pages");
        std::fs::write(
            lake.path("catalog/catalog.yaml"),
            format!(
                r#"apiVersion: kglue.dev/v1alpha1
kind: Connection
metadata: {{name: events}}
spec:
  kafka: {connection}
---
apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {{name: raw.clicks}}
spec:
  databaseName: raw
  tableName: clicks
  storage: {{location: clicks, format: Kafka, connection: events, kafka: {{valueFormat: Json}}}}
  columns: [{{name: id, type: bigint}}, {{name: page, type: string}}, {{name: ms, type: bigint}}]
---
apiVersion: kglue.dev/v1alpha1
kind: Table
metadata: {{name: ref.pages}}
spec:
  databaseName: ref
  tableName: pages
  storage: {{location: "file://{pages}/", format: Csv}}
  columns: [{{name: page, type: string}}, {{name: section, type: string}}]
"#,
                pages = lake.path("ref/pages").display(),
            ),
        )
        .expect("catalog");
        std::fs::write(
            lake.path("job.yaml"),
            format!(
                r#"apiVersion: kglue.dev/v1alpha1
kind: Job
metadata: {{name: clicks}}
spec:
  sources:
    - {{name: clicks, table: {{database: raw, table: clicks}}}}
    - {{name: pages, table: {{database: ref, table: pages}}}}
  sql: |
    CREATE VIEW enriched AS
    SELECT c.id, c.page, COALESCE(p.section, 'other') AS section, c.ms, c."partition", c."offset"
    FROM clicks c LEFT JOIN pages p ON c.page = p.page
  sinks:
    - {{name: enriched, from: enriched, storage: {{location: "file://{out}/", format: Parquet}}, writeMode: Append, partitionBy: [section]}}
  streaming: {{windowSeconds: {window_seconds}, maxRecordsPerBatch: {max_records}, startingOffsets: earliest}}
"#,
                out = lake.path("out").display(),
            ),
        )
        .expect("job");
        lake
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn command(&self, args: &[&str]) -> Command {
        let kglue = kglue_e2e::workspace_binary("kglue").expect("the kglue binary is built");
        let mut command = Command::new(kglue);
        command
            .arg("run")
            .arg("-f")
            .arg(self.path("job.yaml"))
            .arg("--catalog")
            .arg(self.path("catalog"))
            .arg("--secrets-dir")
            .arg(self.path("secrets"))
            .args(args);
        command
    }

    /// Writes a Secret's key as a mounted Secret file.
    fn secret(&self, name: &str, key: &str, value: &str) {
        let folder = self.path(&format!("secrets/{name}"));
        std::fs::create_dir_all(&folder).expect("a Secret folder");
        std::fs::write(folder.join(key), value).expect("a Secret key");
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kglue run starts")
    }

    /// Batch records in the checkpoint.
    fn batches(&self) -> usize {
        count_files(&self.path("out/_kglue_checkpoint/clicks/batches"))
    }

    /// Files staged and not yet committed.
    fn staged(&self) -> usize {
        count_files(&self.path("out/_kglue_staging"))
    }

    /// Every (partition, offset) in the sink, how many rows it has, and rows per section.
    fn written(&self) -> (usize, Offsets, BTreeMap<String, usize>) {
        read_sink(SessionContext::new(), &self.path("out").display().to_string())
    }

    /// The (partition, offset) of every dead letter.
    fn dead_letters(&self) -> Offsets {
        let folder = self.path("out/_kglue_dead_letter/clicks");
        let mut offsets = Offsets::new();
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).expect("a dead-letter file");
            for line in text.lines() {
                let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                assert_eq!(record["topic"], "clicks", "{line}");
                assert!(record["reason"].as_str().is_some_and(|r| !r.is_empty()), "{line}");
                offsets.insert((
                    record["partition"].as_i64().expect("partition") as i32,
                    record["offset"].as_i64().expect("offset"),
                ));
            }
        }
        offsets
    }
}

fn count_files(folder: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// 30,000 events and 6 that do not parse, over 3 partitions: two runs SIGKILLed (once with files
/// staged and no decision, once right after a batch's decision), then a run to the end. Every
/// good event is in the sink exactly once (compared by partition and offset), every bad one is in
/// the dead-letter location, nothing is left staged, and the last batch reports no lag.
#[test]
fn each_event_reaches_the_sink_once_through_kills_and_restarts() {
    let broker = KafkaBroker::start().expect("a Kafka broker");
    broker.create_topic("clicks", 3).expect("the topic");
    let mut values: Vec<String> = (0..30_000)
        .map(|i| format!(r#"{{"id":{i},"page":"/p{}","ms":{}}}"#, i % 5, i * 3))
        .collect();
    // Bad records among the good, in every partition.
    for (at, bad) in [
        (1_000, "not json"),
        (7_001, r#"{"id":"seven"}"#),
        (12_002, "{"),
        (20_000, r#"{"id":1,"ms":"later"}"#),
        (25_001, "[1,2]"),
        (29_002, "\u{1}"),
    ] {
        values.insert(at, bad.to_string());
    }
    let landed = produce(&broker, "clicks", 3, &values, 250);
    let bad_values: BTreeSet<&str> = [
        "not json",
        r#"{"id":"seven"}"#,
        "{",
        r#"{"id":1,"ms":"later"}"#,
        "[1,2]",
        "\u{1}",
    ]
    .into_iter()
    .collect();
    let mut good = Offsets::new();
    let mut bad = Offsets::new();
    for (value, at) in values.iter().zip(&landed) {
        if bad_values.contains(value.as_str()) {
            bad.insert(*at);
        } else {
            good.insert(*at);
        }
    }
    assert_eq!((good.len(), bad.len()), (30_000, 6));

    let lake = Lake::new(&broker, 1, 1_500);

    // Killed while a batch's files are staged and its decision is not recorded.
    let child = lake.spawn(&["--until-caught-up"]);
    wait_for(
        "a batch staged after two were committed",
        Duration::from_secs(120),
        || lake.batches() >= 2 && lake.staged() > 0,
    );
    kill(child);
    let after_first = lake.batches();

    // Killed right after a batch's decision, while its commit is under way.
    let child = lake.spawn(&["--until-caught-up"]);
    wait_for("another batch recorded", Duration::from_secs(120), || {
        lake.batches() > after_first + 1
    });
    kill(child);

    // Then to the end.
    let output = lake.command(&["--until-caught-up"]).output().expect("kglue run runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().rfind(|l| l.starts_with("batch ")).unwrap_or_default();
    assert!(last.contains("; lag 0;"), "{stdout}");

    let (rows, offsets, sections) = lake.written();
    assert_eq!(rows, 30_000, "rows in the sink");
    assert_eq!(offsets, good, "each good event exactly once");
    // The join with the catalog table: /p0../p3 have sections, /p4 is "other".
    assert_eq!(sections.get("other"), Some(&6_000), "{sections:?}");
    assert_eq!(sections.get("shop"), Some(&12_000), "{sections:?}");
    assert_eq!(lake.dead_letters(), bad, "each bad record in the dead-letter location");
    assert_eq!(lake.staged(), 0, "nothing left staged");

    // Stopped and started again with nothing new: no batch, nothing written.
    let output = lake.command(&["--until-caught-up"]).output().expect("kglue run runs");
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("stream stopped after 0 batches"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(lake.written().0, 30_000);
}

fn values(from: usize, count: usize) -> Vec<String> {
    (from..from + count)
        .map(|i| format!(r#"{{"id":{i},"page":"/p{}","ms":{}}}"#, i % 5, i * 3))
        .collect()
}

/// SCRAM-SHA-256 over TLS with the broker's CA from a Secret: a wrong password is refused by name
/// at once (not retried), the right one streams. Then the broker is paused (an outage that keeps
/// its data): the stream reports it and retries, and once the broker is back it goes on with
/// nothing lost or repeated. Ctrl-C stops it after the batch in progress.
#[test]
fn a_stream_logs_in_over_tls_and_waits_out_an_outage_losing_nothing() {
    let broker = KafkaBroker::start().expect("a Kafka broker");
    broker.create_topic("clicks", 2).expect("the topic");
    let first = produce(&broker, "clicks", 2, &values(0, 1_000), 100);

    let connection = format!(
        r#"{{bootstrapServers: ["{}"], tls: {{caSecretRef: {{name: kafka-ca}}}}, sasl: {{mechanism: ScramSha256, credentialsSecretRef: {{name: kafka-login}}}}}}"#,
        broker.sasl_ssl_bootstrap()
    );
    let lake = Lake::with_connection(&connection, 1, 400);
    let ca = std::fs::read_to_string(broker.ca_certificate()).expect("the broker's CA");
    lake.secret("kafka-ca", "ca.crt", &ca);
    lake.secret("kafka-login", "username", kglue_e2e::kafka::USER);
    lake.secret("kafka-login", "password", "not-the-password");
    let started = Instant::now();
    let refused = lake.command(&["--until-caught-up"]).output().expect("kglue run runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("connection events: Kafka at") && stderr.contains("refused the connection"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a refused login is not retried"
    );
    lake.secret("kafka-login", "password", kglue_e2e::kafka::PASSWORD);

    let log = std::fs::File::create(lake.path("stream.log")).expect("a log file");
    let mut child = lake
        .command(&[])
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("kglue run starts");
    let read_log = || std::fs::read_to_string(lake.path("stream.log")).unwrap_or_default();
    wait_for("the first events committed", Duration::from_secs(120), || {
        read_log().contains("batch ") && lake.batches() >= 1 && lake.written().0 == 1_000
    });

    // The outage: the broker answers nothing while it is paused.
    let pid = rustix::process::Pid::from_raw(broker.pid().expect("the broker's pid")).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("paused");
    wait_for("the outage reported", Duration::from_secs(90), || {
        read_log().contains("no answer from Kafka")
    });
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("resumed");
    let second = produce(&broker, "clicks", 2, &values(1_000, 1_000), 100);
    wait_for("the later events committed", Duration::from_secs(180), || {
        lake.written().0 >= 2_000
    });
    let stream = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
    rustix::process::kill_process(stream, rustix::process::Signal::INT).expect("Ctrl-C");
    let status = child.wait().expect("the stream ends");
    let log = read_log();
    assert!(status.success(), "{log}");
    assert!(log.contains("stopping after the batch in progress"), "{log}");

    let (rows, offsets, _) = lake.written();
    let produced: Offsets = first.into_iter().chain(second).collect();
    assert_eq!(rows, 2_000, "{log}");
    assert_eq!(offsets, produced);
}

/// The sink and the checkpoint on the S3 server (versitygw), where a batch's record is created
/// with `If-None-Match: *` and its files move by copy and delete: killed after two batches, then
/// run to the end, the bucket holds each of 2,000 events once.
#[test]
fn a_stream_on_s3_commits_each_event_once_through_a_kill() {
    let broker = KafkaBroker::start().expect("a Kafka broker");
    broker.create_topic("clicks", 2).expect("the topic");
    let produced: Offsets = produce(&broker, "clicks", 2, &values(0, 2_000), 100)
        .into_iter()
        .collect();
    let server = kglue_e2e::S3Server::start().expect("the S3 server starts");
    server.create_bucket("lake").expect("a bucket");
    let lake = Lake::new(&broker, 1, 250);
    // The sink (and with it the checkpoint) in the bucket, through an s3 Connection.
    let job = std::fs::read_to_string(lake.path("job.yaml")).expect("the job");
    let job = job.replace(
        &format!("location: \"file://{}/\"", lake.path("out").display()),
        "location: \"s3://lake/clicks/\", connection: lake",
    );
    std::fs::write(lake.path("job.yaml"), job).expect("the job on S3");
    let mut catalog = std::fs::read_to_string(lake.path("catalog/catalog.yaml")).expect("the catalog");
    catalog.push_str(&format!(
        "---\napiVersion: kglue.dev/v1alpha1\nkind: Connection\nmetadata: {{name: lake}}\nspec: {{s3: {{endpoint: '{}', region: us-east-1, forcePathStyle: true, credentialsSecretRef: {{name: lake-credentials}}}}}}\n",
        server.endpoint()
    ));
    std::fs::write(lake.path("catalog/catalog.yaml"), catalog).expect("the catalog with the lake");
    lake.secret("lake-credentials", "AWS_ACCESS_KEY_ID", server.access_key());
    lake.secret("lake-credentials", "AWS_SECRET_ACCESS_KEY", server.secret_key());
    let store = std::sync::Arc::new(server.store("lake").expect("a client"));
    let keys = |prefix: &str| -> Vec<String> {
        runtime().block_on(async {
            use futures::TryStreamExt;
            use object_store::ObjectStore;
            store
                .list(Some(&object_store::path::Path::from(prefix)))
                .map_ok(|meta| meta.location.to_string())
                .try_collect()
                .await
                .unwrap_or_default()
        })
    };

    let child = lake.spawn(&["--until-caught-up"]);
    wait_for("two batches recorded in the bucket", Duration::from_secs(120), || {
        keys("clicks/_kglue_checkpoint/clicks/batches").len() >= 2
    });
    kill(child);
    let output = lake.command(&["--until-caught-up"]).output().expect("kglue run runs");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(keys("clicks/_kglue_staging").is_empty(), "nothing left staged");

    let ctx = SessionContext::new();
    ctx.register_object_store(&url::Url::parse("s3://lake").expect("a URL"), store.clone());
    let (rows, written, _) = read_sink(ctx, "s3://lake/clicks/");
    assert_eq!(rows, 2_000, "rows in the bucket");
    assert_eq!(written, produced);
}

/// Records deleted from the topic (here by a delete-records request, as retention would) before
/// the stream read them stop it, naming the partition and offsets, rather than being skipped.
#[test]
fn records_deleted_before_the_stream_read_them_stop_it_by_name() {
    let broker = KafkaBroker::start().expect("a Kafka broker");
    broker.create_topic("clicks", 1).expect("the topic");
    produce(&broker, "clicks", 1, &values(0, 100), 100);
    let lake = Lake::new(&broker, 1, 1_000);
    let first = lake.command(&["--until-caught-up"]).output().expect("kglue run runs");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    produce(&broker, "clicks", 1, &values(100, 100), 100);
    runtime().block_on(async {
        let client = ClientBuilder::new(vec![broker.bootstrap()])
            .build()
            .await
            .expect("a Kafka client");
        client
            .partition_client("clicks", 0, UnknownTopicHandling::Retry)
            .await
            .expect("a partition client")
            .delete_records(150, 10_000)
            .await
            .expect("records deleted");
    });
    let second = lake.command(&["--until-caught-up"]).output().expect("kglue run runs");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        stderr.contains(
            "topic clicks partition 0: the records from offset 100 are no longer in the topic (the earliest is 150)"
        ),
        "{stderr}"
    );
    assert_eq!(lake.written().0, 100, "nothing of the later records was written");
}

/// With `failOnBadRecord`, the first record that does not parse stops the stream, naming its
/// partition, offset and reason, and its batch is not committed.
#[test]
fn fail_on_bad_record_stops_the_stream_at_the_first_bad_record() {
    let broker = KafkaBroker::start().expect("a Kafka broker");
    broker.create_topic("clicks", 1).expect("the topic");
    let mut events = values(0, 10);
    events.insert(4, "not json".to_string());
    produce(&broker, "clicks", 1, &events, 100);
    let lake = Lake::new(&broker, 1, 1_000);
    let job = std::fs::read_to_string(lake.path("job.yaml")).expect("the job");
    let job = job.replace(
        "startingOffsets: earliest}",
        "startingOffsets: earliest, failOnBadRecord: true}",
    );
    assert!(job.contains("failOnBadRecord: true"));
    std::fs::write(lake.path("job.yaml"), job).expect("the job");
    let output = lake.command(&["--until-caught-up"]).output().expect("kglue run runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("topic clicks partition 0 offset 4: the record does not parse (")
            && stderr.contains("and failOnBadRecord is set"),
        "{stderr}"
    );
    assert_eq!(lake.batches(), 0, "no batch committed");
    // Nothing at all under the sink: no file, no checkpoint record, no dead letter.
    assert_eq!(count_files(&lake.path("out")), 0, "nothing written");
}
