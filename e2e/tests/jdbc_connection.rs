//! `kglue connection test` against the real servers (`e2e/kglue-postgres`, `e2e/kglue-mysql`):
//! the built binary, a catalog directory holding jdbc Connections, and a secrets folder laid out
//! as a run's pod has it. Each TLS mode reaches the server and reports what it reached; a wrong
//! password, a CA that did not sign the server's certificate, a missing Secret key and a server
//! that never answers each fail with a message naming the cause, the last within its timeout.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kglue_e2e::databases::{DATABASE, DatabaseServer, Engine, PASSWORD, USER};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("catalog")).expect("mkdir");
        Fixture { dir }
    }

    fn secret(&self, name: &str, keys: &[(&str, &str)]) {
        let folder = self.dir.path().join("secrets").join(name);
        std::fs::create_dir_all(&folder).expect("mkdir");
        for (key, value) in keys {
            std::fs::write(folder.join(key), value).expect("write");
        }
    }

    fn connection(&self, name: &str, jdbc: &str) {
        let manifest = format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Connection\nmetadata: {{name: {name}}}\nspec:\n  jdbc:\n{}\n",
            jdbc.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
        );
        std::fs::write(self.dir.path().join("catalog").join(format!("{name}.yaml")), manifest).expect("write");
    }

    fn test(&self, name: &str) -> (Output, Duration) {
        let kglue = kglue_e2e::workspace_binary("kglue").expect("the kglue binary is built");
        let started = Instant::now();
        let output = Command::new(kglue)
            .args(["connection", "test", name, "--catalog"])
            .arg(self.dir.path().join("catalog"))
            .arg("--secrets-dir")
            .arg(self.dir.path().join("secrets"))
            .env_remove("KGLUE_SECRETS_DIR")
            .output()
            .expect("kglue runs");
        (output, started.elapsed())
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn reached(fixture: &Fixture, name: &str) -> String {
    let (output, _) = fixture.test(name);
    assert!(output.status.success(), "{name}: {}", text(&output));
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn refused(fixture: &Fixture, name: &str) -> String {
    let (output, _) = fixture.test(name);
    assert!(!output.status.success(), "{name} was reached: {}", text(&output));
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// A CA that signed nothing the servers present.
fn stranger_ca() -> String {
    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).expect("a certificate").pem()
}

fn check(engine: Engine) {
    let server = DatabaseServer::start(engine).unwrap_or_else(|e| panic!("starting {engine:?}: {e}"));
    let fixture = Fixture::new();
    let url = server.jdbc_url();
    let ca = std::fs::read_to_string(server.ca_certificate()).expect("the server's CA");
    fixture.secret("db", &[("username", USER), ("password", &format!("{PASSWORD}\n"))]);
    fixture.secret("db-ca", &[("ca.crt", &ca)]);
    fixture.secret("stranger-ca", &[("ca.crt", &stranger_ca())]);
    fixture.secret("wrong", &[("username", USER), ("password", "not-the-password")]);
    fixture.secret("partial", &[("user", USER)]);
    let name = match engine {
        Engine::Postgres => "PostgreSQL",
        Engine::Mysql => "MySQL",
    };
    let address = format!("127.0.0.1:{}", server.port());

    // VerifyFull: the certificate checked against the CA and 127.0.0.1; a statement timeout set.
    fixture.connection(
        "verified",
        &format!(
            "url: {url}\ncredentialsSecretRef: {{name: db}}\ntls: {{mode: VerifyFull, caSecretRef: {{name: db-ca}}}}\nstatementTimeoutSeconds: 30"
        ),
    );
    let report = reached(&fixture, "verified");
    assert!(
        report.starts_with(&format!("reached {name} at {address}\n")),
        "{report}"
    );
    let field = |report: &str, label: &str| -> String {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{label}:")))
            .unwrap_or_else(|| panic!("no {label} in {report}"))
            .trim()
            .to_string()
    };
    assert!(!field(&report, "server version").is_empty(), "{report}");
    assert!(field(&report, "user").starts_with(USER), "{report}");
    assert_eq!(field(&report, "database"), DATABASE);
    assert!(field(&report, "tls").starts_with("TLSv1."), "{report}");
    let timeout = field(&report, "statement timeout");
    assert!(
        ["30s", "30.000000s", "30000ms"].contains(&timeout.as_str()),
        "the statement timeout is set in the session: {report}"
    );

    // Require (the default): encrypted, the certificate not checked.
    fixture.connection("encrypted", &format!("url: {url}\ncredentialsSecretRef: {{name: db}}"));
    let report = reached(&fixture, "encrypted");
    assert!(field(&report, "tls").starts_with("TLSv1."), "{report}");

    // Disable: plain text, and the report says so.
    fixture.connection(
        "plain",
        &format!("url: {url}\ncredentialsSecretRef: {{name: db}}\ntls: {{mode: Disable}}"),
    );
    let report = reached(&fixture, "plain");
    assert_eq!(field(&report, "tls"), "no (the session is not encrypted)");
    assert_eq!(field(&report, "statement timeout"), "none");

    // A wrong password: the server's own words.
    fixture.connection("wrong", &format!("url: {url}\ncredentialsSecretRef: {{name: wrong}}"));
    let message = refused(&fixture, "wrong");
    assert!(
        message.contains(&format!(
            "connection \"wrong\": cannot connect to {name} at {address} as \"{USER}\": "
        )),
        "{message}"
    );
    assert!(
        message.contains("password authentication failed") || message.contains("Access denied"),
        "{message}"
    );

    // A CA that did not sign the server's certificate.
    fixture.connection(
        "stranger",
        &format!(
            "url: {url}\ncredentialsSecretRef: {{name: db}}\ntls: {{mode: VerifyFull, caSecretRef: {{name: stranger-ca}}}}"
        ),
    );
    let message = refused(&fixture, "stranger");
    assert!(
        message.to_lowercase().contains("certificate") || message.contains("UnknownIssuer"),
        "{message}"
    );

    // A Secret without the password key: named, nothing sent.
    fixture.connection(
        "partial",
        &format!("url: {url}\ncredentialsSecretRef: {{name: partial, userKey: user}}"),
    );
    let message = refused(&fixture, "partial");
    assert!(
        message.starts_with("kglue: connection \"partial\": secret \"partial\" has no key \"password\""),
        "{message}"
    );

    // A server that accepts the connection and never answers: the connect timeout ends it.
    let silent = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let silent_port = silent.local_addr().expect("address").port();
    let scheme = url.split("://").next().expect("a scheme");
    fixture.connection(
        "silent",
        &format!(
            "url: {scheme}://127.0.0.1:{silent_port}/{DATABASE}\ncredentialsSecretRef: {{name: db}}\nconnectTimeoutSeconds: 2"
        ),
    );
    let (output, took) = fixture.test("silent");
    assert!(
        !output.status.success(),
        "a silent server was reached: {}",
        text(&output)
    );
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains(&format!("no answer from {name} at 127.0.0.1:{silent_port} within 2 s")),
        "{message}"
    );
    assert!(took < Duration::from_secs(15), "the timeout took {took:?}");
    drop(silent);

    // Not a database.
    std::fs::write(
        fixture.dir.path().join("catalog/lake.yaml"),
        "apiVersion: kglue.dev/v1alpha1\nkind: Connection\nmetadata: {name: lake}\nspec: {s3: {region: us-east-1}}\n",
    )
    .expect("write");
    let message = refused(&fixture, "lake");
    assert!(message.contains("connection \"lake\" is an s3 connection"), "{message}");
}

#[test]
fn postgres_connections_are_tested_in_every_tls_mode_and_fail_by_cause() {
    check(Engine::Postgres);
}

#[test]
fn mariadb_connections_are_tested_in_every_tls_mode_and_fail_by_cause() {
    check(Engine::Mysql);
}
