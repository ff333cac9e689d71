//! A real Kafka broker for tests: Apache Kafka 4.4 (KRaft, one node) from Maven Central, started
//! by `e2e/kglue-kafka` on free loopback ports with its own state directory. The broker stops with
//! the guard, or with the test process (`--owner-pid`) if the guard is never dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use datafusion::arrow::array::{Array, Int32Array, Int64Array};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::record::Record;

use crate::s3::start_on_free_port;
use crate::{Error, run_script};

/// The SASL user the broker is started with.
pub const USER: &str = "kglue";
/// Its password.
pub const PASSWORD: &str = "kglue-secret";

/// A running broker: a plaintext listener on `port`, SASL (SCRAM-SHA-256, PLAIN) on `port + 1`,
/// SASL over TLS on `port + 2`, the KRaft controller on `port + 3`.
pub struct KafkaBroker {
    state_dir: PathBuf,
    port: u16,
}

impl KafkaBroker {
    /// Starts a fresh broker (its jars resolved from Maven Central on first use), owned by this
    /// process.
    pub fn start() -> Result<Self, Error> {
        start_on_free_port(
            |port| KafkaBroker {
                state_dir: std::env::temp_dir().join(format!("kglue-e2e-kafka-{}-{port}", std::process::id())),
                port,
            },
            |broker| broker.script(&["start", "--owner-pid", &std::process::id().to_string()]),
        )
    }

    /// `127.0.0.1:PORT` of the plaintext listener.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT` of the SASL (plaintext) listener.
    pub fn sasl_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port + 1)
    }

    /// `127.0.0.1:PORT` of the SASL over TLS listener.
    pub fn sasl_ssl_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port + 2)
    }

    /// The CA that signed the broker's certificate (for 127.0.0.1 and localhost).
    pub fn ca_certificate(&self) -> PathBuf {
        self.state_dir.join("tls/ca.crt")
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), Error> {
        self.script(&["topic", "create", topic, "--partitions", &partitions.to_string()])
            .map(|_| ())
    }

    /// Stops the broker (a clean shutdown), waits `down`, and starts it again on the same state:
    /// an outage whose connections are refused, and after which every record is still there.
    pub fn restart(&self, down: std::time::Duration) -> Result<(), Error> {
        self.script(&["restart", "--down", &down.as_secs().to_string()])
            .map(|_| ())
    }

    /// The broker's process id (to pause it: an outage that loses nothing).
    pub fn pid(&self) -> Result<i32, Error> {
        let file = self.state_dir.join("pids/java.pid");
        let text = std::fs::read_to_string(&file).map_err(|source| Error::Spawn {
            what: file.display().to_string(),
            source,
        })?;
        text.trim().parse().map_err(|_| Error::Spawn {
            what: file.display().to_string(),
            source: std::io::Error::other(format!("not a pid: {text:?}")),
        })
    }

    fn script(&self, args: &[&str]) -> Result<String, Error> {
        run_script(
            "kglue-kafka",
            args,
            &[
                ("KGLUE_KAFKA_STATE", self.state_dir.display().to_string()),
                ("KGLUE_KAFKA_PORT", self.port.to_string()),
                ("KGLUE_KAFKA_SASL_PORT", (self.port + 1).to_string()),
                ("KGLUE_KAFKA_SASL_SSL_PORT", (self.port + 2).to_string()),
                ("KGLUE_KAFKA_CONTROLLER_PORT", (self.port + 3).to_string()),
                ("KGLUE_KAFKA_USER", USER.to_string()),
                ("KGLUE_KAFKA_PASSWORD", PASSWORD.to_string()),
            ],
        )
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        if let Err(error) = self.script(&["stop"]) {
            eprintln!("warning: stopping the Kafka broker failed: {error}");
        }
    }
}

/// (partition, offset) of each record.
pub type Offsets = BTreeSet<(i32, i64)>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Produces `values` to `topic`, spread over its `partitions` in turn (`chunk` records per
/// request); returns where each record landed, in `values`' order.
///
/// The client is not an idempotent producer: when a request's answer is lost (a broker just
/// resumed from SIGSTOP, say) it sends the request again, and the broker may hold the chunk twice.
/// Such copies sit between where the partition ended and where the answered request begins; they
/// are returned too, so a caller counts every record the topic holds, as a stream will read it.
pub fn produce(broker: &KafkaBroker, topic: &str, partitions: i32, values: &[String], chunk: usize) -> Vec<(i32, i64)> {
    runtime().block_on(async {
        let client = ClientBuilder::new(vec![broker.bootstrap()])
            .build()
            .await
            .expect("a Kafka client");
        let mut clients = Vec::new();
        for partition in 0..partitions {
            clients.push(
                client
                    .partition_client(topic, partition, UnknownTopicHandling::Retry)
                    .await
                    .expect("a partition client"),
            );
        }
        let mut ends = Vec::new();
        for client in &clients {
            ends.push(client.get_offset(OffsetAt::Latest).await.expect("the partition's end"));
        }
        let mut landed = Vec::with_capacity(values.len());
        for (index, part) in values.chunks(chunk).enumerate() {
            let partition = (index % partitions as usize) as i32;
            let records = part
                .iter()
                .map(|value| Record {
                    key: Some(format!("k{}", landed.len() % 7).into_bytes()),
                    value: Some(value.clone().into_bytes()),
                    headers: BTreeMap::new(),
                    timestamp: chrono::Utc::now(),
                })
                .collect();
            let offsets = clients[partition as usize]
                .produce(records, Compression::NoCompression)
                .await
                .expect("produced");
            let end = &mut ends[partition as usize];
            let first = offsets.first().copied().unwrap_or(*end);
            landed.extend((*end..first).map(|copy| (partition, copy)));
            landed.extend(offsets.iter().map(|offset| (partition, *offset)));
            *end = offsets.last().map_or(*end, |last| last + 1);
        }
        landed
    })
}

/// The clickstream sink the streaming tests' jobs write (`partition`, `offset` columns,
/// partitioned by `section`): /// it has, and rows per section.
pub fn read_sink(ctx: SessionContext, url: &str) -> (usize, Offsets, BTreeMap<String, usize>) {
    runtime().block_on(async {
        ctx.register_parquet(
            "out",
            url,
            ParquetReadOptions::default().table_partition_cols(vec![(
                "section".to_string(),
                datafusion::arrow::datatypes::DataType::Utf8,
            )]),
        )
        .await
        .expect("the sink's files read");
        let batches = ctx
            .sql("SELECT \"partition\", \"offset\", section FROM out")
            .await
            .expect("plans")
            .collect()
            .await
            .expect("reads");
        let mut rows = 0;
        let mut offsets = Offsets::new();
        let mut sections: BTreeMap<String, usize> = BTreeMap::new();
        for batch in batches {
            let partitions = batch.column(0).as_any().downcast_ref::<Int32Array>().expect("int");
            let offs = batch.column(1).as_any().downcast_ref::<Int64Array>().expect("bigint");
            let section =
                datafusion::arrow::compute::cast(batch.column(2), &datafusion::arrow::datatypes::DataType::Utf8)
                    .expect("text");
            let section = section
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .expect("strings");
            for row in 0..batch.num_rows() {
                rows += 1;
                offsets.insert((partitions.value(row), offs.value(row)));
                *sections.entry(section.value(row).to_string()).or_default() += 1;
                assert!(!section.is_null(row));
            }
        }
        (rows, offsets, sections)
    })
}
