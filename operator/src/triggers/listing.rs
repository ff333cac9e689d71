//! Listing an Event trigger's prefix. The operator reads object names and modification times
//! only, never data, through the Connection the trigger names (its endpoint and the access key in
//! its Secret) or, without one, the standard AWS environment of the operator's pod.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kglue_crds::Connection;
use kglue_crds::trigger::EventSource;
use kube::Client;
use kube::api::Api;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use super::decide::Listed;

/// The longest one listing may take.
pub const LISTING_TIMEOUT: Duration = Duration::from_secs(60);

/// A location split into its store and prefix.
#[derive(Debug, PartialEq, Eq)]
pub enum Place {
    /// A bucket and a key prefix.
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix, without a trailing `/`.
        prefix: String,
    },
    /// An absolute local path.
    File {
        /// The path, without its leading `/`.
        path: String,
    },
}

/// Splits `s3://bucket/prefix/` or `file:///path/`.
pub fn parse_location(url: &str) -> Result<Place, String> {
    if let Some(rest) = url.strip_prefix("s3://").or_else(|| url.strip_prefix("s3a://")) {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?} names no bucket"));
        }
        Ok(Place::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_end_matches('/').to_string(),
        })
    } else if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!("{url:?}: a file URL needs an absolute path (file:///…)"));
        }
        Ok(Place::File {
            path: path.trim_matches('/').to_string(),
        })
    } else {
        Err(format!("{url:?} is not an s3:// or file:// location"))
    }
}

/// Whether an object is data rather than a marker or a file being written: names starting with
/// `_` or `.` (`_SUCCESS`, `.part-0.tmp`) do not count, as in Spark and Hive.
pub fn counts(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    !name.is_empty() && !name.starts_with('_') && !name.starts_with('.')
}

async fn secret_value(secrets: &Api<Secret>, name: &str, key: &str) -> Result<String, String> {
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| format!("reading Secret {name}: {e}"))?
        .ok_or_else(|| format!("Secret {name} does not exist"))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| format!("Secret {name} has no key {key}"))?;
    String::from_utf8(bytes.0.clone()).map_err(|_| format!("Secret {name} key {key} is not UTF-8"))
}

async fn open(client: &Client, namespace: &str, source: &EventSource) -> Result<(Arc<dyn ObjectStore>, Path), String> {
    match parse_location(&source.location)? {
        Place::File { path } => Ok((
            Arc::new(LocalFileSystem::new()),
            Path::parse(&path).map_err(|e| e.to_string())?,
        )),
        Place::S3 { bucket, prefix } => {
            let retry = RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            };
            let options = ClientOptions::new().with_connect_timeout(Duration::from_secs(5));
            let mut builder = AmazonS3Builder::from_env()
                .with_client_options(options)
                .with_retry(retry)
                .with_bucket_name(&bucket);
            if let Some(name) = &source.connection {
                let connection = Api::<Connection>::namespaced(client.clone(), namespace)
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("reading Connection {name}: {e}"))?
                    .ok_or_else(|| format!("Connection {name} does not exist"))?;
                if let Some(s3) = connection.spec.s3 {
                    if let Some(endpoint) = &s3.endpoint {
                        builder = builder
                            .with_endpoint(endpoint)
                            .with_allow_http(endpoint.starts_with("http://"))
                            .with_virtual_hosted_style_request(!s3.force_path_style);
                    }
                    builder = builder.with_region(s3.region.as_deref().unwrap_or("us-east-1"));
                    if let Some(secret) = &s3.credentials_secret_ref {
                        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
                        let key_id = secret.access_key_id_key.as_deref().unwrap_or("AWS_ACCESS_KEY_ID");
                        let secret_key = secret
                            .secret_access_key_key
                            .as_deref()
                            .unwrap_or("AWS_SECRET_ACCESS_KEY");
                        builder = builder
                            .with_access_key_id(secret_value(&secrets, &secret.name, key_id).await?)
                            .with_secret_access_key(secret_value(&secrets, &secret.name, secret_key).await?);
                        if let Some(token_key) = &secret.session_token_key {
                            builder = builder.with_token(secret_value(&secrets, &secret.name, token_key).await?);
                        }
                    }
                }
            }
            let store = builder.build().map_err(|e| e.to_string())?;
            Ok((Arc::new(store), Path::parse(&prefix).map_err(|e| e.to_string())?))
        }
    }
}

/// Every object under the trigger's prefix that counts, with its modification time.
pub async fn list(client: &Client, namespace: &str, source: &EventSource) -> Result<Vec<Listed>, String> {
    let listing = async {
        let (store, prefix) = open(client, namespace, source).await?;
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
        assert_eq!(
            parse_location("s3://landing/orders/"),
            Ok(Place::S3 {
                bucket: "landing".into(),
                prefix: "orders".into()
            })
        );
        assert_eq!(
            parse_location("file:///data/raw/"),
            Ok(Place::File {
                path: "data/raw".into()
            })
        );
        assert!(parse_location("gs://x/").is_err());
        assert!(parse_location("file://relative").is_err());
    }

    #[test]
    fn markers_and_files_being_written_do_not_count() {
        assert!(counts("orders/day=1/part-0.csv"));
        assert!(!counts("orders/_SUCCESS"));
        assert!(!counts("orders/.part-0.csv.tmp"));
    }

    #[tokio::test]
    async fn a_local_prefix_lists_its_files_with_times() {
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
        let listed = list(&client, "ns", &source).await.expect("listed");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(listed[0].key.ends_with("a/1.csv"));
        assert!(listed[0].modified > Timestamp::UNIX_EPOCH);
    }
}
