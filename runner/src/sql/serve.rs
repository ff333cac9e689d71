//! `kglue serve`: a [`SqlSession`] over the PostgreSQL wire protocol, for psql, JDBC and BI tools
//! and notebooks (a Session's pod runs it). The protocol, PostgreSQL's `pg_catalog` and the
//! functions clients ask for come from `datafusion-postgres`; kglue adds what a shared endpoint
//! over the lake needs:
//!
//! - **who may connect**: one user name and a password, checked with SCRAM-SHA-256;
//! - **the sandbox**: every statement passes [`check_wire`] before it is planned, in the simple and
//!   the extended protocol alike (writes, paths and engine settings are refused);
//! - **a live catalog**: the catalog is read again before each statement, so Tables applied after
//!   the server started are queryable;
//! - **activity**: statements, errors, rows returned and bytes read, counted here and written to
//!   the Session's `status.activity` ([`ActivityReporter`]), which the operator's idle timeout
//!   reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::portal::Portal;
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, ErrorHandler, PgWireConnectionState, PgWireServerHandlers,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use futures::{Sink, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kglue_crds::protocol::session::ACTIVITY_FIELD_MANAGER;
use kglue_crds::session::{Session, SessionActivity};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio::net::TcpListener;

use super::{SqlError, SqlSession};
use crate::etl::sandbox::check_session;

/// SCRAM iterations, PostgreSQL's default.
const SCRAM_ITERATIONS: usize = 4096;

/// Who may connect.
#[derive(Clone)]
pub struct Login {
    /// The one user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// What a server counts, shared by its connections.
#[derive(Debug, Default)]
pub struct Activity {
    queries: AtomicI64,
    errors: AtomicI64,
    rows: AtomicI64,
    bytes: AtomicI64,
    last: Mutex<Option<Timestamp>>,
}

impl Activity {
    fn statements(&self, n: usize) {
        self.queries.fetch_add(n as i64, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Timestamp::now());
    }

    fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts as the Session's `status.activity` says them.
    pub fn snapshot(&self) -> SessionActivity {
        SessionActivity {
            serving_since: None,
            pod: None,
            last_activity_time: self
                .last
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .map(|t| t.to_string()),
            queries: self.queries.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rows_returned: self.rows.load(Ordering::Relaxed),
            bytes_scanned: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The engine could not be prepared for PostgreSQL clients.
    #[error("preparing pg_catalog: {0}")]
    Catalog(String),
}

/// The statement check of the wire protocol: the session sandbox ([`check_session`]), plus what
/// PostgreSQL clients send to set up a connection. `SET` of a client variable (`DateStyle`,
/// `statement_timeout`, `application_name`, …) and transaction statements are answered per
/// connection by the protocol layer; `SET datafusion.*` would change the engine for every
/// connection and is refused; `DECLARE … CURSOR FOR query` is checked as its query.
pub fn check_wire(statement: &Statement) -> Result<(), SqlError> {
    match statement {
        Statement::Set(Set::SingleAssignment { variable, .. })
            if variable.to_string().to_lowercase().starts_with("datafusion.") =>
        {
            Err(SqlError::Refused(crate::etl::sandbox::RefusedInSession {
                kind: "SET".into(),
                why: "it changes the engine's settings for every connection of the session",
            }))
        }
        Statement::Set(_)
        | Statement::ShowVariable { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Ok(()),
        Statement::Declare { stmts } => {
            for declare in stmts {
                if let Some(query) = &declare.for_query {
                    check_session(&DfStatement::Statement(Box::new(Statement::Query(query.clone()))))?;
                }
            }
            Ok(())
        }
        other => Ok(check_session(&DfStatement::Statement(Box::new(other.clone())))?),
    }
}

fn refused(error: SqlError) -> PgWireError {
    // 42501 insufficient_privilege for the sandbox, 42601 syntax_error, and 58000 system_error
    // when the catalog cannot be read.
    let code = match error {
        SqlError::Refused(_) => "42501",
        SqlError::Syntax(_) => "42601",
        _ => "58000",
    };
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), error.to_string())))
}

/// The hook every statement passes before datafusion-postgres plans it: the sandbox, then the
/// catalog read again.
struct Guard {
    session: Arc<SqlSession>,
}

impl Guard {
    async fn admit(&self, statement: &Statement) -> Option<PgWireResult<Response>> {
        if let Err(error) = check_wire(statement) {
            return Some(Err(refused(error)));
        }
        if let Err(error) = self.session.refresh().await {
            return Some(Err(refused(error)));
        }
        None
    }
}

#[async_trait]
impl QueryHook for Guard {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.admit(statement).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match self.admit(statement).await {
            Some(Err(error)) => Some(Err(error)),
            _ => None,
        }
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}

/// datafusion-postgres's query handlers, with what they answer counted.
struct Counted {
    inner: Arc<DfSessionService>,
    activity: Arc<Activity>,
}

impl Counted {
    fn count(&self, response: Response) -> Response {
        match response {
            Response::Query(mut query) => {
                let activity = self.activity.clone();
                query.data_rows = Box::pin(query.data_rows.inspect(move |row| {
                    if row.is_ok() {
                        activity.rows.fetch_add(1, Ordering::Relaxed);
                    }
                }));
                Response::Query(query)
            }
            other => other,
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Counted {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match SimpleQueryHandler::do_query(self.inner.as_ref(), client, query).await {
            Ok(responses) => {
                self.activity.statements(responses.len());
                Ok(responses.into_iter().map(|r| self.count(r)).collect())
            }
            // The error itself is counted by `ErrorCounter`, as every error sent is.
            Err(error) => {
                self.activity.statements(1);
                Err(error)
            }
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Counted {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.inner.query_parser()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.activity.statements(1);
        ExtendedQueryHandler::do_query(self.inner.as_ref(), client, portal, max_rows)
            .await
            .map(|response| self.count(response))
    }
}

/// Counts the errors sent to clients once they logged in: a statement refused or failing at any
/// step (parse, bind, execute, or while its rows stream). Failed logins are not statements.
struct ErrorCounter {
    activity: Arc<Activity>,
}

impl ErrorHandler for ErrorCounter {
    fn on_error<C>(&self, client: &C, _error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if !matches!(
            client.state(),
            PgWireConnectionState::AwaitingSslRequest
                | PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        ) {
            self.activity.error();
        }
    }
}

/// The one login, as SCRAM wants it: a salted password, computed once.
#[derive(Debug)]
struct OneUser {
    username: String,
    salt: Vec<u8>,
    salted: Vec<u8>,
    /// What another user name is checked against: a password nobody knows, so the exchange runs
    /// to its end and fails as a wrong password does (as PostgreSQL does for unknown roles).
    decoy: Vec<u8>,
}

#[async_trait]
impl AuthSource for OneUser {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        // Another user name gets the same exchange and the same answer as a wrong password: a
        // client cannot learn which user names exist.
        let salted = if login.user() == Some(self.username.as_str()) {
            &self.salted
        } else {
            &self.decoy
        };
        Ok(Password::new(Some(self.salt.clone()), salted.clone()))
    }
}

struct Handlers {
    service: Arc<Counted>,
    errors: Arc<ErrorCounter>,
    user: Arc<OneUser>,
    parameters: Arc<DefaultServerParameterProvider>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        self.errors.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        // A handler per connection: it keeps the connection's SASL state.
        let mut scram = ScramAuth::new(self.user.clone());
        scram.set_iterations(SCRAM_ITERATIONS);
        Arc::new(SASLAuthStartupHandler::new(self.parameters.clone()).with_scram(scram))
    }
}

/// A server ready to accept connections: its addresses are bound.
pub struct Server {
    listeners: Vec<TcpListener>,
    handlers: Arc<Handlers>,
    activity: Arc<Activity>,
    session: Arc<SqlSession>,
}

impl Server {
    /// Binds every address of `listen` on `port` (duplicates once) and prepares `session` for
    /// PostgreSQL clients.
    pub async fn bind(session: SqlSession, login: Login, listen: &[String], port: u16) -> Result<Server, ServeError> {
        let session = Arc::new(session);
        let ctx = Arc::new(session.context());
        setup_pg_catalog(&ctx, super::CATALOG, EmptyContextProvider)
            .map_err(|e| ServeError::Catalog(e.strip_backtrace().to_string()))?;
        let mut hooks: Vec<Arc<dyn QueryHook>> = vec![Arc::new(Guard {
            session: session.clone(),
        })];
        hooks.extend(default_hooks());
        let activity = Arc::new(Activity::default());
        let salt: [u8; 16] = rand::random();
        let user = Arc::new(OneUser {
            username: login.username,
            salted: gen_salted_password(&login.password, &salt, SCRAM_ITERATIONS),
            decoy: gen_salted_password(&format!("{:x}", rand::random::<u128>()), &salt, SCRAM_ITERATIONS),
            salt: salt.to_vec(),
        });
        let handlers = Arc::new(Handlers {
            service: Arc::new(Counted {
                inner: Arc::new(DfSessionService::new_with_hooks(ctx, hooks)),
                activity: activity.clone(),
            }),
            errors: Arc::new(ErrorCounter {
                activity: activity.clone(),
            }),
            user,
            parameters: Arc::new(DefaultServerParameterProvider::default()),
        });
        let mut addresses: Vec<&String> = Vec::new();
        for address in listen {
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
        let mut listeners = Vec::new();
        for address in addresses {
            let at = format!("{address}:{port}");
            let listener = TcpListener::bind(&at)
                .await
                .map_err(|source| ServeError::Listen { address: at, source })?;
            listeners.push(listener);
        }
        Ok(Server {
            listeners,
            handlers,
            activity,
            session,
        })
    }

    /// Where it listens.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// What it counts.
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// Serves until the process ends; bytes read from storage are added to the activity as
    /// statements read them.
    pub async fn run(self) {
        let bytes = {
            let activity = self.activity.clone();
            let session = self.session.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let read = session.take_reads().bytes();
                    activity.bytes.fetch_add(read as i64, Ordering::Relaxed);
                }
            })
        };
        let accepts = self.listeners.into_iter().map(|listener| {
            let handlers = self.handlers.clone();
            async move {
                loop {
                    match listener.accept().await {
                        Ok((socket, peer)) => {
                            let handlers = handlers.clone();
                            tokio::spawn(async move {
                                if let Err(error) =
                                    datafusion_postgres::pgwire::tokio::process_socket(socket, None, handlers).await
                                {
                                    eprintln!("kglue serve: connection from {peer} ended: {error}");
                                }
                            });
                        }
                        Err(error) => {
                            // Out of file descriptors and the like: wait rather than spin.
                            eprintln!("kglue serve: accepting a connection failed: {error}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        });
        futures::future::join_all(accepts).await;
        bytes.abort();
    }
}

/// datafusion-postgres's own hooks (cursors, `SET`/`SHOW`, transactions), after the guard.
fn default_hooks() -> Vec<Arc<dyn QueryHook>> {
    use datafusion_postgres::hooks::{cursor, set_show, transactions};
    vec![
        Arc::new(cursor::CursorStatementHook),
        Arc::new(set_show::SetShowHook),
        Arc::new(transactions::TransactionStatementHook),
    ]
}

/// Writes a server's activity into its Session's `status.activity`, under its own field manager
/// (the operator owns the rest of the status): once when it starts serving, then whenever the
/// counts change, at most every `every`.
pub struct ActivityReporter {
    sessions: Api<Session>,
    name: String,
    pod: Option<String>,
    serving_since: String,
}

impl ActivityReporter {
    /// A reporter for Session `name` of `namespace`, whose pod is `pod`.
    pub fn new(client: Client, namespace: &str, name: &str, pod: Option<String>) -> ActivityReporter {
        ActivityReporter {
            sessions: Api::namespaced(client, namespace),
            name: name.to_string(),
            pod,
            serving_since: Timestamp::now().to_string(),
        }
    }

    async fn write(&self, activity: &SessionActivity) -> Result<(), kube::Error> {
        let mut activity = activity.clone();
        activity.serving_since = Some(self.serving_since.clone());
        activity.pod = self.pod.clone();
        let patch = serde_json::json!({
            "apiVersion": format!("{}/{}", kglue_crds::API_GROUP, kglue_crds::API_VERSION),
            "kind": "Session",
            "metadata": {"name": self.name},
            "status": {"activity": activity},
        });
        self.sessions
            .patch_status(
                &self.name,
                &PatchParams::apply(ACTIVITY_FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map(|_| ())
    }

    /// Reports until the process ends. The first write must succeed (the operator waits for it
    /// to call the session Ready); later failures are logged and retried on the next tick.
    pub async fn run(self, activity: Arc<Activity>, every: Duration) -> Result<(), kube::Error> {
        let mut last = activity.snapshot();
        self.write(&last).await?;
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = activity.snapshot();
            if now != last {
                match self.write(&now).await {
                    Ok(()) => last = now,
                    Err(error) => eprintln!("kglue serve: cannot write the session's activity: {error}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser as SqlParser;

    fn check(sql: &str) -> Result<(), String> {
        let statements = SqlParser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        check_wire(&statements[0]).map_err(|e| e.to_string())
    }

    #[test]
    fn what_clients_send_to_set_up_a_connection_passes() {
        for sql in [
            "SET extra_float_digits = 3",
            "SET DateStyle = 'ISO'",
            "SET statement_timeout = 1000",
            "SET TIME ZONE 'UTC'",
            "SHOW TimeZone",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "DECLARE c CURSOR FOR SELECT 1",
            "FETCH 10 FROM c",
            "CLOSE c",
            "SELECT * FROM sales.orders",
            "EXPLAIN SELECT 1",
        ] {
            assert_eq!(check(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn writes_paths_and_engine_settings_are_refused_by_name() {
        for (sql, kind) in [
            ("SET datafusion.execution.target_partitions = 1", "SET"),
            ("INSERT INTO sales.orders VALUES (1)", "INSERT"),
            ("UPDATE sales.orders SET id = 2", "UPDATE"),
            ("COPY sales.orders TO '/tmp/x'", "COPY"),
            ("DROP TABLE sales.orders", "DROP TABLE"),
            ("CREATE SCHEMA evil", "CREATE SCHEMA"),
            ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", "INSERT"),
        ] {
            let error = check(sql).expect_err(sql);
            assert!(
                error.starts_with(&format!("{kind} is not allowed in a SQL session")),
                "{sql}: {error}"
            );
        }
    }

    #[test]
    fn activity_counts_statements_errors_and_the_time_of_the_last() {
        let activity = Activity::default();
        assert_eq!(activity.snapshot().last_activity_time, None);
        activity.statements(2);
        activity.error();
        let seen = activity.snapshot();
        assert_eq!((seen.queries, seen.errors), (2, 1));
        assert!(seen.last_activity_time.is_some());
    }
}
