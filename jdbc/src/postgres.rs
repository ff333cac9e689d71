//! PostgreSQL sessions through tokio-postgres.

use kglue_crds::connection::TlsMode;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Endpoint, JdbcError, Reached, statement_failed, tls};

/// Opens a session on `endpoint`; the connection's task runs on the current runtime until the
/// client is dropped.
pub async fn connect(endpoint: &Endpoint) -> Result<Client, JdbcError> {
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
                tokio::spawn(connection);
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
                tokio::spawn(connection);
                Ok(client)
            }
        }
    };
    tokio::time::timeout(endpoint.connect_timeout, connecting)
        .await
        .map_err(|_| endpoint.timeout())?
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
