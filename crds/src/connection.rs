//! `Connection`: how to reach a data store. Credentials only by Secret reference.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ObservedStatus;

/// A connection to a data store.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kglue.dev",
    version = "v1alpha1",
    kind = "Connection",
    namespaced,
    status = "ObservedStatus",
    shortname = "kgconn",
    category = "kglue",
    doc = "A connection (Glue connection): how crawlers and jobs reach a data store. Credentials are never inline: they come from a Secret the runner is given.",
    printcolumn = r#"{"name": "Endpoint", "type": "string", "jsonPath": ".spec.s3.endpoint"}"#,
    printcolumn = r#"{"name": "Region", "type": "string", "jsonPath": ".spec.s3.region"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("has(self.s3)").message("s3 is required: it is the only connection type so far").field_path(".s3"))]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSpec {
    /// What the connection is for.
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// An S3 or S3-compatible object store.
    pub s3: Option<S3Connection>,
    /// The locations runs may write through this Connection (`s3://lake/curated/`): a sink
    /// outside all of them fails before anything is written, naming the sink, its location and
    /// these prefixes. Empty: no restriction. The same scoping as an IAM policy limited to one
    /// curated prefix, checked by kglue whatever the credentials allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(pattern("^[a-z][a-z0-9+.-]*://.+$"), length(max = 1024)))]
    pub allowed_write_prefixes: Vec<String>,
}

/// An S3-compatible endpoint.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Connection {
    /// The endpoint URL (`https://s3.example.internal:9000`). Unset: AWS S3 for the region.
    #[schemars(pattern("^https?://[^\\s/]+(/.*)?$"), length(max = 1024))]
    pub endpoint: Option<String>,
    /// The region. Default `us-east-1`.
    #[schemars(pattern("^[a-z0-9-]{1,64}$"))]
    pub region: Option<String>,
    /// Address buckets as `<endpoint>/<bucket>` instead of `<bucket>.<endpoint>`; most
    /// S3-compatible servers need it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_path_style: bool,
    /// The Secret (same namespace) holding the access key. Unset: the runner uses the standard AWS
    /// environment (IRSA, instance profile, `AWS_*` variables). The operator reports a missing
    /// Secret as `Stalled` with reason `SecretNotFound`, and a Secret without the named keys with
    /// reason `SecretKeyNotFound`; it reads key names only, never values.
    pub credentials_secret_ref: Option<S3CredentialsSecretRef>,
}

/// Where in a Secret the S3 credentials are. The default key names match the AWS environment
/// variables, so the same Secret also works with `envFrom`.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsSecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding the access key id. Default `AWS_ACCESS_KEY_ID`.
    pub access_key_id_key: Option<String>,
    /// The key holding the secret access key. Default `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key_key: Option<String>,
    /// The key holding a session token, if any. Default `AWS_SESSION_TOKEN` when present.
    pub session_token_key: Option<String>,
}

/// The label a Secret carries to let Connections use it, with [`SECRET_CONSENT_VALUE`] (as Argo CD
/// marks its repository Secrets): without it, a person who may create a Connection but not read
/// Secrets could have a run send any Secret of the namespace to an endpoint of their choosing.
pub const SECRET_CONSENT_LABEL: &str = "kglue.dev/secret-type";
/// The value of [`SECRET_CONSENT_LABEL`].
pub const SECRET_CONSENT_VALUE: &str = "connection";

/// Whether a Secret with `labels` lets Connections use it.
pub fn secret_consents(labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|labels| labels.get(SECRET_CONSENT_LABEL))
        .is_some_and(|value| value == SECRET_CONSENT_VALUE)
}

/// The key of the access key id when a Connection names none.
pub const DEFAULT_ACCESS_KEY_ID_KEY: &str = "AWS_ACCESS_KEY_ID";
/// The key of the secret access key when a Connection names none.
pub const DEFAULT_SECRET_ACCESS_KEY_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// The key of the session token when a Connection names none (then it is optional).
pub const DEFAULT_SESSION_TOKEN_KEY: &str = "AWS_SESSION_TOKEN";

impl S3CredentialsSecretRef {
    /// The key holding the access key id.
    pub fn access_key_id_key(&self) -> &str {
        self.access_key_id_key.as_deref().unwrap_or(DEFAULT_ACCESS_KEY_ID_KEY)
    }

    /// The key holding the secret access key.
    pub fn secret_access_key_key(&self) -> &str {
        self.secret_access_key_key
            .as_deref()
            .unwrap_or(DEFAULT_SECRET_ACCESS_KEY_KEY)
    }

    /// The key holding a session token, and whether it must be there: only when it is named.
    pub fn session_token_key(&self) -> (&str, bool) {
        match &self.session_token_key {
            Some(key) => (key, true),
            None => (DEFAULT_SESSION_TOKEN_KEY, false),
        }
    }

    /// The keys the Secret must hold: the access key pair, and the session token when named.
    pub fn required_keys(&self) -> Vec<String> {
        let mut keys = vec![
            self.access_key_id_key().to_string(),
            self.secret_access_key_key().to_string(),
        ];
        if let (key, true) = self.session_token_key() {
            keys.push(key.to_string());
        }
        keys
    }
}
