//! Object-store locations (`s3://bucket/prefix/`, `file:///path/`) and the stores that serve them.
//!
//! A location names a bucket (or the local filesystem) and a prefix. How an `s3://` bucket is
//! reached comes from a Connection (endpoint, region, addressing style, credentials from a Secret)
//! or, without one, from the standard AWS environment variables, as the AWS tools do.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kglue_crds::connection::{ConnectionSpec, S3Connection};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

/// What can go wrong resolving a location to a store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL is not an object-store URL kglue understands.
    #[error("{url:?} is not a storage location: {reason} (expected s3://bucket/prefix/ or file:///absolute/path/)")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A location names a Connection that is not in the catalog.
    #[error("connection {0:?} is not defined (no Connection object with that name)")]
    UnknownConnection(String),
    /// A Connection refers to a Secret key that is not available to the runner.
    #[error(
        "connection {connection:?}: secret {secret:?} has no key {key:?} in {dir} (the Secret must exist and be given to the run)"
    )]
    MissingSecret {
        /// The Connection.
        connection: String,
        /// The Secret's name.
        secret: String,
        /// The missing key.
        key: String,
        /// Where secrets are read from.
        dir: String,
    },
    /// The object-store client could not be built.
    #[error("cannot open {url}: {source}")]
    Open {
        /// The location.
        url: String,
        /// The cause (boxed: object-store errors are large).
        source: Box<object_store::Error>,
    },
}

/// Where a location lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Store {
    /// An S3 or S3-compatible bucket.
    S3 {
        /// The bucket name.
        bucket: String,
    },
    /// The local filesystem.
    File,
}

/// A parsed storage location: a store and a prefix inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The bucket or filesystem.
    pub store: Store,
    /// The prefix within the store (for files: the absolute path without its leading `/`).
    pub prefix: Path,
}

impl FromStr for Location {
    type Err = StorageError;

    fn from_str(url: &str) -> Result<Self, StorageError> {
        let invalid = |reason: &str| StorageError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = url.strip_prefix("s3://").or_else(|| url.strip_prefix("s3a://")) {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.len() < 3 || bucket.len() > 63 {
                return Err(invalid("a bucket name has 3 to 63 characters"));
            }
            if !bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            {
                return Err(invalid("a bucket name has only lowercase letters, digits, '-' and '.'"));
            }
            let prefix = Path::parse(key.trim_end_matches('/')).map_err(|e| invalid(&e.to_string()))?;
            Ok(Location {
                store: Store::S3 {
                    bucket: bucket.to_string(),
                },
                prefix,
            })
        } else if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid("a file URL needs an absolute path: file:///…"));
            }
            let prefix = Path::parse(path.trim_matches('/')).map_err(|e| invalid(&e.to_string()))?;
            Ok(Location {
                store: Store::File,
                prefix,
            })
        } else {
            Err(invalid("unknown scheme"))
        }
    }
}

impl Location {
    /// A location for a local directory.
    pub fn from_directory(dir: &FsPath) -> Result<Self, StorageError> {
        let absolute = std::path::absolute(dir).map_err(|e| StorageError::InvalidUrl {
            url: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        format!("file://{}", absolute.display()).parse()
    }

    /// The URL of an object (or sub-prefix) of this location's store.
    pub fn url_of(&self, path: &Path) -> String {
        match &self.store {
            Store::S3 { bucket } => format!("s3://{bucket}/{path}"),
            Store::File => format!("file:///{path}"),
        }
    }

    /// Whether `path` is this location's prefix or below it.
    pub fn contains(&self, path: &Path) -> bool {
        path.prefix_matches(&self.prefix)
    }

    /// `path` relative to the prefix, as `a/b/file.csv` (empty for the prefix itself).
    pub fn relative(&self, path: &Path) -> Option<Vec<String>> {
        path.prefix_match(&self.prefix)
            .map(|parts| parts.map(|p| p.as_ref().to_string()).collect())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.url_of(&self.prefix))
    }
}

/// Where the runner finds the Secret values a Connection refers to: one directory per Secret,
/// one file per key (`<dir>/<secret>/<key>`), which is how Kubernetes mounts a Secret volume and
/// how `--secrets-dir` is laid out locally.
#[derive(Debug, Clone)]
pub struct SecretsDir(pub PathBuf);

impl Default for SecretsDir {
    fn default() -> Self {
        SecretsDir(PathBuf::from("/var/run/secrets/kglue"))
    }
}

impl SecretsDir {
    fn read(&self, secret: &str, key: &str) -> Option<String> {
        let value = std::fs::read_to_string(self.0.join(secret).join(key)).ok()?;
        Some(value.trim_end_matches(['\n', '\r']).to_string())
    }
}

/// A store reached through a connection (or the AWS environment when `None`).
type StoreKey = (Store, Option<String>);

/// Where credentials come from: the Secrets a Connection names, and the standard `AWS_*`
/// environment variables for locations reached without a Connection (and as defaults under one).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The mounted Secrets.
    pub secrets: SecretsDir,
    /// The environment, as `(name, value)` pairs; only `AWS_*` names are read.
    pub environment: Vec<(String, String)>,
}

impl Credentials {
    /// Secrets from `secrets`, environment from this process.
    pub fn from_process(secrets: SecretsDir) -> Self {
        Credentials {
            secrets,
            environment: std::env::vars().collect(),
        }
    }
}

/// Opens and caches stores for locations, one client per (store, connection).
pub struct StoreResolver {
    connections: BTreeMap<String, ConnectionSpec>,
    secrets: SecretsDir,
    environment: Vec<(String, String)>,
    cache: Mutex<BTreeMap<StoreKey, Arc<dyn ObjectStore>>>,
}

impl StoreResolver {
    /// A resolver over the Connections of a catalog, with credentials from `credentials`.
    pub fn new(connections: BTreeMap<String, ConnectionSpec>, credentials: Credentials) -> Self {
        StoreResolver {
            connections,
            secrets: credentials.secrets,
            environment: credentials.environment,
            cache: Mutex::default(),
        }
    }

    /// The store serving `location`, reached through `connection` when given.
    pub fn store(&self, location: &Location, connection: Option<&str>) -> Result<Arc<dyn ObjectStore>, StorageError> {
        let key = (location.store.clone(), connection.map(str::to_string));
        // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = cache.get(&key) {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = match &location.store {
            Store::File => Arc::new(LocalFileSystem::new()),
            Store::S3 { bucket } => {
                let s3 = match connection {
                    Some(name) => {
                        let spec = self
                            .connections
                            .get(name)
                            .ok_or_else(|| StorageError::UnknownConnection(name.into()))?;
                        spec.s3.as_ref().map(|s3| (name, s3))
                    }
                    None => None,
                };
                let builder = self.s3_builder(bucket, s3)?;
                Arc::new(builder.build().map_err(|source| StorageError::Open {
                    url: location.to_string(),
                    source: Box::new(source),
                })?)
            }
        };
        cache.insert(key, store.clone());
        Ok(store)
    }

    fn s3_builder(
        &self,
        bucket: &str,
        connection: Option<(&str, &S3Connection)>,
    ) -> Result<AmazonS3Builder, StorageError> {
        // Fail fast on an unreachable endpoint: the default retries would hide it for minutes.
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(20),
            ..RetryConfig::default()
        };
        let client = ClientOptions::new().with_connect_timeout(Duration::from_secs(5));
        // Client options first: with_client_options replaces them whole, and the environment may
        // set some of them (AWS_ALLOW_HTTP). Then the environment, as AmazonS3Builder::from_env
        // reads it, but from the given variables rather than the process's.
        let mut builder = AmazonS3Builder::new().with_client_options(client).with_retry(retry);
        for (key, value) in self.environment.iter().filter(|(key, _)| key.starts_with("AWS_")) {
            if let Ok(config) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(config, value);
            }
        }
        builder = builder.with_bucket_name(bucket);
        let Some((name, s3)) = connection else {
            return Ok(builder);
        };
        if let Some(endpoint) = &s3.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(!s3.force_path_style);
        }
        builder = builder.with_region(s3.region.as_deref().unwrap_or("us-east-1"));
        if let Some(secret) = &s3.credentials_secret_ref {
            let read = |key: Option<&String>, default: &str| {
                let key = key.map(String::as_str).unwrap_or(default);
                self.secrets
                    .read(&secret.name, key)
                    .ok_or_else(|| StorageError::MissingSecret {
                        connection: name.to_string(),
                        secret: secret.name.clone(),
                        key: key.to_string(),
                        dir: self.secrets.0.display().to_string(),
                    })
            };
            builder = builder
                .with_access_key_id(read(secret.access_key_id_key.as_ref(), "AWS_ACCESS_KEY_ID")?)
                .with_secret_access_key(read(secret.secret_access_key_key.as_ref(), "AWS_SECRET_ACCESS_KEY")?);
            // A session token is optional unless its key was named explicitly.
            match &secret.session_token_key {
                Some(key) => builder = builder.with_token(read(Some(key), "")?),
                None => {
                    if let Some(token) = self.secrets.read(&secret.name, "AWS_SESSION_TOKEN") {
                        builder = builder.with_token(token);
                    }
                }
            }
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_and_file_locations() {
        let s3: Location = "s3://sales-landing/orders/dt=2024-01-01/".parse().expect("valid");
        assert_eq!(
            s3.store,
            Store::S3 {
                bucket: "sales-landing".into()
            }
        );
        assert_eq!(s3.prefix.as_ref(), "orders/dt=2024-01-01");
        assert_eq!(s3.to_string(), "s3://sales-landing/orders/dt=2024-01-01");

        let s3a: Location = "s3a://bucket/x".parse().expect("valid");
        assert_eq!(s3a.to_string(), "s3://bucket/x");

        let root: Location = "s3://bucket".parse().expect("valid");
        assert_eq!(root.prefix.as_ref(), "");

        let file: Location = "file:///tmp/data/".parse().expect("valid");
        assert_eq!(file.store, Store::File);
        assert_eq!(file.prefix.as_ref(), "tmp/data");
        assert_eq!(file.to_string(), "file:///tmp/data");
    }

    #[test]
    fn refuses_bad_locations_with_a_reason() {
        for (url, reason) in [
            ("http://bucket/x", "unknown scheme"),
            ("s3://ab/x", "3 to 63 characters"),
            ("s3://Bucket/x", "lowercase"),
            ("file://relative/path", "absolute path"),
            ("orders/", "unknown scheme"),
        ] {
            let error = url.parse::<Location>().expect_err(url).to_string();
            assert!(error.contains(reason) && error.contains(url), "{url}: {error}");
        }
    }

    #[test]
    fn relative_paths_below_the_prefix() {
        let location: Location = "s3://bucket/orders/".parse().expect("valid");
        let key = Path::from("orders/dt=2024-01-01/part-0.csv");
        assert!(location.contains(&key));
        assert_eq!(
            location.relative(&key),
            Some(vec!["dt=2024-01-01".to_string(), "part-0.csv".to_string()])
        );
        assert!(!location.contains(&Path::from("ordersX/a.csv")));
    }

    #[test]
    fn a_missing_secret_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let connection: ConnectionSpec = serde_json::from_value(serde_json::json!({
            "s3": {"endpoint": "http://127.0.0.1:1", "credentialsSecretRef": {"name": "lake-credentials"}}
        }))
        .expect("valid connection");
        let resolver = StoreResolver::new(
            BTreeMap::from([("lake".to_string(), connection)]),
            Credentials {
                secrets: SecretsDir(dir.path().to_path_buf()),
                environment: Vec::new(),
            },
        );
        let location: Location = "s3://bucket/x".parse().expect("valid");
        let error = resolver
            .store(&location, Some("lake"))
            .expect_err("no secret")
            .to_string();
        assert!(
            error.contains("\"lake-credentials\" has no key \"AWS_ACCESS_KEY_ID\""),
            "{error}"
        );

        let error = resolver
            .store(&location, Some("other"))
            .expect_err("unknown")
            .to_string();
        assert!(error.contains("connection \"other\" is not defined"), "{error}");
    }

    #[test]
    fn secrets_are_read_from_one_file_per_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("lake-credentials")).expect("mkdir");
        for (key, value) in [("AWS_ACCESS_KEY_ID", "id\n"), ("AWS_SECRET_ACCESS_KEY", "secret")] {
            std::fs::write(dir.path().join("lake-credentials").join(key), value).expect("write");
        }
        let connection: ConnectionSpec = serde_json::from_value(serde_json::json!({
            "s3": {"endpoint": "http://127.0.0.1:1", "forcePathStyle": true, "credentialsSecretRef": {"name": "lake-credentials"}}
        }))
        .expect("valid connection");
        let resolver = StoreResolver::new(
            BTreeMap::from([("lake".to_string(), connection)]),
            Credentials {
                secrets: SecretsDir(dir.path().to_path_buf()),
                environment: Vec::new(),
            },
        );
        let location: Location = "s3://bucket/x".parse().expect("valid");
        let first = resolver.store(&location, Some("lake")).expect("store builds");
        let second = resolver.store(&location, Some("lake")).expect("store builds");
        assert!(Arc::ptr_eq(&first, &second), "one client per bucket and connection");
    }
}
