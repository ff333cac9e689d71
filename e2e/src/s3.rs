//! A real S3-compatible server for tests: versitygw with its POSIX backend, started by
//! `e2e/kglue-s3` (see docs/local-s3.md).
//!
//! Like [`ControlPlane`](crate::ControlPlane), each guard has its own state directory and a free
//! loopback port, so servers of parallel tests and a person's `kglue-s3 start` never collide. The
//! server is started with `--owner-pid`, so it also stops if the test process dies without
//! dropping the guard.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3, AmazonS3Builder};

use crate::{Error, run_script};

/// The root access key id every test server is started with.
pub const ACCESS_KEY: &str = "kglue";
/// The root secret access key every test server is started with.
pub const SECRET_KEY: &str = "kglue-secret-key";
/// The region the test servers expect in request signatures.
pub const REGION: &str = "us-east-1";

/// Test servers take ports from here, above the control planes' range (27000–30999).
const PORT_RANGE_START: u16 = 31000;
const PORT_RANGE_LEN: u16 = 1000;
/// How often `start` tries another port when the one it picked was taken in the meantime.
const START_ATTEMPTS: usize = 3;

/// Spreads the ports that the servers of one process pick, so that parallel tests rarely race
/// for the same port.
static NEXT_PORT_OFFSET: AtomicU16 = AtomicU16::new(0);

/// A running S3 server with one root user. Dropping it stops the server and deletes its state
/// directory, buckets and objects included.
pub struct S3Server {
    state_dir: PathBuf,
    port: u16,
    /// How long `start` took (the first start of a machine includes building versitygw).
    pub start_time: Duration,
}

impl S3Server {
    /// Builds versitygw if it is not cached, then starts a fresh, empty server on a free loopback
    /// port, owned by this process.
    pub fn start() -> Result<Self, Error> {
        let started = Instant::now();
        let mut server = start_on_free_port(
            |port| S3Server {
                state_dir: std::env::temp_dir().join(format!("kglue-e2e-s3-{}-{port}", std::process::id())),
                port,
                start_time: Duration::ZERO,
            },
            |server| server.script(&["start", "--owner-pid", &std::process::id().to_string()]),
        )?;
        server.start_time = started.elapsed();
        Ok(server)
    }

    /// The endpoint URL, `http://127.0.0.1:PORT` (path-style requests: `ENDPOINT/BUCKET/KEY`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root user's access key id.
    pub fn access_key(&self) -> &str {
        ACCESS_KEY
    }

    /// The root user's secret access key.
    pub fn secret_key(&self) -> &str {
        SECRET_KEY
    }

    /// The region the server expects in signatures.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The directory holding the server's state, logs and (under `data/`) its buckets.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The variables an AWS SDK, `object_store`'s `AmazonS3Builder::from_env` or a kglue pod needs
    /// to reach this server: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP`.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Creates a bucket. Creating one that exists already is not an error.
    pub fn create_bucket(&self, name: &str) -> Result<(), Error> {
        self.script(&["mb", name]).map(drop)
    }

    /// An `object_store` builder for `bucket` on this server, with the root credentials, path-style
    /// requests and plain http allowed. Change it (for example the secret) before `build()`.
    pub fn store_builder(&self, bucket: &str) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_virtual_hosted_style_request(false)
            .with_allow_http(true)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_region(REGION)
            .with_bucket_name(bucket)
    }

    /// An `object_store` client for `bucket` on this server (see [`S3Server::store_builder`]).
    pub fn store(&self, bucket: &str) -> Result<AmazonS3, Error> {
        Ok(self.store_builder(bucket).build()?)
    }

    fn script(&self, args: &[&str]) -> Result<String, Error> {
        run_script(
            "kglue-s3",
            args,
            &[
                ("KGLUE_S3_STATE", self.state_dir.display().to_string()),
                ("KGLUE_S3_PORT", self.port.to_string()),
                ("KGLUE_S3_ACCESS_KEY", ACCESS_KEY.to_string()),
                ("KGLUE_S3_SECRET_KEY", SECRET_KEY.to_string()),
                ("KGLUE_S3_REGION", REGION.to_string()),
            ],
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Err(error) = self.script(&["stop"]) {
            eprintln!("warning: stopping the S3 server failed: {error}");
        }
    }
}

/// A free loopback port in the test servers' range.
fn free_port() -> Result<u16, Error> {
    let len = u32::from(PORT_RANGE_LEN);
    let start = std::process::id() % len + u32::from(NEXT_PORT_OFFSET.fetch_add(7, Ordering::Relaxed));
    (0..len)
        .filter_map(|i| u16::try_from((start + i) % len).ok())
        .map(|offset| PORT_RANGE_START + offset)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .ok_or(Error::NoFreePorts)
}

/// Makes a server's guard for a free port (`guard`) and starts it (`start`), on another port when
/// another process took the one picked in the meantime. The guard exists before the start, so a
/// half-started server is stopped (its guard's `Drop`) when the start fails.
pub(crate) fn start_on_free_port<T>(
    guard: impl Fn(u16) -> T,
    start: impl Fn(&T) -> Result<String, Error>,
) -> Result<T, Error> {
    let mut attempt = 1;
    loop {
        let server = guard(free_port()?);
        match start(&server) {
            Ok(_) => return Ok(server),
            Err(Error::Script { ref output, .. }) if attempt < START_ATTEMPTS && output.contains("already in use") => {
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}
