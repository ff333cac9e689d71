//! The local database servers (`e2e/kglue-postgres`, `e2e/kglue-mysql`) as the JDBC tests use
//! them: each starts with TLS verifiable against its own CA, a password user and a database,
//! refuses a wrong password, answers plain connections too, and leaves nothing behind when stopped.

use std::net::TcpListener;
use std::process::{Command, Output};

use kglue_e2e::databases::{DATABASE, DatabaseServer, Engine, PASSWORD, USER};

fn start(engine: Engine) -> DatabaseServer {
    match DatabaseServer::start(engine) {
        Ok(server) => server,
        Err(error) => panic!("starting the {engine:?} server failed: {error}"),
    }
}

/// The engine's own client over TCP, with `tls` (`verify` or `plain`) and `password`, asking the
/// server whether the session is encrypted.
fn connect(server: &DatabaseServer, tls: &str, password: &str) -> Output {
    let port = server.port().to_string();
    let ca = server.ca_certificate().display().to_string();
    let output = match server.engine() {
        Engine::Postgres => Command::new("psql")
            .args(["-X", "-tA", "-h", "127.0.0.1", "-p", &port, "-U", USER, "-d", DATABASE])
            .args(["-c", "select ssl from pg_stat_ssl where pid = pg_backend_pid()"])
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", if tls == "verify" { "verify-full" } else { "disable" })
            .env("PGSSLROOTCERT", &ca)
            .output(),
        Engine::Mysql => {
            let mut command = Command::new("mariadb");
            command
                .args(["--no-defaults", "-N", "-B", "-h", "127.0.0.1", "-P", &port, "-u", USER, DATABASE])
                .args(["-e", "select variable_value <> '' from information_schema.session_status where variable_name = 'Ssl_cipher'"])
                .env("MYSQL_PWD", password);
            if tls == "verify" {
                command.args(["--ssl-ca", &ca, "--ssl-verify-server-cert"]);
            } else {
                command.arg("--skip-ssl");
            }
            command.output()
        }
    };
    output.expect("the client runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn check(engine: Engine) {
    let server = start(engine);
    let version = server.sql("select version()").expect("a query as the user");
    assert!(!version.trim().is_empty(), "{engine:?}: no version");
    assert!(server.jdbc_url().ends_with(&format!(":{}/{DATABASE}", server.port())));

    let verified = connect(&server, "verify", PASSWORD);
    assert!(
        verified.status.success(),
        "{engine:?}: verify-full: {}",
        text(&verified)
    );
    let encrypted = String::from_utf8_lossy(&verified.stdout).trim().to_string();
    assert!(
        encrypted == "t" || encrypted == "1",
        "{engine:?}: not encrypted: {encrypted}"
    );

    let plain = connect(&server, "plain", PASSWORD);
    assert!(plain.status.success(), "{engine:?}: plain: {}", text(&plain));
    let encrypted = String::from_utf8_lossy(&plain.stdout).trim().to_string();
    assert!(
        encrypted == "f" || encrypted == "0",
        "{engine:?}: plain was encrypted: {encrypted}"
    );

    let refused = connect(&server, "verify", "wrong-password");
    assert!(!refused.status.success(), "{engine:?}: a wrong password was accepted");
    let message = text(&refused);
    assert!(
        message.contains("password authentication failed") || message.contains("Access denied"),
        "{engine:?}: {message}"
    );

    let state = server.state_dir().to_path_buf();
    let port = server.port();
    drop(server);
    assert!(!state.exists(), "{engine:?}: {} left behind", state.display());
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "{engine:?}: port {port} still held"
    );
}

#[test]
fn postgres_starts_with_tls_a_password_user_and_a_database() {
    check(Engine::Postgres);
}

#[test]
fn mariadb_starts_with_tls_a_password_user_and_a_database() {
    check(Engine::Mysql);
}
