//! `Session`: an interactive SQL endpoint over the namespace's catalog (Glue's interactive
//! sessions), served over the PostgreSQL wire protocol so psql, JDBC tools, BI tools and notebooks
//! can query the lake through the same Tables the jobs use.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{CATALOG_NAME_PATTERN, ObservedStatus, WorkerSize};

/// An interactive session.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kglue.dev",
    version = "v1alpha1",
    kind = "Session",
    namespaced,
    status = "SessionStatus",
    shortname = "kgsession",
    category = "kglue",
    doc = "An interactive session (Glue interactive session): a pod that serves read-only SQL over the namespace's catalog on the PostgreSQL wire protocol, behind a Service, until its idle timeout or maximum duration ends it.",
    validation = Rule::new("size(self.metadata.name) <= 55 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must be at most 55 characters of lower-case letters, digits and '-', starting with a letter and ending with a letter or digit: the Session's pod and Service are named <name>-session, and a Service name is a DNS label of at most 63 characters"),
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "State", "type": "string", "jsonPath": ".status.state"}"#,
    printcolumn = r#"{"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint"}"#,
    printcolumn = r#"{"name": "Queries", "type": "integer", "jsonPath": ".status.activity.queries"}"#,
    printcolumn = r#"{"name": "Last Activity", "type": "date", "jsonPath": ".status.activity.lastActivityTime"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SessionSpec {
    /// What the session is for.
    #[schemars(length(max = 2048))]
    pub description: Option<String>,
    /// The size of the session's pod: `Small` (1 CPU, 2 GiB, the default), `Medium` (2, 8 GiB),
    /// `Large` (4, 16 GiB) or `XLarge` (8, 32 GiB), unless the operator is configured with other
    /// sizes.
    #[serde(default)]
    pub worker_size: WorkerSize,
    /// The ServiceAccount the session's pod runs as (its cloud identity, as for Jobs). It needs
    /// the runner's Role (`kglue-operator runner-rbac`). Unset: the operator's runner account.
    #[schemars(pattern("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"), length(max = 253))]
    pub service_account_name: Option<String>,
    /// End the session after this many minutes without a query (Glue's idle timeout): the pod is
    /// removed and `status.state` says `IdleTimeout`. Default 60.
    #[schemars(range(min = 1, max = 10080))]
    #[serde(default = "default_idle_timeout_minutes")]
    pub idle_timeout_minutes: i32,
    /// End the session this many minutes after it started, busy or not (`status.state`
    /// `MaxDuration`). Unset: no limit but the idle timeout.
    #[schemars(range(min = 1, max = 10080))]
    pub max_duration_minutes: Option<i32>,
    /// The databases (`spec.databaseName` of Databases) the session exposes as schemas. Empty:
    /// every database of the namespace, including ones created after the session started.
    #[schemars(length(max = 100), inner(pattern(CATALOG_NAME_PATTERN)))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    /// The port the session listens on and its Service exposes. Default 5432.
    #[schemars(range(min = 1024, max = 65535))]
    #[serde(default = "default_port")]
    pub port: i32,
    /// Who may connect.
    pub auth: SessionAuth,
}

/// Who may connect to a session: one user name and a password kept in a Secret.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionAuth {
    /// The user name clients log in as. Default `kglue`.
    #[schemars(pattern("^[A-Za-z_][A-Za-z0-9_.-]{0,62}$"))]
    #[serde(default = "default_username")]
    pub username: String,
    /// The Secret key holding the password (checked with SCRAM-SHA-256; the password never crosses
    /// the wire). The session waits until the Secret exists.
    pub password_secret_ref: PasswordSecretRef,
}

/// A key of a Secret in the session's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSecretRef {
    /// The Secret's name.
    #[schemars(pattern("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"), length(max = 253))]
    pub name: String,
    /// The key. Default `password`.
    #[schemars(pattern("^[-._a-zA-Z0-9]{1,253}$"))]
    #[serde(default = "default_password_key")]
    pub key: String,
}

fn default_idle_timeout_minutes() -> i32 {
    60
}

fn default_port() -> i32 {
    5432
}

fn default_username() -> String {
    "kglue".into()
}

fn default_password_key() -> String {
    "password".into()
}

/// Where a session is in its life.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// The pod is being created or has not yet started listening.
    Starting,
    /// Serving queries.
    Ready,
    /// Ended: no query for `idleTimeoutMinutes`.
    IdleTimeout,
    /// Ended: `maxDurationMinutes` passed.
    MaxDuration,
    /// Ended: the pod failed or was removed by something other than the operator.
    Failed,
}

impl SessionState {
    /// Whether the session has ended (its pod is gone and stays gone).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SessionState::IdleTimeout | SessionState::MaxDuration | SessionState::Failed
        )
    }
}

/// What the operator and the session's pod observed of a Session.
#[serde_with::skip_serializing_none]
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
    /// Generation and conditions.
    #[serde(flatten)]
    pub observed: ObservedStatus,
    /// `Starting`, `Ready`, or why it ended: `IdleTimeout`, `MaxDuration`, `Failed`.
    pub state: Option<SessionState>,
    /// Where clients connect while the session is Ready: the Service's DNS name and port
    /// (`<name>-session.<namespace>.svc:<port>`).
    pub endpoint: Option<String>,
    /// When the session's pod started serving.
    pub started_at: Option<String>,
    /// When the session ended.
    pub ended_at: Option<String>,
    /// Why it ended, for people.
    pub message: Option<String>,
    /// What the session's pod reports of its use (written by the pod, not the operator).
    pub activity: Option<SessionActivity>,
}

/// A session's use, as its pod counts it since it started.
#[serde_with::skip_serializing_none]
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionActivity {
    /// When the pod began accepting connections (the operator's signal that it is Ready).
    pub serving_since: Option<String>,
    /// The pod that reports (a session has one pod at a time).
    pub pod: Option<String>,
    /// When the last statement arrived (RFC 3339); the idle timeout counts from here, or from
    /// `startedAt` before the first.
    pub last_activity_time: Option<String>,
    /// Statements served.
    #[serde(default)]
    pub queries: i64,
    /// Statements that failed or were refused.
    #[serde(default)]
    pub errors: i64,
    /// Rows returned to clients.
    #[serde(default)]
    pub rows_returned: i64,
    /// Bytes read from object storage.
    #[serde(default)]
    pub bytes_scanned: i64,
}
