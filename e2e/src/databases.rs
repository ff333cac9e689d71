//! Real database servers for tests: PostgreSQL and MariaDB from Debian's packages, started by
//! `e2e/kglue-postgres` and `e2e/kglue-mysql`. Like [`S3Server`](crate::S3Server), each guard has
//! its own state directory and a free loopback port, and the server stops with the test process
//! (`--owner-pid`) even if the guard is never dropped.

use std::path::{Path, PathBuf};

use crate::s3::start_on_free_port;
use crate::{Error, run_script};

/// The password user every test server is started with (a superuser, owner of the database).
pub const USER: &str = "kglue";
/// Its password.
pub const PASSWORD: &str = "kglue-secret";
/// The database every test server has.
pub const DATABASE: &str = "kglue";

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL (`e2e/kglue-postgres`).
    Postgres,
    /// MariaDB, speaking the MySQL protocol (`e2e/kglue-mysql`).
    Mysql,
}

impl Engine {
    fn script(self) -> &'static str {
        match self {
            Engine::Postgres => "kglue-postgres",
            Engine::Mysql => "kglue-mysql",
        }
    }

    /// The scripts' variables' prefix.
    fn prefix(self) -> &'static str {
        match self {
            Engine::Postgres => "KGLUE_POSTGRES",
            Engine::Mysql => "KGLUE_MYSQL",
        }
    }

    /// The JDBC URL scheme, as Glue writes it.
    pub fn jdbc_scheme(self) -> &'static str {
        match self {
            Engine::Postgres => "jdbc:postgresql",
            Engine::Mysql => "jdbc:mysql",
        }
    }

    /// The script's client subcommand (psql, mariadb).
    fn client(self) -> &'static str {
        match self {
            Engine::Postgres => "psql",
            Engine::Mysql => "mariadb",
        }
    }
}

/// A running database server with TLS on, one password user and one database. Dropping it stops
/// the server and deletes its state directory, data included.
pub struct DatabaseServer {
    engine: Engine,
    state_dir: PathBuf,
    port: u16,
}

impl DatabaseServer {
    /// Installs the server if the machine has none (root only), then starts a fresh one on a free
    /// loopback port, owned by this process.
    pub fn start(engine: Engine) -> Result<Self, Error> {
        start_on_free_port(
            |port| DatabaseServer {
                engine,
                state_dir: std::env::temp_dir().join(format!(
                    "kglue-e2e-{}-{}-{port}",
                    engine.client(),
                    std::process::id()
                )),
                port,
            },
            |server| server.script(&["start", "--owner-pid", &std::process::id().to_string()]),
        )
    }

    /// Which server this is.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server as a JDBC URL, the way a Glue connection names it:
    /// `jdbc:postgresql://127.0.0.1:PORT/kglue`, `jdbc:mysql://127.0.0.1:PORT/kglue`.
    pub fn jdbc_url(&self) -> String {
        format!("{}://127.0.0.1:{}/{DATABASE}", self.engine.jdbc_scheme(), self.port)
    }

    /// The CA that signed the server's certificate (for 127.0.0.1 and localhost).
    pub fn ca_certificate(&self) -> PathBuf {
        self.state_dir.join("tls/ca.crt")
    }

    /// The directory holding the server's state and logs.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Runs `sql` with the engine's own client (psql, mariadb) as the password user in the
    /// database, and returns what it printed: unaligned, tab-separated rows without headers.
    pub fn sql(&self, sql: &str) -> Result<String, Error> {
        let args: &[&str] = match self.engine {
            Engine::Postgres => &["psql", "-v", "ON_ERROR_STOP=1", "-tAF", "\t", "-c", sql],
            Engine::Mysql => &["mariadb", "-N", "-B", "-e", sql],
        };
        self.script(args)
    }

    /// [`DatabaseServer::sql`] in another database of the server (one the test created).
    pub fn sql_in(&self, database: &str, sql: &str) -> Result<String, Error> {
        let args: &[&str] = match self.engine {
            Engine::Postgres => &["psql", "-d", database, "-v", "ON_ERROR_STOP=1", "-tAF", "\t", "-c", sql],
            Engine::Mysql => &["mariadb", "-D", database, "-N", "-B", "-e", sql],
        };
        self.script(args)
    }

    fn script(&self, args: &[&str]) -> Result<String, Error> {
        let prefix = self.engine.prefix();
        run_script(
            self.engine.script(),
            args,
            &[
                (&format!("{prefix}_STATE"), self.state_dir.display().to_string()),
                (&format!("{prefix}_PORT"), self.port.to_string()),
                (&format!("{prefix}_USER"), USER.to_string()),
                (&format!("{prefix}_PASSWORD"), PASSWORD.to_string()),
                (&format!("{prefix}_DATABASE"), DATABASE.to_string()),
            ],
        )
    }
}

impl DatabaseServer {
    /// A jdbc Connection spec reaching this server (TLS required, not verified) with the
    /// credentials of [`Credentials`], as a test builds an endpoint from it.
    pub fn jdbc_connection(&self) -> kglue_crds::connection::JdbcConnection {
        serde_json::from_value(serde_json::json!({
            "url": self.jdbc_url(), "credentialsSecretRef": {"name": "db"}
        }))
        .unwrap_or_else(|e| panic!("a jdbc connection spec: {e}"))
    }
}

/// The Secret values of every test server: its user and password under the default keys.
pub struct Credentials;

impl kglue_crds::protocol::storage::SecretValues for Credentials {
    type Error = String;

    fn value(&mut self, _secret: &str, key: &str) -> Result<Option<String>, String> {
        Ok(match key {
            "username" => Some(USER.into()),
            "password" => Some(PASSWORD.into()),
            _ => None,
        })
    }

    fn missing(&self, secret: &str, key: &str) -> String {
        format!("{secret} has no {key}")
    }
}

impl Drop for DatabaseServer {
    fn drop(&mut self) {
        if let Err(error) = self.script(&["stop"]) {
            eprintln!("warning: stopping the {:?} server failed: {error}", self.engine);
        }
    }
}
