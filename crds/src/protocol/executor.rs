//! One executor of a distributed run: the `kglue executor` command line that the runner renders
//! for the processes of `kglue run --workers N` and the operator for the executor pods of a Job
//! with `workers` (both with [`ExecutorCommand::to_args`]), and that the runner parses
//! ([`ExecutorCommand`], a clap `Args`). A round-trip test proves the two sides agree.

use std::path::PathBuf;

use clap::Args;

use super::attempt::{SECRETS_DIR, SECRETS_DIR_ENV, SPILL_DIR_ENV};

/// The subcommand an executor runs.
pub const SUBCOMMAND: &str = "executor";

/// The port a distributed attempt's scheduler listens on (every address of its pod).
pub const SCHEDULER_PORT: u16 = 50050;

/// The pod's IP (downward API `status.podIP`): where the driver and the other executors fetch an
/// executor pod's task output.
pub const POD_IP_ENV: &str = "KGLUE_POD_IP";

/// Label of an executor pod and its Kubernetes Job: the attempt's Kubernetes Job it serves.
pub const LABEL_EXECUTOR_OF: &str = "kglue.dev/executor-of";

/// How long an executor pod waits for its scheduler: the driver starts it after planning, which
/// reads the catalog and lists the sources first.
pub const POD_CONNECT_TIMEOUT_SECONDS: u64 = 600;

/// How an executor ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lifetime {
    /// When its stdin closes: the `kglue run` process that started it ended, however it ended.
    Stdin,
    /// When its scheduler has been unreachable for a while after serving it: the run's pod ended.
    /// Also restricts local folders to `--allow-local-path` (a pod uses object stores only).
    Pod,
}

impl Lifetime {
    fn as_str(self) -> &'static str {
        match self {
            Lifetime::Stdin => "stdin",
            Lifetime::Pod => "pod",
        }
    }
}

/// `kglue executor`'s arguments.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct ExecutorCommand {
    /// The run's scheduler, `http://HOST:PORT`.
    #[arg(long)]
    pub scheduler: String,
    /// Tasks run at once.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// The engine's memory pool, in bytes; operators spill beyond it.
    #[arg(long)]
    pub memory_bytes: u64,
    /// Where the engine spills and keeps its shuffle files.
    #[arg(long, env = SPILL_DIR_ENV)]
    pub spill_dir: PathBuf,
    /// Where the Secrets that the run's Connections refer to are: one folder per Secret.
    #[arg(long, env = SECRETS_DIR_ENV, default_value = SECRETS_DIR)]
    pub secrets_dir: PathBuf,
    /// The address the driver and the other executors reach this executor at.
    #[arg(long, env = POD_IP_ENV, default_value = "127.0.0.1")]
    pub advertise_host: String,
    /// How it ends.
    #[arg(long, value_enum, default_value_t = Lifetime::Stdin)]
    pub lifetime: Lifetime,
    /// How long to wait for the scheduler to accept connections, in seconds.
    #[arg(long, default_value_t = 30)]
    pub connect_timeout_seconds: u64,
    /// The run it serves (for logs and process lists).
    #[arg(long)]
    pub run_id: Option<String>,
    /// A local folder tasks may read and write (`file://` locations) when the lifetime is `pod`;
    /// repeatable.
    #[arg(long = "allow-local-path")]
    pub allow_local_paths: Vec<PathBuf>,
}

impl ExecutorCommand {
    /// The command's arguments: the subcommand and every field, the way [`ExecutorCommand`]
    /// parses them.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![SUBCOMMAND.to_string()];
        let mut flag = |name: &str, value: String| {
            args.push(format!("--{name}"));
            args.push(value);
        };
        flag("scheduler", self.scheduler.clone());
        flag("slots", self.slots.to_string());
        flag("memory-bytes", self.memory_bytes.to_string());
        flag("spill-dir", self.spill_dir.display().to_string());
        flag("secrets-dir", self.secrets_dir.display().to_string());
        flag("advertise-host", self.advertise_host.clone());
        flag("lifetime", self.lifetime.as_str().into());
        flag("connect-timeout-seconds", self.connect_timeout_seconds.to_string());
        if let Some(run_id) = &self.run_id {
            flag("run-id", run_id.clone());
        }
        for path in &self.allow_local_paths {
            flag("allow-local-path", path.display().to_string());
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Runner {
        #[command(subcommand)]
        command: Subcommand,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Subcommand {
        Executor(ExecutorCommand),
    }

    #[test]
    fn what_is_rendered_is_what_the_runner_parses() {
        let command = ExecutorCommand {
            scheduler: "http://10.0.0.7:50050".into(),
            slots: 4,
            memory_bytes: 3 << 30,
            spill_dir: PathBuf::from("/var/lib/kglue/spill"),
            secrets_dir: PathBuf::from(SECRETS_DIR),
            advertise_host: "10.0.0.9".into(),
            lifetime: Lifetime::Pod,
            connect_timeout_seconds: POD_CONNECT_TIMEOUT_SECONDS,
            run_id: Some("jr-0123456789".into()),
            allow_local_paths: vec![PathBuf::from("/data")],
        };
        let line = std::iter::once("kglue".to_string()).chain(command.to_args());
        let Subcommand::Executor(parsed) = Runner::try_parse_from(line).expect("parses").command;
        assert_eq!(parsed, command);
    }
}
