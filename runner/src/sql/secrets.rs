//! The Secrets a namespace's Connections name, for `kglue sql -n`: read with the user's own
//! credentials and copied into a folder laid out as a mounted Secret volume (`<secret>/<key>`),
//! so the session reaches storage exactly as a run's pod does. The folder is private to the user
//! (0700, files 0600) and removed when the session ends.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::catalog::DirCatalog;

/// The copy, alive as long as the session.
pub struct SecretsCopy {
    /// The folder (removed on drop).
    pub dir: tempfile::TempDir,
    /// Secrets that could not be read, one sentence each: tables through their Connection fail.
    pub unreadable: Vec<String>,
}

/// Why the Secrets could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum SecretsCopyError {
    /// The private folder could not be made or written.
    #[error("copying the namespace's Secrets into a private folder: {0}")]
    Io(#[from] std::io::Error),
    /// The API server failed (other than a refusal to read one Secret).
    #[error("reading Secret {secret}: {source}")]
    Cluster {
        /// The Secret.
        secret: String,
        /// The cause.
        source: Box<kube::Error>,
    },
}

/// Copies every Secret the Connections of `catalog` name, from `namespace`.
pub async fn copy_secrets(
    client: &kube::Client,
    namespace: &str,
    catalog: &DirCatalog,
) -> Result<SecretsCopy, SecretsCopyError> {
    let dir = tempfile::Builder::new().prefix("kglue-sql-secrets-").tempdir()?;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut copied = BTreeSet::new();
    let mut unreadable = Vec::new();
    for (connection, spec) in catalog.connections() {
        for used in spec.secret_keys() {
            if !copied.insert(used.secret.clone()) {
                continue;
            }
            let secret = match api.get_opt(&used.secret).await {
                Ok(Some(secret)) => secret,
                Ok(None) => {
                    unreadable.push(format!(
                        "Secret {} (named by Connection {connection}, {}) does not exist; tables through {connection} cannot be read",
                        used.secret, used.field
                    ));
                    continue;
                }
                Err(kube::Error::Api(status)) if status.code == 403 => {
                    unreadable.push(format!(
                        "you may not read Secret {} (named by Connection {connection}); tables through {connection} cannot be read",
                        used.secret
                    ));
                    continue;
                }
                Err(source) => {
                    return Err(SecretsCopyError::Cluster {
                        secret: used.secret.clone(),
                        source: Box::new(source),
                    });
                }
            };
            let folder = dir.path().join(&used.secret);
            std::fs::create_dir_all(&folder)?;
            for (key, value) in secret.data.unwrap_or_default() {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(folder.join(&key))?;
                file.write_all(&value.0)?;
            }
        }
    }
    Ok(SecretsCopy { dir, unreadable })
}
