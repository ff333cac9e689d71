//! A Session's pod: the `kglue serve` command line the operator renders ([`ServeCommand::to_args`])
//! and the runner parses ([`ServeArgs`]), the environment it reads, and the field manager of the
//! activity it writes into the Session's status. A round-trip test proves both sides agree.

use clap::Args;

use crate::common::WorkerResources;

/// The subcommand the session's pod runs.
pub const SUBCOMMAND: &str = "serve";
/// The variable holding the session's password (from `spec.auth.passwordSecretRef`).
pub const PASSWORD_ENV: &str = "KGLUE_SESSION_PASSWORD";
/// The pod's IP (downward API `status.podIP`): where the session listens, besides 127.0.0.1 for
/// `kubectl port-forward`.
pub const POD_IP_ENV: &str = "KGLUE_POD_IP";
/// The field manager of the pod's writes to `status.activity`: the operator owns the rest of
/// the status, the pod only this.
pub const ACTIVITY_FIELD_MANAGER: &str = "kglue-session";
/// Label on a session's pod and Service: the Session's name.
pub const LABEL_SESSION: &str = "kglue.dev/session";

/// What `kglue serve` is told by the operator.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct ServeArgs {
    /// Serve the catalog of this namespace (Tables read live from the API server).
    #[arg(long = "namespace", short = 'n', env = crate::protocol::attempt::NAMESPACE_ENV)]
    pub namespace: Option<String>,
    /// The Session whose `status.activity` the server keeps up to date (in the namespace).
    #[arg(long = "session")]
    pub session: Option<String>,
    /// The port to listen on.
    #[arg(long, default_value_t = 5432)]
    pub port: u16,
    /// Addresses to listen on (repeat for several).
    #[arg(long = "listen", default_value = "127.0.0.1")]
    pub listen: Vec<String>,
    /// The user name clients log in as.
    #[arg(long, default_value = "kglue")]
    pub username: String,
    /// Expose only these databases (repeat); none: every database, present and future.
    #[arg(long = "database")]
    pub databases: Vec<String>,
    /// The pod's CPUs: the engine's parallelism (unset: the machine's).
    #[arg(long)]
    pub cpu: Option<u32>,
    /// The pod's memory in GiB: the engine's memory pool is sized from it, and queries beyond it
    /// spill (unset: no pool, as on a laptop).
    #[arg(long = "memory-gib")]
    pub memory_gib: Option<u32>,
}

/// The `kglue serve` command line of a Session's pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeCommand {
    /// The Session's name.
    pub session: String,
    /// The port.
    pub port: u16,
    /// The user name.
    pub username: String,
    /// The databases exposed (empty: all).
    pub databases: Vec<String>,
    /// The worker size's CPU and memory.
    pub worker: WorkerResources,
}

impl ServeCommand {
    /// The container's `args` (the image's entrypoint is `kglue`). The namespace comes from the
    /// downward API, the addresses from the pod's IP (`$(KGLUE_POD_IP)`, expanded by the
    /// kubelet).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            SUBCOMMAND.to_string(),
            "--session".into(),
            self.session.clone(),
            "--port".into(),
            self.port.to_string(),
            "--listen".into(),
            format!("$({POD_IP_ENV})"),
            "--listen".into(),
            "127.0.0.1".into(),
            "--username".into(),
            self.username.clone(),
        ];
        for database in &self.databases {
            args.push("--database".into());
            args.push(database.clone());
        }
        args.extend([
            "--cpu".into(),
            self.worker.cpu.to_string(),
            "--memory-gib".into(),
            self.worker.memory_gib.to_string(),
        ]);
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn what_the_operator_writes_is_what_the_runner_reads() {
        let command = ServeCommand {
            session: "adhoc".into(),
            port: 15432,
            username: "analyst".into(),
            databases: vec!["sales".into(), "web".into()],
            worker: WorkerResources { cpu: 2, memory_gib: 8 },
        };
        let mut argv = vec!["kglue".to_string()];
        // The kubelet expands $(KGLUE_POD_IP); here, as on the local node agent, to 127.0.0.1.
        argv.extend(
            command
                .to_args()
                .into_iter()
                .skip(1)
                .map(|a| a.replace(&format!("$({POD_IP_ENV})"), "10.1.2.3")),
        );
        let parsed = Cli::try_parse_from(argv).expect("parses").serve;
        assert_eq!(parsed.session.as_deref(), Some("adhoc"));
        assert_eq!(parsed.port, 15432);
        assert_eq!(parsed.listen, vec!["10.1.2.3".to_string(), "127.0.0.1".to_string()]);
        assert_eq!(parsed.username, "analyst");
        assert_eq!(parsed.databases, vec!["sales".to_string(), "web".to_string()]);
        assert_eq!((parsed.cpu, parsed.memory_gib), (Some(2), Some(8)));
    }
}
