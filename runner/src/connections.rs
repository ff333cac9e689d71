//! `kglue connection test NAME`: connect to a `jdbc` Connection exactly as a run will (its URL,
//! the user and password from its Secret, its TLS mode and timeouts) and report what was reached,
//! or why not — Glue's "Test connection". The Connection and its Secrets come from a catalog
//! directory (`--catalog`, Secrets from the secrets folder as a run's pod has them) or from a
//! namespace of the cluster (read with the caller's own credentials, which must allow reading the
//! Secrets; a Secret without the consent label is refused as runs refuse it).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use kglue_crds::Connection;
use kglue_crds::connection::{ConnectionSpec, SECRET_CONSENT_LABEL, SECRET_CONSENT_VALUE, secret_consents};
use kglue_crds::protocol::storage::SecretValues;
use kglue_jdbc::{Endpoint, JdbcError, Reached, probe};
use kube::api::Api;

use crate::catalog::{CatalogError, DirCatalog};
use crate::storage::{ConnectionSecrets, SecretsDir};

/// Why a connection test could not be made or failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionTestError {
    /// The catalog directory does not load.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// No Connection has that name.
    #[error("connection {name:?} is not defined{where_}")]
    NotFound {
        /// The name asked for.
        name: String,
        /// Where it was looked for.
        where_: String,
    },
    /// The Connection reaches an object store, not a database.
    #[error(
        "connection {0:?} is an s3 connection: `kglue connection test` reaches databases (jdbc); an object store is reached by `kglue crawl --dry-run`"
    )]
    NotADatabase(String),
    /// Reading from the cluster failed.
    #[error("reading {what} from the cluster: {source}")]
    Cluster {
        /// What was read.
        what: String,
        /// The cause.
        source: kube::Error,
    },
    /// The database was not reached. (A missing Secret key names the Connection itself.)
    #[error("{}", match source {
        JdbcError::Secret(message) => message.clone(),
        other => format!("connection {name:?}: {other}"),
    })]
    Database {
        /// The Connection.
        name: String,
        /// What went wrong.
        source: JdbcError,
    },
}

/// Tests Connection `name` of the catalog directory `catalog`, with Secrets from `secrets`.
pub async fn test_in_dir(catalog: &Path, name: &str, secrets: &SecretsDir) -> Result<Reached, ConnectionTestError> {
    let catalog = DirCatalog::load(catalog)?;
    let spec = catalog
        .connections()
        .get(name)
        .ok_or_else(|| ConnectionTestError::NotFound {
            name: name.into(),
            where_: format!(" in {}", catalog.dir().display()),
        })?;
    let mut values = ConnectionSecrets {
        connection: name,
        dir: secrets,
    };
    test(name, spec, &mut values).await
}

/// Tests Connection `name` of `namespace`, reading it and its Secrets with `client`.
pub async fn test_in_cluster(
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Reached, ConnectionTestError> {
    let connection = Api::<Connection>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| ConnectionTestError::Cluster {
            what: format!("Connection {name}"),
            source,
        })?
        .ok_or_else(|| ConnectionTestError::NotFound {
            name: name.into(),
            where_: format!(" in namespace {namespace}"),
        })?;
    let secrets_api: Api<Secret> = Api::namespaced(client, namespace);
    let mut secrets = BTreeMap::new();
    for used in connection.spec.secret_keys() {
        if secrets.contains_key(&used.secret) {
            continue;
        }
        let secret = secrets_api
            .get_opt(&used.secret)
            .await
            .map_err(|source| ConnectionTestError::Cluster {
                what: format!("Secret {} (named by {})", used.secret, used.field),
                source,
            })?;
        secrets.insert(used.secret.clone(), secret);
    }
    let mut values = ClusterSecrets {
        connection: name.to_string(),
        secrets,
    };
    test(name, &connection.spec, &mut values).await
}

async fn test<S: SecretValues>(
    name: &str,
    spec: &ConnectionSpec,
    secrets: &mut S,
) -> Result<Reached, ConnectionTestError>
where
    S::Error: std::fmt::Display,
{
    let Some(jdbc) = &spec.jdbc else {
        return Err(ConnectionTestError::NotADatabase(name.into()));
    };
    let database = |source| ConnectionTestError::Database {
        name: name.into(),
        source,
    };
    let endpoint = Endpoint::resolve(jdbc, secrets).map_err(database)?;
    probe(&endpoint).await.map_err(database)
}

/// The Secrets of a namespace as the caller may read them; `None`: it does not exist.
struct ClusterSecrets {
    connection: String,
    secrets: BTreeMap<String, Option<Secret>>,
}

impl SecretValues for ClusterSecrets {
    type Error = String;

    fn value(&mut self, secret: &str, key: &str) -> Result<Option<String>, String> {
        let Some(Some(found)) = self.secrets.get(secret) else {
            return Err(format!(
                "connection {:?}: Secret {secret:?} does not exist in this namespace",
                self.connection
            ));
        };
        if !secret_consents(found.metadata.labels.as_ref()) {
            return Err(format!(
                "connection {:?}: Secret {secret:?} does not let Connections use it: label it {SECRET_CONSENT_LABEL}={SECRET_CONSENT_VALUE}; runs do not mount it",
                self.connection
            ));
        }
        let from_data = found.data.as_ref().and_then(|data| data.get(key)).map(|bytes| {
            String::from_utf8_lossy(&bytes.0)
                .trim_end_matches(['\n', '\r'])
                .to_string()
        });
        Ok(from_data.or_else(|| found.string_data.as_ref().and_then(|data| data.get(key)).cloned()))
    }

    fn missing(&self, secret: &str, key: &str) -> String {
        format!("connection {:?}: Secret {secret:?} has no key {key:?}", self.connection)
    }
}
