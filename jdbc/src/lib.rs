//! kglue's database client. A `jdbc` Connection (its URL, the user and password from its Secret,
//! its TLS mode and timeouts) becomes an [`Endpoint`]; [`probe`] connects to it the way every run
//! will and reports what it reached — Glue's "Test connection".
//!
//! The URL is read once, by [`kglue_crds::connection::JdbcUrl`]; which Secret keys hold what is
//! [`kglue_crds::connection::ConnectionSpec::secret_keys`]'s. This crate only speaks to servers.

pub mod cells;
mod mysql;
mod postgres;
pub mod read;
pub mod schema;
mod tls;
pub mod types;
pub mod write;

use std::time::{Duration, Instant};

use kglue_crds::connection::{JdbcConnection, JdbcEngine, JdbcUrl, TlsMode};
use kglue_crds::protocol::storage::SecretValues;

/// A failure to reach or use a database, each naming the server and what to do.
#[derive(Debug, thiserror::Error)]
pub enum JdbcError {
    /// `spec.jdbc.url` does not read as a URL kglue reaches.
    #[error("spec.jdbc.url: {0}")]
    Url(String),
    /// A Secret key the Connection needs is not available.
    #[error("{0}")]
    Secret(String),
    /// The CA certificate does not read as PEM certificates.
    #[error("the CA in spec.jdbc.tls.caSecretRef is not a PEM certificate: {0}")]
    Certificate(String),
    /// Nothing answered within the connect timeout.
    #[error(
        "no answer from {engine} at {address} within {seconds} s (spec.jdbc.connectTimeoutSeconds): is the host reachable from here, and the port open?"
    )]
    Timeout {
        /// The engine.
        engine: JdbcEngine,
        /// `host:port`.
        address: String,
        /// The timeout.
        seconds: u64,
    },
    /// The server was reached, or not, and said why the session could not start.
    #[error("cannot connect to {engine} at {address} as {user:?}: {reason}")]
    Connect {
        /// The engine.
        engine: JdbcEngine,
        /// `host:port`.
        address: String,
        /// The user.
        user: String,
        /// What the driver or server said, with its causes.
        reason: String,
    },
    /// A value read does not fit its column's type.
    #[error("column {column:?}, row {row} of the read: {message}")]
    Value {
        /// The column.
        column: String,
        /// The row, counted from 1 in the read's order.
        row: u64,
        /// Why.
        message: String,
    },
    /// A run's sink was applied to its table already (`kglue_commits` records it): writing it
    /// again would double its rows.
    #[error(
        "run {run_id} already wrote sink {sink} into {target} (recorded in its kglue_commits table); start a new run to write again"
    )]
    AlreadyApplied {
        /// The run.
        run_id: String,
        /// The sink.
        sink: String,
        /// The table.
        target: String,
    },
    /// Rows could not be assembled into Arrow arrays.
    #[error("building the batch: {0}")]
    Arrow(String),
    /// A statement failed.
    #[error("{engine} could not run {statement:?}: {reason}")]
    Statement {
        /// The engine.
        engine: JdbcEngine,
        /// The statement.
        statement: String,
        /// What the server said.
        reason: String,
    },
}

/// Everything needed to open a session: where, as whom, how encrypted, how long to wait.
#[derive(Clone)]
pub struct Endpoint {
    /// The server and database.
    pub url: JdbcUrl,
    /// The user.
    pub user: String,
    password: String,
    /// The TLS mode.
    pub tls: TlsMode,
    ca_pem: Option<String>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// The longest a statement may run, enforced by the server.
    pub statement_timeout: Option<Duration>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The endpoint of `jdbc`, its credentials read from `secrets`.
    pub fn resolve<S: SecretValues>(jdbc: &JdbcConnection, secrets: &mut S) -> Result<Endpoint, JdbcError>
    where
        S::Error: std::fmt::Display,
    {
        let url: JdbcUrl = jdbc.url.parse().map_err(JdbcError::Url)?;
        let mut required = |secret: &str, key: &str| match secrets.value(secret, key) {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(JdbcError::Secret(secrets.missing(secret, key).to_string())),
            Err(error) => Err(JdbcError::Secret(error.to_string())),
        };
        let credentials = &jdbc.credentials_secret_ref;
        let user = required(&credentials.name, credentials.user_key())?;
        let password = required(&credentials.name, credentials.password_key())?;
        let tls = jdbc.tls();
        let ca_pem = match &tls.ca_secret_ref {
            Some(ca) => Some(required(&ca.name, ca.key())?),
            None => None,
        };
        Ok(Endpoint {
            url,
            user,
            password,
            tls: tls.mode(),
            ca_pem,
            connect_timeout: Duration::from_secs(jdbc.connect_timeout_seconds().into()),
            statement_timeout: jdbc.statement_timeout_seconds.map(|s| Duration::from_secs(s.into())),
        })
    }

    /// `host:port`, as messages name the server.
    pub fn address(&self) -> String {
        if self.url.host.contains(':') {
            format!("[{}]:{}", self.url.host, self.url.port)
        } else {
            format!("{}:{}", self.url.host, self.url.port)
        }
    }

    fn timeout(&self) -> JdbcError {
        JdbcError::Timeout {
            engine: self.url.engine,
            address: self.address(),
            seconds: self.connect_timeout.as_secs(),
        }
    }

    fn connect_error(&self, error: &(dyn std::error::Error + 'static)) -> JdbcError {
        JdbcError::Connect {
            engine: self.url.engine,
            address: self.address(),
            user: self.user.clone(),
            reason: causes(error),
        }
    }
}

/// What a connection test reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reached {
    /// The engine the URL names.
    pub engine: JdbcEngine,
    /// `host:port`.
    pub address: String,
    /// The server's own version string (`16.4 (Debian 16.4-1)`, `10.11.6-MariaDB-0+deb12u1`).
    pub server_version: String,
    /// The user the server says the session runs as.
    pub user: String,
    /// The database the session is in.
    pub database: String,
    /// The TLS protocol (`TLSv1.3`), or `None` when the session is not encrypted.
    pub tls: Option<String>,
    /// The session's statement timeout as the server reports it (`0` or empty: none).
    pub statement_timeout: String,
    /// How long connecting and asking took.
    pub elapsed: Duration,
}

impl std::fmt::Display for Reached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "reached {} at {}", self.engine, self.address)?;
        writeln!(f, "  server version:    {}", self.server_version)?;
        writeln!(f, "  user:              {}", self.user)?;
        writeln!(f, "  database:          {}", self.database)?;
        writeln!(
            f,
            "  tls:               {}",
            self.tls.as_deref().unwrap_or("no (the session is not encrypted)")
        )?;
        // Servers write "no limit" as 0 in their own units (`0`, `0.000000s`, `0ms`).
        let unlimited = self.statement_timeout.trim_end_matches(['s', 'm']).parse::<f64>() == Ok(0.0);
        writeln!(
            f,
            "  statement timeout: {}",
            if unlimited { "none" } else { &self.statement_timeout }
        )?;
        write!(f, "  took:              {} ms", self.elapsed.as_millis())
    }
}

/// Connects to `endpoint` as a run would (TLS mode, timeouts, statement timeout set), asks the
/// server who and where the session is, and disconnects.
pub async fn probe(endpoint: &Endpoint) -> Result<Reached, JdbcError> {
    let started = Instant::now();
    let mut reached = match endpoint.url.engine {
        JdbcEngine::Postgres => postgres::probe(endpoint).await?,
        JdbcEngine::Mysql => mysql::probe(endpoint).await?,
    };
    reached.elapsed = started.elapsed();
    Ok(reached)
}

/// The error of `statement` failing on `engine`, as a `map_err` argument.
fn statement_failed<E: std::error::Error + 'static>(
    engine: JdbcEngine,
    statement: &str,
) -> impl Fn(E) -> JdbcError + '_ {
    move |error| JdbcError::Statement {
        engine,
        statement: statement.to_string(),
        reason: causes(&error),
    }
}

/// An error and its causes, outermost first, each once (drivers often repeat the cause in their
/// own message).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct Values(BTreeMap<(&'static str, &'static str), &'static str>);

    impl SecretValues for Values {
        type Error = String;

        fn value(&mut self, secret: &str, key: &str) -> Result<Option<String>, String> {
            Ok(self
                .0
                .iter()
                .find(|((s, k), _)| *s == secret && *k == key)
                .map(|(_, v)| v.to_string()))
        }

        fn missing(&self, secret: &str, key: &str) -> String {
            format!("Secret {secret:?} has no key {key:?}")
        }
    }

    fn jdbc(value: serde_json::Value) -> JdbcConnection {
        serde_json::from_value(value).expect("a jdbc connection")
    }

    #[test]
    fn an_endpoint_takes_its_credentials_from_the_secret_and_its_defaults_from_the_api() {
        let connection = jdbc(serde_json::json!({
            "url": "jdbc:postgresql://db.internal/sales",
            "credentialsSecretRef": {"name": "sales-db"},
            "statementTimeoutSeconds": 600
        }));
        let mut values = Values(BTreeMap::from([
            (("sales-db", "username"), "etl"),
            (("sales-db", "password"), "pw"),
        ]));
        let endpoint = Endpoint::resolve(&connection, &mut values).expect("resolves");
        assert_eq!(endpoint.address(), "db.internal:5432");
        assert_eq!(endpoint.user, "etl");
        assert_eq!(endpoint.tls, TlsMode::Require);
        assert_eq!(endpoint.connect_timeout, Duration::from_secs(10));
        assert_eq!(endpoint.statement_timeout, Some(Duration::from_secs(600)));
        assert!(!format!("{endpoint:?}").contains("pw"), "the password is never printed");

        let mut values = Values(BTreeMap::from([(("sales-db", "username"), "etl")]));
        let error = Endpoint::resolve(&connection, &mut values).expect_err("no password");
        assert_eq!(error.to_string(), "Secret \"sales-db\" has no key \"password\"");
    }
}
