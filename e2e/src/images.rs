//! The project's OCI images (built by `e2e/kglue-images build`) and a local registry for the suites
//! that run them: go-containerregistry's registry (`crane registry serve`) on 127.0.0.1, with its
//! blobs on disk under the suite's state directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, run_script};

/// The directory of crane, runc and kglue-image (`e2e/kglue-images tools`).
pub fn images_bin_dir() -> Result<PathBuf, Error> {
    Ok(PathBuf::from(run_script("kglue-images", &["bin-dir"], &[])?.trim()))
}

/// Where `e2e/kglue-images build` left the images: `$KGLUE_IMAGES_DIR`, else the dev profile's
/// default output (the test command builds them there before `cargo test`).
pub fn built_images_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KGLUE_IMAGES_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("KGLUE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kglue"));
    cache.join("images/dev")
}

/// The two images as pushed: `127.0.0.1:PORT/kglue/NAME@sha256:…`.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The runner's repository in the local registry.
    pub runner_repository: String,
    /// The runner's manifest digest.
    pub runner_digest: String,
    /// The operator's repository in the local registry.
    pub operator_repository: String,
    /// The operator's manifest digest.
    pub operator_digest: String,
}

/// A running local registry; dropping it stops it.
pub struct LocalRegistry {
    child: Child,
    address: String,
}

impl LocalRegistry {
    /// Starts `crane registry serve` on a free loopback port, keeping blobs under `dir`, and waits
    /// until it answers `/v2/`.
    pub fn start(crane: &Path, dir: &Path) -> Result<LocalRegistry, Error> {
        let spawn_error = |source| Error::Spawn {
            what: format!("{} registry serve", crane.display()),
            source,
        };
        std::fs::create_dir_all(dir.join("blobs")).map_err(spawn_error)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|_| Error::NoFreePorts)?
            .port();
        let address = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("registry.log")).map_err(spawn_error)?;
        let child = Command::new(crane)
            .args(["registry", "serve", "--address", &address, "--disk"])
            .arg(dir.join("blobs"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(spawn_error)?)
            .stderr(log)
            .spawn()
            .map_err(spawn_error)?;
        let registry = LocalRegistry { child, address };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !registry.answers() {
            if Instant::now() > deadline {
                return Err(Error::Script {
                    script: "crane registry serve".into(),
                    command: registry.address.clone(),
                    status: "no answer on /v2/ within 20 s".into(),
                    output: std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(registry)
    }

    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(&self.address) else {
            return false;
        };
        let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.address);
        let mut response = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut response).is_ok()
            && response.starts_with("HTTP/1.0 200")
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Pushes the images `e2e/kglue-images build` left in `images` (`kglue-images push`).
    pub fn push_images(&self, images: &Path) -> Result<Pushed, Error> {
        let out = images.display().to_string();
        let printed = run_script(
            "kglue-images",
            &["push", "--registry", &self.address, "--out", &out],
            &[],
        )?;
        let find = |name: &str| -> Result<(String, String), Error> {
            printed
                .split_whitespace()
                .filter_map(|word| word.split_once('@'))
                .find(|(repository, digest)| repository.ends_with(name) && digest.starts_with("sha256:"))
                .map(|(repository, digest)| (repository.to_string(), digest.to_string()))
                .ok_or_else(|| Error::Script {
                    script: "kglue-images".into(),
                    command: format!("push --registry {}", self.address),
                    status: format!("printed no {name}@sha256:… reference"),
                    output: printed.clone(),
                })
        };
        let (runner_repository, runner_digest) = find("/kglue-runner")?;
        let (operator_repository, operator_digest) = find("/kglue-operator")?;
        Ok(Pushed {
            runner_repository,
            runner_digest,
            operator_repository,
            operator_digest,
        })
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
