//! `Connection`: how to reach a data store. Credentials only by Secret reference.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ObservedStatus;

/// A connection to a data store.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// An S3 or S3-compatible object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Connection>,
}

/// An S3-compatible endpoint.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Connection {
    /// The endpoint URL (`https://s3.example.internal:9000`). Unset: AWS S3 for the region.
    #[schemars(pattern("^https?://[^\\s/]+(/.*)?$"), length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region. Default `us-east-1`.
    #[schemars(pattern("^[a-z0-9-]{1,64}$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Address buckets as `<endpoint>/<bucket>` instead of `<bucket>.<endpoint>`; most
    /// S3-compatible servers need it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_path_style: bool,
    /// The Secret (same namespace) holding the access key. Unset: the runner uses the standard AWS
    /// environment (IRSA, instance profile, `AWS_*` variables). The operator reports a missing
    /// Secret as `Stalled` with reason `SecretNotFound`, and a Secret without the named keys with
    /// reason `SecretKeyNotFound`; it reads key names only, never values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<S3CredentialsSecretRef>,
}

/// Where in a Secret the S3 credentials are. The default key names match the AWS environment
/// variables, so the same Secret also works with `envFrom`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsSecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding the access key id. Default `AWS_ACCESS_KEY_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_key: Option<String>,
    /// The key holding the secret access key. Default `AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_key: Option<String>,
    /// The key holding a session token, if any. Default `AWS_SESSION_TOKEN` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_key: Option<String>,
}
