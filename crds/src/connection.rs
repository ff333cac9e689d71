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
    printcolumn = r#"{"name": "URL", "type": "string", "jsonPath": ".spec.jdbc.url"}"#,
    printcolumn = r#"{"name": "Brokers", "type": "string", "jsonPath": ".spec.kafka.bootstrapServers[0]"}"#,
    printcolumn = r#"{"name": "Region", "type": "string", "jsonPath": ".spec.s3.region"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("[has(self.s3), has(self.jdbc), has(self.kafka)].filter(x, x).size() == 1").message("exactly one of s3, jdbc or kafka must be set: a Connection reaches one data store"),
    validation = Rule::new("!(has(self.jdbc) || has(self.kafka)) || !has(self.allowedWritePrefixes)").message("allowedWritePrefixes scope object-store locations; a jdbc or kafka Connection has none").field_path(".allowedWritePrefixes")
)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSpec {
    /// What the connection is for.
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// An S3 or S3-compatible object store.
    pub s3: Option<S3Connection>,
    /// A database (PostgreSQL, MySQL or MariaDB), named by a JDBC URL as Glue names it.
    pub jdbc: Option<JdbcConnection>,
    /// An Apache Kafka cluster, for streaming jobs' topics.
    pub kafka: Option<KafkaConnection>,
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
}

/// A database reached over its own protocol: Glue's JDBC connection (`JDBC_CONNECTION_URL`,
/// the user and password from a Secret as Glue takes them from Secrets Manager, `JDBC_ENFORCE_SSL`
/// and `CUSTOM_JDBC_CERT` as `tls`).
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.tls) || !has(self.tls.mode) || self.tls.mode != 'VerifyFull' || has(self.tls.caSecretRef)").message("tls.mode VerifyFull needs tls.caSecretRef: the CA the server's certificate is checked against").field_path(".tls"))]
pub struct JdbcConnection {
    /// The database as a JDBC URL: `jdbc:postgresql://HOST[:PORT]/DATABASE`,
    /// `jdbc:mysql://HOST[:PORT]/DATABASE` (MariaDB too, or `jdbc:mariadb://`). TLS, credentials
    /// and timeouts are fields here, not URL parameters.
    #[schemars(
        pattern("^jdbc:(postgresql|mysql|mariadb)://[^\\s/?#]+/[^\\s/?#;]+$"),
        length(max = 1024)
    )]
    pub url: String,
    /// The Secret (same namespace) holding the user and password. A Secret of type
    /// `kubernetes.io/basic-auth` fits the default key names.
    pub credentials_secret_ref: JdbcCredentialsSecretRef,
    /// How the session is encrypted. Default: `mode: Require`.
    pub tls: Option<JdbcTls>,
    /// How long to wait for the server to answer a connection, in seconds (default 10): an
    /// unreachable host fails after it, never hangs.
    #[schemars(range(min = 1, max = 300))]
    pub connect_timeout_seconds: Option<u32>,
    /// The longest one statement may run, in seconds; the server cancels it after. Unset: no limit.
    #[schemars(range(min = 1, max = 86400))]
    pub statement_timeout_seconds: Option<u32>,
}

/// An Apache Kafka cluster: Glue's Kafka connection (`KAFKA_BOOTSTRAP_SERVERS`,
/// `KAFKA_SSL_ENABLED` with `KAFKA_CUSTOM_CERT`, `KAFKA_SASL_MECHANISM` with the SASL user and
/// password, here from a Secret).
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaConnection {
    /// The brokers to bootstrap from, `host:port` each (`kafka-0.kafka:9092`); the cluster's other
    /// brokers are found from them.
    #[schemars(
        length(min = 1, max = 32),
        inner(pattern("^([^\\s/:\\[\\]]+|\\[[0-9a-fA-F:.]+\\]):[0-9]{1,5}$"), length(max = 261))
    )]
    pub bootstrap_servers: Vec<String>,
    /// TLS to the brokers, always verifying their certificates. Unset: plaintext, Kafka's default
    /// `security.protocol`.
    pub tls: Option<KafkaTls>,
    /// A SASL login. Unset: none.
    pub sasl: Option<KafkaSasl>,
    /// How long to wait for a broker to answer a connection, in seconds (default 10).
    #[schemars(range(min = 1, max = 300))]
    pub connect_timeout_seconds: Option<u32>,
}

/// TLS to Kafka's brokers.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTls {
    /// The Secret key holding the CA certificate(s) the brokers' certificates are checked against,
    /// PEM. Unset: the public web PKI's roots (a managed Kafka with a public certificate).
    pub ca_secret_ref: Option<SecretKeySelector>,
}

/// A SASL login to Kafka.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSasl {
    /// `Plain`, `ScramSha256` or `ScramSha512` (Kafka's PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
    pub mechanism: SaslMechanism,
    /// The Secret (same namespace) holding the user and password (`username` and `password` by
    /// default, as in a `kubernetes.io/basic-auth` Secret).
    pub credentials_secret_ref: JdbcCredentialsSecretRef,
}

/// A SASL mechanism.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// PLAIN: the password as it is (use it over TLS).
    Plain,
    /// SCRAM-SHA-256.
    ScramSha256,
    /// SCRAM-SHA-512.
    ScramSha512,
}

impl KafkaConnection {
    /// The connect timeout, defaulted.
    pub fn connect_timeout_seconds(&self) -> u32 {
        self.connect_timeout_seconds.unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECONDS)
    }
}

/// Where in a Secret a user and password are (a database's, or a Kafka SASL login's).
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JdbcCredentialsSecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding the user name. Default `username`.
    #[schemars(length(min = 1, max = 253))]
    pub user_key: Option<String>,
    /// The key holding the password. Default `password`.
    #[schemars(length(min = 1, max = 253))]
    pub password_key: Option<String>,
}

/// The default key of a database user in its Secret (as in `kubernetes.io/basic-auth` Secrets).
pub const DEFAULT_USER_KEY: &str = "username";
/// The default key of a database password in its Secret.
pub const DEFAULT_PASSWORD_KEY: &str = "password";
/// The default key of a CA certificate in its Secret (as cert-manager writes it).
pub const DEFAULT_CA_KEY: &str = "ca.crt";
/// The connect timeout when a Connection sets none.
pub const DEFAULT_CONNECT_TIMEOUT_SECONDS: u32 = 10;

impl JdbcCredentialsSecretRef {
    /// The key holding the user name.
    pub fn user_key(&self) -> &str {
        self.user_key.as_deref().unwrap_or(DEFAULT_USER_KEY)
    }

    /// The key holding the password.
    pub fn password_key(&self) -> &str {
        self.password_key.as_deref().unwrap_or(DEFAULT_PASSWORD_KEY)
    }
}

/// TLS for a database session.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct JdbcTls {
    /// `Disable` (plain text), `Require` (encrypted, the certificate not checked: libpq's
    /// `sslmode=require`) or `VerifyFull` (encrypted, the certificate checked against the CA and
    /// the URL's host). Default `Require`.
    pub mode: Option<TlsMode>,
    /// The Secret key holding the CA certificate(s), PEM. Required by `VerifyFull`.
    pub ca_secret_ref: Option<SecretKeySelector>,
}

/// How a database session is encrypted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain text.
    Disable,
    /// Encrypted; the server's certificate is not checked.
    #[default]
    Require,
    /// Encrypted, and the certificate must be signed by the CA and name the URL's host.
    VerifyFull,
}

impl JdbcTls {
    /// The mode, defaulted.
    pub fn mode(&self) -> TlsMode {
        self.mode.unwrap_or_default()
    }
}

/// One key of a Secret.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key. Default `ca.crt`.
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

impl JdbcConnection {
    /// The TLS settings, defaulted.
    pub fn tls(&self) -> JdbcTls {
        self.tls.clone().unwrap_or_default()
    }

    /// The connect timeout, defaulted.
    pub fn connect_timeout_seconds(&self) -> u32 {
        self.connect_timeout_seconds.unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECONDS)
    }
}

/// One Secret key a Connection reads: the operator checks it exists, mounts it into runs at
/// `<secret>/<key>`, and the runner reads it there. One list, so the three cannot disagree.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretKeyUse {
    /// The Secret.
    pub secret: String,
    /// The key.
    pub key: String,
    /// Whether the Connection fails without it.
    pub required: bool,
    /// The field that names it, for messages (`spec.jdbc.credentialsSecretRef.passwordKey`).
    pub field: &'static str,
}

impl ConnectionSpec {
    /// Every Secret key this Connection reads.
    pub fn secret_keys(&self) -> Vec<SecretKeyUse> {
        let mut uses = Vec::new();
        let mut add = |secret: &str, key: &str, required: bool, field: &'static str| {
            uses.push(SecretKeyUse {
                secret: secret.to_string(),
                key: key.to_string(),
                required,
                field,
            })
        };
        if let Some(secret) = self.s3.as_ref().and_then(|s3| s3.credentials_secret_ref.as_ref()) {
            add(
                &secret.name,
                secret.access_key_id_key(),
                true,
                "spec.s3.credentialsSecretRef.accessKeyIdKey",
            );
            add(
                &secret.name,
                secret.secret_access_key_key(),
                true,
                "spec.s3.credentialsSecretRef.secretAccessKeyKey",
            );
            let (token, required) = secret.session_token_key();
            add(
                &secret.name,
                token,
                required,
                "spec.s3.credentialsSecretRef.sessionTokenKey",
            );
        }
        if let Some(jdbc) = &self.jdbc {
            let secret = &jdbc.credentials_secret_ref;
            add(
                &secret.name,
                secret.user_key(),
                true,
                "spec.jdbc.credentialsSecretRef.userKey",
            );
            add(
                &secret.name,
                secret.password_key(),
                true,
                "spec.jdbc.credentialsSecretRef.passwordKey",
            );
            if let Some(ca) = jdbc.tls.as_ref().and_then(|tls| tls.ca_secret_ref.as_ref()) {
                add(&ca.name, ca.key(), true, "spec.jdbc.tls.caSecretRef");
            }
        }
        if let Some(kafka) = &self.kafka {
            if let Some(sasl) = &kafka.sasl {
                let secret = &sasl.credentials_secret_ref;
                add(
                    &secret.name,
                    secret.user_key(),
                    true,
                    "spec.kafka.sasl.credentialsSecretRef.userKey",
                );
                add(
                    &secret.name,
                    secret.password_key(),
                    true,
                    "spec.kafka.sasl.credentialsSecretRef.passwordKey",
                );
            }
            if let Some(ca) = kafka.tls.as_ref().and_then(|tls| tls.ca_secret_ref.as_ref()) {
                add(&ca.name, ca.key(), true, "spec.kafka.tls.caSecretRef");
            }
        }
        uses
    }

    /// The Connection's type, as users write it (`s3`, `jdbc`, `kafka`).
    pub fn kind(&self) -> &'static str {
        if self.jdbc.is_some() {
            "jdbc"
        } else if self.kafka.is_some() {
            "kafka"
        } else {
            "s3"
        }
    }
}

impl SecretKeySelector {
    /// The key, defaulted.
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(DEFAULT_CA_KEY)
    }
}

/// A database engine kglue speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JdbcEngine {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl JdbcEngine {
    /// The port when a URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            JdbcEngine::Postgres => 5432,
            JdbcEngine::Mysql => 3306,
        }
    }
}

impl std::fmt::Display for JdbcEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JdbcEngine::Postgres => "PostgreSQL",
            JdbcEngine::Mysql => "MySQL",
        })
    }
}

/// A JDBC URL read: which engine, where, which database. The one reading of `spec.jdbc.url`,
/// used by the operator's validation and the runner's client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JdbcUrl {
    /// The engine the scheme names.
    pub engine: JdbcEngine,
    /// The host: a name, an IPv4 address, or an IPv6 address without its brackets.
    pub host: String,
    /// The port, defaulted by engine.
    pub port: u16,
    /// The database.
    pub database: String,
}

impl std::str::FromStr for JdbcUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let shape = "write it as jdbc:postgresql://HOST[:PORT]/DATABASE or jdbc:mysql://HOST[:PORT]/DATABASE";
        let (engine, rest) = if let Some(rest) = url.strip_prefix("jdbc:postgresql://") {
            (JdbcEngine::Postgres, rest)
        } else if let Some(rest) = url
            .strip_prefix("jdbc:mysql://")
            .or_else(|| url.strip_prefix("jdbc:mariadb://"))
        {
            (JdbcEngine::Mysql, rest)
        } else {
            return Err(format!(
                "{url:?} is not a JDBC URL kglue reaches (PostgreSQL, MySQL, MariaDB): {shape}"
            ));
        };
        if let Some(at) = rest.find(['?', ';', '#']) {
            return Err(format!(
                "{url:?} has parameters ({:?}): TLS, credentials and timeouts are fields of the Connection (tls, credentialsSecretRef, connectTimeoutSeconds, statementTimeoutSeconds), not URL parameters",
                &rest[at..]
            ));
        }
        let Some((authority, database)) = rest.split_once('/') else {
            return Err(format!("{url:?} names no database: {shape}"));
        };
        if database.is_empty() || database.contains('/') {
            return Err(format!("{url:?} must name one database after the host: {shape}"));
        }
        if authority.contains('@') {
            return Err(format!(
                "{url:?} carries credentials: they come only from credentialsSecretRef"
            ));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                return Err(format!("{url:?}: an IPv6 host needs its closing ]"));
            };
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(':') && !authority.starts_with('[') {
            return Err(format!("{url:?} names no host: {shape}"));
        }
        let port = match port {
            None => engine.default_port(),
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(format!("{url:?}: the port {port:?} is not a number from 1 to 65535")),
            },
        };
        Ok(JdbcUrl {
            engine,
            host: host.to_string(),
            port,
            database: database.to_string(),
        })
    }
}

/// A database table named the way Glue's catalog names it in a Jdbc storage's `location`:
/// `database.schema.table` for PostgreSQL, `database.table` for MySQL (where a database is a
/// schema). The one reading and writing of that name: crawlers write it, runs read it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct JdbcTableName {
    /// The database (PostgreSQL: the Connection URL's; MySQL: any the user reaches).
    pub database: String,
    /// PostgreSQL's schema; `None` for MySQL.
    pub schema: Option<String>,
    /// The table or view.
    pub table: String,
}

impl JdbcTableName {
    /// Reads `location` for a Connection to `url`: a PostgreSQL name must have three parts and
    /// name the URL's database (a session reaches only its own), a MySQL name two.
    pub fn parse(location: &str, url: &JdbcUrl) -> Result<JdbcTableName, String> {
        let parts: Vec<&str> = location.split('.').collect();
        let name = match (url.engine, parts.as_slice()) {
            (JdbcEngine::Postgres, [database, schema, table]) => JdbcTableName {
                database: database.to_string(),
                schema: Some(schema.to_string()),
                table: table.to_string(),
            },
            (JdbcEngine::Mysql, [database, table]) => JdbcTableName {
                database: database.to_string(),
                schema: None,
                table: table.to_string(),
            },
            (JdbcEngine::Postgres, _) => {
                return Err(format!(
                    "{location:?} is not a PostgreSQL table name: write DATABASE.SCHEMA.TABLE ({}.public.orders)",
                    url.database
                ));
            }
            (JdbcEngine::Mysql, _) => {
                return Err(format!(
                    "{location:?} is not a MySQL table name: write DATABASE.TABLE ({}.orders)",
                    url.database
                ));
            }
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("{location:?} has an empty part"));
        }
        if url.engine == JdbcEngine::Postgres && name.database != url.database {
            return Err(format!(
                "{location:?} is in database {:?}, but the Connection reaches {:?}: a PostgreSQL session sees only its own database",
                name.database, url.database
            ));
        }
        Ok(name)
    }
}

impl std::fmt::Display for JdbcTableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{}.{schema}.{}", self.database, self.table),
            None => write!(f, "{}.{}", self.database, self.table),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_urls_are_read_as_glue_writes_them() {
        let url: JdbcUrl = "jdbc:postgresql://db.internal:5433/sales".parse().expect("valid");
        assert_eq!(
            url,
            JdbcUrl {
                engine: JdbcEngine::Postgres,
                host: "db.internal".into(),
                port: 5433,
                database: "sales".into()
            }
        );
        let url: JdbcUrl = "jdbc:mysql://10.0.0.7/shop".parse().expect("valid");
        assert_eq!((url.engine, url.port), (JdbcEngine::Mysql, 3306));
        let url: JdbcUrl = "jdbc:mariadb://[::1]:3307/shop".parse().expect("valid");
        assert_eq!((url.host.as_str(), url.port), ("::1", 3307));
    }

    #[test]
    fn a_bad_jdbc_url_says_what_is_wrong() {
        for (url, expected) in [
            ("jdbc:oracle:thin:@db:1521/x", "not a JDBC URL kglue reaches"),
            ("jdbc:postgresql://db:5432", "names no database"),
            ("jdbc:postgresql://db/", "must name one database"),
            ("jdbc:postgresql://db:5432/sales?ssl=true", "not URL parameters"),
            ("jdbc:mysql://user:pw@db/sales", "credentials"),
            ("jdbc:mysql://db:99999/sales", "not a number from 1 to 65535"),
            ("jdbc:mysql://:3306/sales", "names no host"),
            ("jdbc:mysql://[::1/sales", "closing ]"),
        ] {
            let error = url.parse::<JdbcUrl>().expect_err(url);
            assert!(error.contains(expected), "{url}: {error}");
        }
    }

    #[test]
    fn every_secret_key_a_connection_reads_is_listed_with_its_field() {
        let spec: ConnectionSpec = serde_json::from_value(serde_json::json!({
            "jdbc": {"url": "jdbc:postgresql://db/sales",
                     "credentialsSecretRef": {"name": "db", "passwordKey": "pw"},
                     "tls": {"mode": "VerifyFull", "caSecretRef": {"name": "db-ca"}}}
        }))
        .expect("a spec");
        let keys: Vec<(String, String, bool)> = spec
            .secret_keys()
            .into_iter()
            .map(|k| (k.secret, k.key, k.required))
            .collect();
        assert_eq!(
            keys,
            [
                ("db".into(), "username".into(), true),
                ("db".into(), "pw".into(), true),
                ("db-ca".into(), "ca.crt".into(), true)
            ]
        );
        let spec: ConnectionSpec = serde_json::from_value(serde_json::json!({
            "s3": {"credentialsSecretRef": {"name": "lake"}}
        }))
        .expect("a spec");
        let keys: Vec<(String, bool)> = spec.secret_keys().into_iter().map(|k| (k.key, k.required)).collect();
        assert_eq!(
            keys,
            [
                ("AWS_ACCESS_KEY_ID".into(), true),
                ("AWS_SECRET_ACCESS_KEY".into(), true),
                ("AWS_SESSION_TOKEN".into(), false)
            ]
        );
    }

    #[test]
    fn table_names_read_as_glue_writes_them() {
        let pg: JdbcUrl = "jdbc:postgresql://db/sales".parse().expect("url");
        let my: JdbcUrl = "jdbc:mysql://db/shop".parse().expect("url");
        let name = JdbcTableName::parse("sales.public.orders", &pg).expect("pg name");
        assert_eq!(name.schema.as_deref(), Some("public"));
        assert_eq!(name.to_string(), "sales.public.orders");
        assert_eq!(
            JdbcTableName::parse("shop.orders", &my).expect("my name").to_string(),
            "shop.orders"
        );
        let error = JdbcTableName::parse("other.public.orders", &pg).expect_err("other database");
        assert!(error.contains("sees only its own database"), "{error}");
        let error = JdbcTableName::parse("public.orders", &pg).expect_err("two parts");
        assert!(error.contains("DATABASE.SCHEMA.TABLE (sales.public.orders)"), "{error}");
        let error = JdbcTableName::parse("shop.x.orders", &my).expect_err("three parts");
        assert!(error.contains("DATABASE.TABLE (shop.orders)"), "{error}");
        assert!(JdbcTableName::parse("shop..", &my).is_err());
    }
}
