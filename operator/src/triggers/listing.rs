//! Listing an Event trigger's prefix. The operator reads object names and modification times
//! only, never data, through the Connection the trigger names (its endpoint and the access key in
//! its Secret) or, without one, the standard AWS environment of the operator's pod.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kglue_crds::Connection;
use kglue_crds::protocol::storage::{Location, SecretValues, Store, s3_builder};
use kglue_crds::trigger::EventSource;
use kube::Client;
use kube::api::Api;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use super::decide::Listed;

/// The longest one listing may take.
pub const LISTING_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether an object is data rather than a marker or a file being written: names starting with
/// `_` or `.` (`_SUCCESS`, `.part-0.tmp`) do not count, as in Spark and Hive.
pub fn counts(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    !name.is_empty() && !name.starts_with('_') && !name.starts_with('.')
}

/// The Secret a Connection names, as the operator read it (`None`: it does not exist).
struct ReadSecret {
    name: String,
    data: Option<BTreeMap<String, ByteString>>,
}

impl SecretValues for ReadSecret {
    type Error = String;

    fn value(&mut self, _secret: &str, key: &str) -> Result<Option<String>, String> {
        let Some(data) = &self.data else {
            return Err(format!("Secret {} does not exist", self.name));
        };
        data.get(key)
            .map(|bytes| {
                String::from_utf8(bytes.0.clone()).map_err(|_| format!("Secret {} key {key} is not UTF-8", self.name))
            })
            .transpose()
    }

    fn missing(&self, secret: &str, key: &str) -> String {
        format!("Secret {secret} has no key {key}")
    }
}

async fn open(
    client: &Client,
    namespace: &str,
    source: &EventSource,
    local_paths: &[std::path::PathBuf],
) -> Result<(Arc<dyn ObjectStore>, Path), String> {
    let location: Location = source
        .location
        .parse()
        .map_err(|e: kglue_crds::protocol::storage::LocationError| e.to_string())?;
    let Store::S3 { bucket } = &location.store else {
        // The operator's own files are no data source: only the folders it was told to allow.
        let allowed = local_paths
            .iter()
            .any(|path| kglue_crds::location::contains(&format!("file://{}", path.display()), &source.location));
        if !allowed {
            return Err(format!(
                "{} is a local path, which the operator lists only inside an --allow-local-path folder",
                source.location
            ));
        }
        return Ok((Arc::new(LocalFileSystem::new()), location.prefix));
    };
    let s3 = match &source.connection {
        Some(name) => {
            let connection = Api::<Connection>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(|e| format!("reading Connection {name}: {e}"))?
                .ok_or_else(|| format!("Connection {name} does not exist"))?;
            if connection.spec.s3.is_none() {
                return Err(format!(
                    "Connection {name} is a {} connection: the location {} needs an s3 Connection",
                    connection.spec.kind(),
                    source.location
                ));
            }
            connection.spec.s3
        }
        None => None,
    };
    let mut secret = ReadSecret {
        name: String::new(),
        data: None,
    };
    if let Some(secret_ref) = s3.as_ref().and_then(|s3| s3.credentials_secret_ref.as_ref()) {
        let read = Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(&secret_ref.name)
            .await
            .map_err(|e| format!("reading Secret {}: {e}", secret_ref.name))?;
        if let Some(found) = &read
            && !kglue_crds::connection::secret_consents(found.metadata.labels.as_ref())
        {
            return Err(format!(
                "Secret {} does not let Connections use it (label it {}={}); the listing does not read it",
                secret_ref.name,
                kglue_crds::connection::SECRET_CONSENT_LABEL,
                kglue_crds::connection::SECRET_CONSENT_VALUE
            ));
        }
        secret = ReadSecret {
            name: secret_ref.name.clone(),
            data: read.map(|s| s.data.unwrap_or_default()),
        };
    }
    let environment: Vec<(String, String)> = std::env::vars().collect();
    let builder = s3_builder(bucket, s3.as_ref(), &environment, &mut secret)?;
    let store = builder.build().map_err(|e| e.to_string())?;
    Ok((Arc::new(store), location.prefix))
}

/// Every object under the trigger's prefix that counts, with its modification time.
pub async fn list(
    client: &Client,
    namespace: &str,
    source: &EventSource,
    local_paths: &[std::path::PathBuf],
) -> Result<Vec<Listed>, String> {
    let listing = async {
        let (store, prefix) = open(client, namespace, source, local_paths).await?;
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        store
            .list(prefix.as_ref())
            .try_filter(|meta| futures::future::ready(counts(meta.location.as_ref())))
            .map_ok(|meta| Listed {
                key: meta.location.to_string(),
                modified: Timestamp::new(
                    meta.last_modified.timestamp(),
                    i32::try_from(meta.last_modified.timestamp_subsec_nanos()).unwrap_or(0),
                )
                .unwrap_or(Timestamp::UNIX_EPOCH),
            })
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(LISTING_TIMEOUT, listing)
        .await
        .map_err(|_| format!("listing took longer than {} s", LISTING_TIMEOUT.as_secs()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_split_into_store_and_prefix() {
        let s3: Location = "s3://landing/orders/".parse().expect("valid");
        assert_eq!(
            s3.store,
            Store::S3 {
                bucket: "landing".into()
            }
        );
        assert_eq!(s3.prefix.as_ref(), "orders");
        let file: Location = "file:///data/raw/".parse().expect("valid");
        assert_eq!(file.store, Store::File);
        assert_eq!(file.prefix.as_ref(), "data/raw");
        assert!("gs://x/".parse::<Location>().is_err());
        assert!("file://relative".parse::<Location>().is_err());
    }

    #[test]
    fn secret_values_say_what_is_missing() {
        let mut absent = ReadSecret {
            name: "creds".into(),
            data: None,
        };
        assert_eq!(absent.value("creds", "k"), Err("Secret creds does not exist".into()));
        let mut present = ReadSecret {
            name: "creds".into(),
            data: Some(BTreeMap::from([("k".to_string(), ByteString(b"v".to_vec()))])),
        };
        assert_eq!(present.value("creds", "k"), Ok(Some("v".into())));
        assert_eq!(present.value("creds", "other"), Ok(None));
        assert_eq!(present.missing("creds", "other"), "Secret creds has no key other");
    }

    #[test]
    fn markers_and_files_being_written_do_not_count() {
        assert!(counts("orders/day=1/part-0.csv"));
        assert!(!counts("orders/_SUCCESS"));
        assert!(!counts("orders/.part-0.csv.tmp"));
    }

    #[tokio::test]
    async fn a_local_prefix_lists_its_files_with_times_only_inside_an_allowed_folder() {
        let dir = std::env::temp_dir().join(format!("kglue-listing-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).expect("mkdir");
        std::fs::write(dir.join("a/1.csv"), b"x").expect("write");
        std::fs::write(dir.join("_SUCCESS"), b"").expect("write");
        let source: EventSource = serde_json::from_value(serde_json::json!({
            "location": format!("file://{}/", dir.display()),
        }))
        .expect("an event source");
        // A client is never used for file:// locations; building one needs no server.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"));
        let client = Client::try_from(config).expect("a client");
        let refused = list(&client, "ns", &source, &[])
            .await
            .expect_err("no folder is allowed");
        assert!(refused.contains("is a local path"), "{refused}");
        let listed = list(&client, "ns", &source, std::slice::from_ref(&dir))
            .await
            .expect("listed");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(listed[0].key.ends_with("a/1.csv"));
        assert!(listed[0].modified > Timestamp::UNIX_EPOCH);
    }
}
