//! The stores that serve object-store locations (`s3://bucket/prefix/`, `file:///path/`), one
//! client per store and Connection.
//!
//! A location names a bucket (or the local filesystem) and a prefix. How an `s3://` bucket is
//! reached comes from a Connection (endpoint, region, addressing style, credentials from a Secret)
//! or, without one, from the standard AWS environment variables, as the AWS tools do. Both rules
//! are the protocol's (`kglue_crds::protocol::storage`), shared with the operator; the runner
//! supplies the Secret values from the files mounted in its pod (`--secrets-dir`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kglue_crds::connection::ConnectionSpec;
pub use kglue_crds::protocol::storage::{Location, LocationError, Store};
use kglue_crds::protocol::storage::{SecretValues, s3_builder};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

use crate::multipart::S3Requests;

/// What can go wrong resolving a location to a store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL is not an object-store URL kglue understands.
    #[error(transparent)]
    InvalidUrl(#[from] LocationError),
    /// A location names a Connection that is not in the catalog.
    #[error("connection {0:?} is not defined (no Connection object with that name)")]
    UnknownConnection(String),
    /// A location names a Connection that does not reach an object store.
    #[error(
        "{url} names connection {connection:?}, which is a {kind} connection: an object-store location needs an s3 Connection"
    )]
    NotAnObjectStore {
        /// The location.
        url: String,
        /// The Connection.
        connection: String,
        /// Its type.
        kind: &'static str,
    },
    /// A database is named through a Connection that does not reach one.
    #[error(
        "{field} names connection {connection:?}, which is a {kind} connection: a database needs a jdbc Connection"
    )]
    NotADatabase {
        /// What named it.
        field: String,
        /// The Connection.
        connection: String,
        /// Its type.
        kind: &'static str,
    },
    /// A Kafka source names a Connection that does not reach Kafka.
    #[error("{field}: connection {connection} is a {kind} Connection, not kafka")]
    NotKafka {
        /// What named it.
        field: String,
        /// The Connection.
        connection: String,
        /// Its type.
        kind: &'static str,
    },
    /// A database's endpoint could not be resolved (its URL, Secret values, CA).
    #[error("{}", match source.as_ref() {
        kglue_jdbc::JdbcError::Secret(message) => message.clone(),
        other => format!("connection {connection:?}: {other}"),
    })]
    Database {
        /// The Connection.
        connection: String,
        /// The cause (boxed: errors of a database are large).
        source: Box<kglue_jdbc::JdbcError>,
    },
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
    /// A mounted Secret key exists but cannot be read (on a cluster: a Secret volume the pod's
    /// user may not read, when the pod has no `fsGroup`).
    #[error(
        "connection {connection:?}: cannot read {path}: {source} (in a cluster, the pod's securityContext.fsGroup must let the runner's user read its Secret volume)"
    )]
    UnreadableSecret {
        /// The Connection.
        connection: String,
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A local path outside what the run may touch (in the cluster: the operator's
    /// `--allow-local-path` list).
    #[error(
        "{url} is a local path, which runs in the cluster may not use{}; use an object store, or start the operator with --allow-local-path for a mounted volume",
        if allowed.is_empty() { String::new() } else { format!(" outside {}", allowed.join(", ")) }
    )]
    LocalPathRefused {
        /// The location.
        url: String,
        /// The paths allowed.
        allowed: Vec<String>,
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
    /// A key's value; `None` when the file does not exist. Any other failure (a file the runner's
    /// user may not read, say) is an error naming the file, not a missing key.
    fn read(&self, secret: &str, key: &str) -> Result<Option<String>, (PathBuf, std::io::Error)> {
        let path = self.0.join(secret).join(key);
        match std::fs::read_to_string(&path) {
            Ok(value) => Ok(Some(value.trim_end_matches(['\n', '\r']).to_string())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err((path, error)),
        }
    }
}

/// The mounted Secrets of one Connection.
pub(crate) struct ConnectionSecrets<'a> {
    pub(crate) connection: &'a str,
    pub(crate) dir: &'a SecretsDir,
}

impl SecretValues for ConnectionSecrets<'_> {
    type Error = StorageError;

    fn value(&mut self, secret: &str, key: &str) -> Result<Option<String>, StorageError> {
        self.dir
            .read(secret, key)
            .map_err(|(path, source)| StorageError::UnreadableSecret {
                connection: self.connection.to_string(),
                path: path.display().to_string(),
                source,
            })
    }

    fn missing(&self, secret: &str, key: &str) -> StorageError {
        StorageError::MissingSecret {
            connection: self.connection.to_string(),
            secret: secret.to_string(),
            key: key.to_string(),
            dir: self.dir.0.display().to_string(),
        }
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
    /// The local folders runs may use: `None` allows every one (the local CLI); in the cluster,
    /// only those the operator was told to allow.
    local_paths: Option<Vec<Location>>,
    connections: BTreeMap<String, ConnectionSpec>,
    secrets: SecretsDir,
    environment: Vec<(String, String)>,
    cache: Mutex<BTreeMap<StoreKey, Opened>>,
}

/// A store as opened: the object store, and for S3 the requests it does not make.
#[derive(Clone)]
struct Opened {
    store: Arc<dyn ObjectStore>,
    s3: Option<Arc<S3Requests>>,
}

impl StoreResolver {
    /// A resolver over the Connections of a catalog, with credentials from `credentials`.
    pub fn new(connections: BTreeMap<String, ConnectionSpec>, credentials: Credentials) -> Self {
        StoreResolver {
            local_paths: None,
            connections,
            secrets: credentials.secrets,
            environment: credentials.environment,
            cache: Mutex::default(),
        }
    }

    /// The Connections it resolves through, by name.
    pub fn connections(&self) -> &BTreeMap<String, ConnectionSpec> {
        &self.connections
    }

    /// The same resolver, opening local folders only inside `paths`.
    pub fn with_local_paths(mut self, paths: Vec<Location>) -> Self {
        self.local_paths = Some(paths);
        self
    }

    /// The store serving `location`, reached through `connection` when given.
    pub fn store(&self, location: &Location, connection: Option<&str>) -> Result<Arc<dyn ObjectStore>, StorageError> {
        Ok(self.open(location, connection)?.store)
    }

    /// The database endpoint of the `jdbc` Connection `connection` (named by `field`), with its
    /// credentials read from the mounted Secrets. Nothing is connected yet.
    pub fn database(&self, connection: &str, field: &str) -> Result<kglue_jdbc::Endpoint, StorageError> {
        let (jdbc, mut secrets) = self.typed(
            connection,
            |spec| spec.jdbc.as_ref(),
            |kind| StorageError::NotADatabase {
                field: field.into(),
                connection: connection.into(),
                kind,
            },
        )?;
        kglue_jdbc::Endpoint::resolve(jdbc, &mut secrets).map_err(|source| StorageError::Database {
            connection: connection.into(),
            source: Box::new(source),
        })
    }

    /// The Kafka endpoint of the `kafka` Connection `connection` (named by `field`), with its
    /// credentials and CA read from the mounted Secrets. Nothing is connected yet.
    pub fn kafka(&self, connection: &str, field: &str) -> Result<crate::etl::kafka::KafkaEndpoint, StorageError> {
        let (kafka, mut secrets) = self.typed(
            connection,
            |spec| spec.kafka.as_ref(),
            |kind| StorageError::NotKafka {
                field: field.into(),
                connection: connection.into(),
                kind,
            },
        )?;
        crate::etl::kafka::KafkaEndpoint::resolve(connection, kafka, &mut secrets)
    }

    /// The part `pick` takes of Connection `connection`, with its mounted Secrets; `wrong` makes
    /// the error for a Connection of another type (given that type).
    fn typed<'a, T>(
        &'a self,
        connection: &'a str,
        pick: impl FnOnce(&'a ConnectionSpec) -> Option<&'a T>,
        wrong: impl FnOnce(&'static str) -> StorageError,
    ) -> Result<(&'a T, ConnectionSecrets<'a>), StorageError> {
        let spec = self
            .connections
            .get(connection)
            .ok_or_else(|| StorageError::UnknownConnection(connection.into()))?;
        let part = pick(spec).ok_or_else(|| wrong(spec.kind()))?;
        Ok((
            part,
            ConnectionSecrets {
                connection,
                dir: &self.secrets,
            },
        ))
    }

    /// For an S3 location, the multipart requests object_store does not make (listing and
    /// aborting incomplete uploads, copying objects over 5 GiB); `None` for a local folder.
    pub fn s3_requests(
        &self,
        location: &Location,
        connection: Option<&str>,
    ) -> Result<Option<Arc<S3Requests>>, StorageError> {
        Ok(self.open(location, connection)?.s3)
    }

    fn open(&self, location: &Location, connection: Option<&str>) -> Result<Opened, StorageError> {
        if location.store == Store::File
            && let Some(allowed) = &self.local_paths
            && !allowed.iter().any(|path| path.holds(location))
        {
            return Err(StorageError::LocalPathRefused {
                url: location.url_of(&location.prefix),
                allowed: allowed.iter().map(|p| p.url_of(&p.prefix)).collect(),
            });
        }
        let key = (location.store.clone(), connection.map(str::to_string));
        // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(opened) = cache.get(&key) {
            return Ok(opened.clone());
        }
        let opened = match &location.store {
            Store::File => Opened {
                store: Arc::new(LocalFileSystem::new()),
                s3: None,
            },
            Store::S3 { bucket } => {
                let s3 = match connection {
                    Some(name) => {
                        let spec = self
                            .connections
                            .get(name)
                            .ok_or_else(|| StorageError::UnknownConnection(name.into()))?;
                        let Some(s3) = &spec.s3 else {
                            return Err(StorageError::NotAnObjectStore {
                                url: location.to_string(),
                                connection: name.into(),
                                kind: spec.kind(),
                            });
                        };
                        Some(s3)
                    }
                    None => None,
                };
                let mut secrets = ConnectionSecrets {
                    connection: connection.unwrap_or_default(),
                    dir: &self.secrets,
                };
                let builder = s3_builder(bucket, s3, &self.environment, &mut secrets)?;
                let open_error = |source: object_store::Error| StorageError::Open {
                    url: location.to_string(),
                    source: Box::new(source),
                };
                let store = Arc::new(builder.clone().build().map_err(open_error)?);
                let requests = S3Requests::new(&builder, store.clone()).map_err(open_error)?;
                Opened {
                    store,
                    s3: Some(Arc::new(requests)),
                }
            }
        };
        cache.insert(key, opened.clone());
        Ok(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

        // A key that exists but cannot be read is named as such, not reported missing (as root,
        // a directory where the file should be stands in for a file the user may not read).
        std::fs::create_dir_all(dir.path().join("lake-credentials/AWS_ACCESS_KEY_ID")).expect("mkdir");
        let error = resolver
            .store(&location, Some("lake"))
            .expect_err("unreadable")
            .to_string();
        assert!(
            error.contains("cannot read")
                && error.contains("lake-credentials/AWS_ACCESS_KEY_ID")
                && error.contains("fsGroup"),
            "{error}"
        );
    }

    #[test]
    fn a_database_connection_serves_no_object_store_location() {
        let connection: ConnectionSpec = serde_json::from_value(serde_json::json!({
            "jdbc": {"url": "jdbc:postgresql://db/sales", "credentialsSecretRef": {"name": "sales-db"}}
        }))
        .expect("valid connection");
        let resolver = StoreResolver::new(
            BTreeMap::from([("sales-db".to_string(), connection)]),
            Credentials::default(),
        );
        let location: Location = "s3://bucket/x".parse().expect("valid");
        let error = resolver
            .store(&location, Some("sales-db"))
            .expect_err("a jdbc connection")
            .to_string();
        assert_eq!(
            error,
            "s3://bucket/x names connection \"sales-db\", which is a jdbc connection: an object-store location needs an s3 Connection"
        );
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

    #[test]
    fn in_the_cluster_local_paths_are_refused_outside_the_allowed_folders() {
        let resolver = StoreResolver::new(
            BTreeMap::new(),
            Credentials {
                secrets: SecretsDir(PathBuf::from("/nonexistent")),
                environment: Vec::new(),
            },
        )
        .with_local_paths(vec!["file:///mnt/data/".parse().expect("a location")]);
        let inside: Location = "file:///mnt/data/orders/".parse().expect("a location");
        assert!(resolver.store(&inside, None).is_ok());
        let token: Location = "file:///var/run/secrets/kubernetes.io/serviceaccount/"
            .parse()
            .expect("a location");
        let error = resolver
            .store(&token, None)
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        assert!(
            error.starts_with("file:///var/run/secrets/kubernetes.io/serviceaccount is a local path, which runs in the cluster may not use outside file:///mnt/data"),
            "{error}"
        );
    }
}
