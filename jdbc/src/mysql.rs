//! MySQL and MariaDB sessions through mysql_async.

use kglue_crds::connection::TlsMode;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts};

use kglue_crds::connection::JdbcEngine;

use crate::{Endpoint, JdbcError, Reached, statement_failed};

/// Opens a session on `endpoint`, with the statement timeout set.
pub async fn connect(endpoint: &Endpoint) -> Result<Conn, JdbcError> {
    let ssl = match endpoint.tls {
        TlsMode::Disable => None,
        TlsMode::Require => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        TlsMode::VerifyFull => {
            let Some(ca) = &endpoint.ca_pem else {
                return Err(JdbcError::Certificate("VerifyFull needs tls.caSecretRef".into()));
            };
            // Read here too, so a bad bundle gets the same message as for PostgreSQL.
            crate::tls::verifying(ca)?;
            Some(SslOpts::default().with_root_certs(vec![ca.as_bytes().to_vec().into()]))
        }
    };
    let options = OptsBuilder::default()
        .ip_or_hostname(endpoint.url.host.clone())
        .tcp_port(endpoint.url.port)
        .user(Some(endpoint.user.clone()))
        .pass(Some(endpoint.password.clone()))
        .db_name(Some(endpoint.url.database.clone()))
        .prefer_socket(false)
        .ssl_opts(ssl);
    let mut conn = tokio::time::timeout(endpoint.connect_timeout, Conn::new(options))
        .await
        .map_err(|_| endpoint.timeout())?
        .map_err(|e| endpoint.connect_error(&e))?;
    if let Some(timeout) = endpoint.statement_timeout {
        // MariaDB limits every statement (seconds); MySQL only SELECTs (milliseconds).
        let statement = if is_mariadb(&mut conn).await? {
            format!("SET SESSION max_statement_time = {}", timeout.as_secs())
        } else {
            format!("SET SESSION max_execution_time = {}", timeout.as_millis())
        };
        run(endpoint, &mut conn, &statement).await?;
    }
    Ok(conn)
}

async fn is_mariadb(conn: &mut Conn) -> Result<bool, JdbcError> {
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(statement_failed(JdbcEngine::Mysql, "SELECT VERSION()"))?;
    Ok(version.is_some_and(|v| v.contains("MariaDB")))
}

async fn run(endpoint: &Endpoint, conn: &mut Conn, statement: &str) -> Result<(), JdbcError> {
    conn.query_drop(statement)
        .await
        .map_err(statement_failed(endpoint.url.engine, statement))
}

/// Who, where and how the session is.
pub async fn probe(endpoint: &Endpoint) -> Result<Reached, JdbcError> {
    let mut conn = connect(endpoint).await?;
    let statement = "SELECT VERSION(), CURRENT_USER(), DATABASE(), \
                     (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_version')";
    let row: Option<(String, String, Option<String>, Option<String>)> = conn
        .query_first(statement)
        .await
        .map_err(statement_failed(endpoint.url.engine, statement))?;
    let Some((server_version, user, database, tls)) = row else {
        return Err(JdbcError::Statement {
            engine: endpoint.url.engine,
            statement: statement.into(),
            reason: "no row".into(),
        });
    };
    let timeout_variable = if server_version.contains("MariaDB") {
        "SELECT CONCAT(@@max_statement_time, 's')"
    } else {
        "SELECT CONCAT(@@max_execution_time, 'ms')"
    };
    let statement_timeout: Option<String> = conn
        .query_first(timeout_variable)
        .await
        .map_err(statement_failed(endpoint.url.engine, timeout_variable))?;
    // The session ends cleanly; a failure here changes nothing about what was reached.
    let _ = conn.disconnect().await;
    Ok(Reached {
        engine: endpoint.url.engine,
        address: endpoint.address(),
        server_version,
        user,
        database: database.unwrap_or_default(),
        tls: tls.filter(|v| !v.is_empty()),
        statement_timeout: statement_timeout.unwrap_or_default(),
        elapsed: Default::default(),
    })
}
