//! A real Kafka broker for tests: Apache Kafka 4.4 (KRaft, one node) from Maven Central, started
//! by `e2e/kglue-kafka` on free loopback ports with its own state directory. The broker stops with
//! the guard, or with the test process (`--owner-pid`) if the guard is never dropped.

use std::path::PathBuf;

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
