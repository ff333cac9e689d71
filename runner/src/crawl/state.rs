//! What a crawler records between crawls, below `<spec.state.location>/<crawler name>/`:
//!
//! - `folders/<target>.json`: the folders (relative to the target) that crawls have read, which
//!   `recrawlPolicy: CrawlNewFoldersOnly` skips next time;
//! - `partitions/<database>.<table>.json`: every partition of a table, the index object that
//!   `Table.status.partitions.index` points to (a Table itself only holds a bounded summary).
//!
//! Records are written only after the tables are, so a failed crawl never marks folders as done.

use std::collections::BTreeSet;
use std::sync::Arc;

use kglue_crds::crawler::CrawlerState;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::storage::{Location, StorageError, StoreResolver};

/// What can go wrong reading or writing records.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state location is unusable.
    #[error("state location: {0}")]
    Storage(#[from] StorageError),
    /// Reading or writing a record failed.
    #[error("record {url}: {source}")]
    Store {
        /// The record.
        url: String,
        /// The cause.
        source: Box<object_store::Error>,
    },
    /// A record is not what kglue wrote.
    #[error("record {url} is not a kglue crawl record: {message}")]
    Corrupt {
        /// The record.
        url: String,
        /// The parser's message.
        message: String,
    },
}

/// A crawler's record store.
#[derive(Debug, Clone)]
pub struct CrawlState {
    store: Arc<dyn ObjectStore>,
    root: Location,
}

impl CrawlState {
    /// The records of crawler `crawler` under `state`.
    pub fn open(resolver: &StoreResolver, state: &CrawlerState, crawler: &str) -> Result<Self, StateError> {
        let base: Location = state.location.parse().map_err(StorageError::from)?;
        let store = resolver.store(&base, state.connection.as_deref())?;
        let root = Location {
            store: base.store,
            prefix: base.prefix.clone().join(crawler),
        };
        Ok(CrawlState { store, root })
    }

    fn key(&self, folder: &str, name: &str) -> Path {
        self.root.prefix.clone().join(folder).join(name)
    }

    /// The folders crawls have read under `target` (none when nothing was recorded yet).
    pub async fn crawled_folders(&self, target: &str) -> Result<BTreeSet<String>, StateError> {
        Ok(self
            .read(&self.key("folders", &record_name(target)))
            .await?
            .unwrap_or_default())
    }

    /// Records the folders read under `target`.
    pub async fn record_folders(&self, target: &str, folders: &BTreeSet<String>) -> Result<(), StateError> {
        self.write(&self.key("folders", &record_name(target)), folders)
            .await
            .map(|_| ())
    }

    /// Every partition recorded in an index object (`url` as a Table's status gives it).
    pub async fn partitions(&self, url: &str) -> Result<BTreeSet<Vec<String>>, StateError> {
        let location: Location = url.parse().map_err(StorageError::from)?;
        Ok(self.read(&location.prefix).await?.unwrap_or_default())
    }

    /// The partitions an index object lists, read from `store` (the store that holds `url`);
    /// `None` when there is no such object.
    pub async fn read_index(
        store: Arc<dyn ObjectStore>,
        url: &str,
    ) -> Result<Option<BTreeSet<Vec<String>>>, StateError> {
        let root: Location = url.parse().map_err(StorageError::from)?;
        let key = root.prefix.clone();
        CrawlState { store, root }.read(&key).await
    }

    /// Writes a table's partition index; returns its URL.
    pub async fn write_index(
        &self,
        database: &str,
        table: &str,
        partitions: &BTreeSet<Vec<String>>,
    ) -> Result<String, StateError> {
        self.write(&self.key("partitions", &format!("{database}.{table}.json")), partitions)
            .await
    }

    async fn read<T: serde::de::DeserializeOwned>(&self, key: &Path) -> Result<Option<T>, StateError> {
        let url = self.root.url_of(key);
        let bytes = match self.store.get(key).await {
            Ok(result) => result.bytes().await.map_err(|e| StateError::Store {
                url: url.clone(),
                source: Box::new(e),
            })?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => {
                return Err(StateError::Store {
                    url,
                    source: Box::new(e),
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                url,
                message: e.to_string(),
            })
    }

    async fn write<T: serde::Serialize>(&self, key: &Path, value: &T) -> Result<String, StateError> {
        let url = self.root.url_of(key);
        let bytes = serde_json::to_vec(value).map_err(|e| StateError::Corrupt {
            url: url.clone(),
            message: e.to_string(),
        })?;
        self.store
            .put(key, PutPayload::from(bytes))
            .await
            .map_err(|e| StateError::Store {
                url: url.clone(),
                source: Box::new(e),
            })?;
        Ok(url)
    }
}

/// A file name for a target's record: its URL with everything but letters and digits as `_`.
fn record_name(target: &str) -> String {
    let name: String = target
        .trim_end_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    format!("{name}.json")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::storage::Credentials;

    #[tokio::test]
    async fn records_round_trip_and_start_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let resolver = StoreResolver::new(BTreeMap::new(), Credentials::default());
        let spec = CrawlerState {
            location: format!("file://{}/state/", dir.path().display()),
            connection: None,
        };
        let state = CrawlState::open(&resolver, &spec, "landing").expect("opens");

        assert!(
            state
                .crawled_folders("s3://bucket/orders/")
                .await
                .expect("empty")
                .is_empty()
        );
        let folders = BTreeSet::from(["dt=2024-01-01".to_string()]);
        state
            .record_folders("s3://bucket/orders/", &folders)
            .await
            .expect("recorded");
        assert_eq!(
            state.crawled_folders("s3://bucket/orders/").await.expect("read"),
            folders
        );
        assert!(
            dir.path()
                .join("state/landing/folders/s3___bucket_orders.json")
                .exists()
        );

        let partitions = BTreeSet::from([vec!["2024-01-01".to_string()], vec!["2024-01-02".to_string()]]);
        let url = state.write_index("raw", "orders", &partitions).await.expect("written");
        assert_eq!(
            url,
            format!(
                "file://{}/state/landing/partitions/raw.orders.json",
                dir.path().display()
            )
        );
        assert_eq!(state.partitions(&url).await.expect("read"), partitions);
    }
}
