//! Real PostgreSQL clients of `kglue serve` (a Session's pod or a local server): psql, Python's
//! psycopg and pgJDBC, each run as its own process the way a person or a tool would.

use std::process::Command;

use crate::repo_root;

/// What a client printed: whether it succeeded, stdout, stderr.
#[derive(Debug)]
pub struct Answer {
    /// Exit status 0.
    pub ok: bool,
    /// Standard output.
    pub out: String,
    /// Standard error.
    pub err: String,
}

impl Answer {
    fn of(output: std::io::Result<std::process::Output>, what: &str) -> Answer {
        match output {
            Ok(output) => Answer {
                ok: output.status.success(),
                out: String::from_utf8_lossy(&output.stdout).into_owned(),
                err: String::from_utf8_lossy(&output.stderr).into_owned(),
            },
            Err(e) => Answer {
                ok: false,
                out: String::new(),
                err: format!("{what} did not run: {e}"),
            },
        }
    }
}

/// Where a server is and who logs in.
#[derive(Clone, Debug)]
pub struct Login {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl Login {
    /// psql -c `sql`, unaligned, comma-separated, tuples only, stopping at the first error.
    pub fn psql(&self, sql: &str) -> Answer {
        let output = Command::new("psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-tA", "-F", ","])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                &self.user,
                "-d",
                "kglue",
            ])
            .args(["-c", sql])
            .env("PGPASSWORD", &self.password)
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10")
            .output();
        Answer::of(output, "psql")
    }

    /// A Python script with `conn`, a psycopg connection, open (python3 on PATH must have
    /// psycopg: the test venv of e2e/run-tests.sh).
    pub fn psycopg(&self, body: &str) -> Answer {
        let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
        let script = format!(
            "import datetime, decimal, psycopg\nwith psycopg.connect(host='127.0.0.1', port={}, user={:?}, password={:?}, dbname='kglue', sslmode='disable', connect_timeout=10) as conn:\n{indented}",
            self.port, self.user, self.password
        );
        Answer::of(Command::new("python3").args(["-c", &script]).output(), "python3")
    }

    /// A prepared statement through pgJDBC (e2e/clients/JdbcQuery.java, the driver from
    /// e2e/kglue-pgjdbc): a header of `label:type` then the rows, comma-separated; on an error,
    /// `SQLState CODE: message` on stderr.
    pub fn jdbc(&self, sql: &str, parameter: Option<i64>) -> Answer {
        let jar = Answer::of(
            Command::new(repo_root().join("e2e/kglue-pgjdbc")).output(),
            "kglue-pgjdbc",
        );
        if !jar.ok {
            return jar;
        }
        let url = format!("jdbc:postgresql://127.0.0.1:{}/kglue?sslmode=disable", self.port);
        let mut command = Command::new("java");
        command
            .args(["-cp", jar.out.trim()])
            .arg(repo_root().join("e2e/clients/JdbcQuery.java"))
            .args([url.as_str(), &self.user, &self.password, sql]);
        command.args(parameter.map(|p| p.to_string()));
        Answer::of(command.output(), "java")
    }
}
