//! PostgreSQL sessions through tokio-postgres.

use std::sync::{Arc, Mutex};

use kglue_crds::connection::TlsMode;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Endpoint, JdbcError, Reached, statement_failed, tls};

/// Why a session's connection ended, once it has: the server's own words (`FATAL: terminating
/// connection due to administrator command`), which a statement in flight only sees as "connection
/// closed".
#[derive(Clone, Default)]
pub struct Closed(Arc<Mutex<Option<String>>>);

impl Closed {
    /// `error`'s text, with the connection's end when that is what stopped it.
    pub async fn explain(&self, error: &tokio_postgres::Error) -> String {
        let mut text = crate::causes(error);
        if error.is_closed() {
            // The connection's task records its error as it ends, a moment after the client
            // sees the channel close.
            for _ in 0..20 {
                if let Some(reason) = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                    text = format!("the connection closed: {reason}");
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        text
    }
}

/// Opens a session on `endpoint`; the connection's task runs on the current runtime until the
/// client is dropped.
pub async fn connect(endpoint: &Endpoint) -> Result<Client, JdbcError> {
    Ok(connect_watched(endpoint).await?.0)
}

/// [`connect`], with the slot where the connection's task leaves why it ended.
pub async fn connect_watched(endpoint: &Endpoint) -> Result<(Client, Closed), JdbcError> {
    let closed = Closed::default();
    let slot = closed.0.clone();
    let watch =
        move |connection: Box<dyn std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + Unpin>| {
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(crate::causes(&error));
                }
            });
        };
    let mut config = Config::new();
    config
        .host(&endpoint.url.host)
        .port(endpoint.url.port)
        .dbname(&endpoint.url.database)
        .user(&endpoint.user)
        .password(&endpoint.password)
        .application_name("kglue")
        .connect_timeout(endpoint.connect_timeout);
    if let Some(timeout) = endpoint.statement_timeout {
        config.options(format!("-c statement_timeout={}", timeout.as_millis()));
    }
    let connecting = async {
        let connect_error = |e: tokio_postgres::Error| endpoint.connect_error(&e);
        match endpoint.tls {
            TlsMode::Disable => {
                config.ssl_mode(SslMode::Disable);
                let (client, connection) = config.connect(NoTls).await.map_err(connect_error)?;
                watch(Box::new(connection));
                Ok(client)
            }
            mode => {
                config.ssl_mode(SslMode::Require);
                let settings = match (mode, &endpoint.ca_pem) {
                    (TlsMode::VerifyFull, Some(ca)) => tls::verifying(ca)?,
                    (TlsMode::VerifyFull, None) => {
                        return Err(JdbcError::Certificate("VerifyFull needs tls.caSecretRef".into()));
                    }
                    _ => tls::encrypting_only()?,
                };
                let (client, connection) = config
                    .connect(MakeRustlsConnect::new(settings))
                    .await
                    .map_err(connect_error)?;
                watch(Box::new(connection));
                Ok(client)
            }
        }
    };
    let client = tokio::time::timeout(endpoint.connect_timeout, connecting)
        .await
        .map_err(|_| endpoint.timeout())??;
    Ok((client, closed))
}

/// Who, where and how the session is.
pub async fn probe(endpoint: &Endpoint) -> Result<Reached, JdbcError> {
    let client = connect(endpoint).await?;
    let statement = "select current_setting('server_version'), current_user::text, current_database()::text, \
                     (select case when ssl then version end from pg_stat_ssl where pid = pg_backend_pid()), \
                     current_setting('statement_timeout')";
    let row = client
        .query_one(statement, &[])
        .await
        .map_err(statement_failed(endpoint.url.engine, statement))?;
    Ok(Reached {
        engine: endpoint.url.engine,
        address: endpoint.address(),
        server_version: row.get(0),
        user: row.get(1),
        database: row.get(2),
        tls: row.get(3),
        statement_timeout: row.get(4),
        elapsed: Default::default(),
    })
}
