//! Storage locations (`s3://bucket/prefix/`, `file:///path/`) and how a Connection becomes an
//! object-store client. The runner reads and writes data through these clients; the operator lists
//! an Event trigger's prefix through them; both must reach a bucket the same way, with the same
//! credentials, so the mapping is written once, here.
//!
//! An `s3://` bucket is reached through a Connection (endpoint, region, addressing style,
//! credentials from its Secret) or, without one, through the standard AWS environment variables,
//! as the AWS tools do. Under a Connection the environment still supplies what the Connection
//! leaves unset.

use std::fmt;
use std::path::Path as FsPath;
use std::str::FromStr;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ClientOptions, RetryConfig};

use crate::connection::S3Connection;

/// A URL that is not a storage location kglue understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not a storage location: {reason} (expected s3://bucket/prefix/ or file:///absolute/path/)")]
pub struct LocationError {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
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
    type Err = LocationError;

    fn from_str(url: &str) -> Result<Self, LocationError> {
        let invalid = |reason: &str| LocationError {
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
    /// Whether `other` is this location or inside it (whole path segments: `s3://b/x` holds
    /// `s3://b/x/y`, not `s3://b/xy`).
    pub fn holds(&self, other: &Location) -> bool {
        self.store == other.store && self.contains(&other.prefix)
    }

    /// A location for a local directory.
    pub fn from_directory(dir: &FsPath) -> Result<Self, LocationError> {
        let absolute = std::path::absolute(dir).map_err(|e| LocationError {
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

/// Where the values of a Connection's Secret come from: files mounted in the runner's pod, or
/// the Secret object the operator reads.
pub trait SecretValues {
    /// What a failed read or a missing required key becomes.
    type Error;
    /// The value of `key` in Secret `secret`; `None` when it has no such key.
    fn value(&mut self, secret: &str, key: &str) -> Result<Option<String>, Self::Error>;
    /// The error for a required `key` that Secret `secret` does not hold.
    fn missing(&self, secret: &str, key: &str) -> Self::Error;
}

/// A builder for the client of `bucket`: the standard AWS settings in `environment` (only `AWS_*`
/// names are read, as `AmazonS3Builder::from_env` reads them), then what `connection` says (its
/// endpoint, addressing style, region and the credentials in its Secret). Unreachable endpoints
/// fail fast: the default retries would hide them for minutes.
pub fn s3_builder<S: SecretValues>(
    bucket: &str,
    connection: Option<&S3Connection>,
    environment: &[(String, String)],
    secrets: &mut S,
) -> Result<AmazonS3Builder, S::Error> {
    let retry = RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(20),
        ..RetryConfig::default()
    };
    let client = ClientOptions::new().with_connect_timeout(Duration::from_secs(5));
    // Client options first: with_client_options replaces them whole, and the environment may set
    // some of them (AWS_ALLOW_HTTP).
    let mut builder = AmazonS3Builder::new().with_client_options(client).with_retry(retry);
    for (key, value) in environment.iter().filter(|(key, _)| key.starts_with("AWS_")) {
        if let Ok(config) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(config, value);
        }
    }
    builder = builder.with_bucket_name(bucket);
    let Some(s3) = connection else {
        return Ok(builder);
    };
    if let Some(endpoint) = &s3.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(!s3.force_path_style);
    }
    builder = builder.with_region(s3.region.as_deref().unwrap_or("us-east-1"));
    let Some(secret) = &s3.credentials_secret_ref else {
        return Ok(builder);
    };
    let mut required = |key: &str| match secrets.value(&secret.name, key)? {
        Some(value) => Ok(value),
        None => Err(secrets.missing(&secret.name, key)),
    };
    builder = builder
        .with_access_key_id(required(secret.access_key_id_key())?)
        .with_secret_access_key(required(secret.secret_access_key_key())?);
    let (token_key, token_required) = secret.session_token_key();
    let token = if token_required {
        Some(required(token_key)?)
    } else {
        secrets.value(&secret.name, token_key)?
    };
    if let Some(token) = token {
        builder = builder.with_token(token);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
            ("gs://bucket/x", "unknown scheme"),
            ("s3://ab/x", "3 to 63 characters"),
            ("s3:///x", "3 to 63 characters"),
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

    /// A Secret in memory; reads are counted.
    struct Values(BTreeMap<(String, String), String>, Vec<String>);

    impl SecretValues for Values {
        type Error = String;
        fn value(&mut self, secret: &str, key: &str) -> Result<Option<String>, String> {
            self.1.push(key.to_string());
            Ok(self.0.get(&(secret.to_string(), key.to_string())).cloned())
        }
        fn missing(&self, secret: &str, key: &str) -> String {
            format!("{secret} has no {key}")
        }
    }

    fn connection(secret: serde_json::Value) -> S3Connection {
        serde_json::from_value(serde_json::json!({
            "endpoint": "http://127.0.0.1:1", "forcePathStyle": true, "credentialsSecretRef": secret
        }))
        .expect("valid connection")
    }

    #[test]
    fn credentials_come_from_the_named_or_default_keys() {
        let values = |pairs: &[(&str, &str)]| {
            Values(
                pairs
                    .iter()
                    .map(|(k, v)| (("creds".to_string(), k.to_string()), v.to_string()))
                    .collect(),
                Vec::new(),
            )
        };
        let mut defaults = values(&[("AWS_ACCESS_KEY_ID", "id"), ("AWS_SECRET_ACCESS_KEY", "s")]);
        let s3 = connection(serde_json::json!({"name": "creds"}));
        let builder = s3_builder("bucket", Some(&s3), &[], &mut defaults).expect("builds");
        assert_eq!(
            builder.get_config_value(&AmazonS3ConfigKey::AccessKeyId).as_deref(),
            Some("id")
        );
        assert_eq!(
            builder
                .get_config_value(&AmazonS3ConfigKey::VirtualHostedStyleRequest)
                .as_deref(),
            Some("false")
        );
        assert_eq!(
            defaults.1,
            ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
        );

        let named = connection(serde_json::json!({"name": "creds", "accessKeyIdKey": "id", "sessionTokenKey": "t"}));
        let mut partial = values(&[("id", "i"), ("AWS_SECRET_ACCESS_KEY", "s")]);
        assert_eq!(
            s3_builder("bucket", Some(&named), &[], &mut partial).err(),
            Some("creds has no t".to_string()),
            "a named session token is required"
        );
    }

    #[test]
    fn the_environment_fills_what_no_connection_says() {
        let environment = [
            ("AWS_REGION".to_string(), "eu-west-1".to_string()),
            ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let mut none = Values(BTreeMap::new(), Vec::new());
        let builder = s3_builder("bucket", None, &environment, &mut none).expect("builds");
        assert_eq!(
            builder.get_config_value(&AmazonS3ConfigKey::Region).as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            builder
                .get_config_value(&AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp))
                .as_deref(),
            Some("true"),
            "client options set before the environment keep AWS_ALLOW_HTTP"
        );
        assert!(none.1.is_empty(), "no Connection, no Secret read");
    }
}
