//! One attempt's pod: the `kglue attempt` command line the operator renders
//! ([`AttemptCommand::to_args`]) and the runner parses ([`AttemptArgs`], a clap `Args`), the
//! environment the pod gets from the downward API, where Secrets, spill space and the termination
//! message live, the labels of everything a run makes, and the field managers of the runner's
//! writes. A round-trip test proves that what the operator writes is what the runner reads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use crate::common::{WorkerResources, WorkerSize};
use crate::run_result::{ReportingPod, RunOwnerKind};

/// The subcommand the pod runs.
pub const SUBCOMMAND: &str = "attempt";
/// Where the runner finds the Secrets of its Connections: one folder per Secret, one file per key.
pub const SECRETS_DIR: &str = "/var/run/secrets/kglue";
/// The variable that moves [`SECRETS_DIR`] (for `kglue crawl` and `kglue run` too).
pub const SECRETS_DIR_ENV: &str = "KGLUE_SECRETS_DIR";
/// Where the runner spills in a pod (an emptyDir).
pub const SPILL_DIR: &str = "/var/lib/kglue/spill";
/// The variable that sets the spill folder.
pub const SPILL_DIR_ENV: &str = "KGLUE_SPILL_DIR";
/// The container's termination message file.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// The pod's namespace (downward API).
pub const NAMESPACE_ENV: &str = "KGLUE_NAMESPACE";
/// The attempt's Kubernetes Job, which names and owns the RunResult (downward API).
pub const JOB_NAME_ENV: &str = "KGLUE_JOB_NAME";
/// That Job's UID (downward API).
pub const JOB_UID_ENV: &str = "KGLUE_JOB_UID";

/// The pod's own name, which the RunResult names as its creator (downward API).
pub const POD_NAME_ENV: &str = "KGLUE_POD_NAME";
/// The pod's UID (downward API).
pub const POD_UID_ENV: &str = "KGLUE_POD_UID";

/// The pod fields each variable comes from, for the container's `env`.
pub const POD_ENV: [(&str, &str); 5] = [
    (NAMESPACE_ENV, "metadata.namespace"),
    (JOB_NAME_ENV, "metadata.labels['batch.kubernetes.io/job-name']"),
    (JOB_UID_ENV, "metadata.labels['batch.kubernetes.io/controller-uid']"),
    (POD_NAME_ENV, "metadata.name"),
    (POD_UID_ENV, "metadata.uid"),
];

/// Label: the kind of the object a run belongs to.
pub const LABEL_OWNER_KIND: &str = "kglue.dev/owner-kind";
/// Label: the object's name (when it fits a label value).
pub const LABEL_OWNER_NAME: &str = "kglue.dev/owner-name";
/// Label: the object's UID, which the operator selects an object's attempts by.
pub const LABEL_OWNER_UID: &str = "kglue.dev/owner-uid";
/// Label: the run id.
pub const LABEL_RUN_ID: &str = "kglue.dev/run-id";
/// Label: the attempt.
pub const LABEL_ATTEMPT: &str = "kglue.dev/attempt";

/// The labels of everything one run makes (its Kubernetes Jobs and pods, its RunResults): the
/// owner's kind and name (a label value holds at most 63 characters; a longer name is found
/// through the spec) and the run id.
pub fn run_labels(kind: RunOwnerKind, owner_name: &str, run_id: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_OWNER_KIND.to_string(), kind.as_str().to_string()),
        (LABEL_RUN_ID.to_string(), run_id.to_string()),
    ]);
    if owner_name.len() <= 63 {
        labels.insert(LABEL_OWNER_NAME.to_string(), owner_name.to_string());
    }
    labels
}

/// The field manager of the Tables (and Databases) a run writes: `kglue-job-<name>` or
/// `kglue-crawler-<name>`, so `managedFields` say which job or crawler owns which fields.
pub fn table_field_manager(kind: RunOwnerKind, owner_name: &str) -> String {
    match kind {
        RunOwnerKind::Job => format!("kglue-job-{owner_name}"),
        RunOwnerKind::Crawler => format!("kglue-crawler-{owner_name}"),
    }
}

/// What the operator decides about an attempt: everything on its command line.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct AttemptCommand {
    /// Job or Crawler.
    #[arg(long, value_parser = parse_kind)]
    pub kind: RunOwnerKind,
    /// The Job's or Crawler's name.
    #[arg(long)]
    pub name: String,
    /// The run id.
    #[arg(long)]
    pub run_id: String,
    /// The attempt, 0 for the first.
    #[arg(long)]
    pub attempt: i32,
    /// The run's arguments, a JSON object of strings (Job only). Kept as written: a value that is
    /// not such an object fails the attempt with a report, not the command line.
    #[arg(long)]
    pub arguments: Option<String>,
    /// The pod's worker size; default: the Job's.
    #[arg(long, value_parser = parse_worker_size)]
    pub worker_size: Option<WorkerSize>,
    /// The pod's CPU cores (the operator passes what it gave the pod); default: the worker size's.
    #[arg(long, requires = "memory_gib")]
    pub cpus: Option<u32>,
    /// The pod's memory in GiB; default: the worker size's.
    #[arg(long, requires = "cpus")]
    pub memory_gib: Option<u32>,
    /// Where the Secrets that Connections refer to are mounted: one folder per Secret.
    #[arg(long, env = SECRETS_DIR_ENV, default_value = SECRETS_DIR)]
    pub secrets_dir: PathBuf,
    /// A local folder the run may read and write (`file://` locations); repeatable. Without
    /// any, an attempt uses object stores only.
    #[arg(long = "allow-local-path")]
    pub allow_local_paths: Vec<PathBuf>,
    /// Where the engine spills; default: the system's temporary directory.
    #[arg(long, env = SPILL_DIR_ENV)]
    pub spill_dir: Option<PathBuf>,
    /// Where the one-line summary goes that the kubelet keeps as the termination message.
    #[arg(long, default_value = TERMINATION_LOG)]
    pub termination_log: PathBuf,
    /// A settle attempt instead of the work: `commit` finishes the commit attempt `--attempt`
    /// decided (its RunResult says Committing), `cleanup` removes what an attempt that ended
    /// without deciding left in the sinks' locations.
    #[arg(long, value_parser = parse_settle)]
    pub settle: Option<SettleMode>,
    /// A streaming attempt serves its Prometheus metrics (`/metrics`: batches, records, lag,
    /// batch duration) on this address, e.g. `0.0.0.0:9464`.
    #[arg(long)]
    pub metrics_address: Option<String>,
    /// A distributed attempt (the Job's `workers`): this many executor pods, which the operator
    /// starts once this pod runs, register with the scheduler this attempt hosts on
    /// `--scheduler-port` of every address.
    #[arg(long, requires = "scheduler_port")]
    pub workers: Option<u32>,
    /// The port of a distributed attempt's scheduler.
    #[arg(long, requires = "workers")]
    pub scheduler_port: Option<u16>,
}

/// Which pod an attempt runs in, from the downward API.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct AttemptPod {
    /// The namespace of the run (the downward API sets it).
    #[arg(long, env = NAMESPACE_ENV)]
    pub namespace: String,
    /// The attempt's Kubernetes Job, which names and owns the RunResult.
    #[arg(long, env = JOB_NAME_ENV)]
    pub kubernetes_job: String,
    /// That Job's UID.
    #[arg(long, env = JOB_UID_ENV)]
    pub kubernetes_job_uid: String,
    /// The pod's name and UID, recorded in the RunResult as its creator; absent when the attempt
    /// runs outside a pod (tests, a person debugging), where no admission policy applies.
    #[arg(long, env = POD_NAME_ENV, requires = "pod_uid")]
    pub pod_name: Option<String>,
    /// The pod's UID.
    #[arg(long, env = POD_UID_ENV, requires = "pod_name")]
    pub pod_uid: Option<String>,
}

impl AttemptPod {
    /// The pod a RunResult names as its creator, when the attempt runs in one.
    pub fn reporting_pod(&self) -> Option<ReportingPod> {
        Some(ReportingPod {
            name: self.pod_name.clone()?,
            uid: self.pod_uid.clone()?,
        })
    }
}

/// `kglue attempt`'s arguments: the command line and the pod.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct AttemptArgs {
    /// What to run.
    #[command(flatten)]
    pub command: AttemptCommand,
    /// Where it runs.
    #[command(flatten)]
    pub pod: AttemptPod,
}

impl AttemptCommand {
    /// An attempt in a pod, as the operator launches it: sized by `resources`, spilling into
    /// [`SPILL_DIR`], reading Secrets from [`SECRETS_DIR`].
    pub fn in_pod(
        kind: RunOwnerKind,
        name: &str,
        run_id: &str,
        attempt: i32,
        arguments: &BTreeMap<String, String>,
        worker_size: WorkerSize,
        resources: WorkerResources,
    ) -> Self {
        AttemptCommand {
            kind,
            name: name.to_string(),
            run_id: run_id.to_string(),
            attempt,
            // A map of strings always serialises.
            arguments: (!arguments.is_empty()).then(|| serde_json::to_string(arguments).unwrap_or_default()),
            worker_size: Some(worker_size),
            cpus: Some(resources.cpu),
            memory_gib: Some(resources.memory_gib),
            secrets_dir: PathBuf::from(SECRETS_DIR),
            spill_dir: Some(PathBuf::from(SPILL_DIR)),
            termination_log: PathBuf::from(TERMINATION_LOG),
            settle: None,
            allow_local_paths: Vec::new(),
            metrics_address: None,
            workers: None,
            scheduler_port: None,
        }
    }

    /// The same command, distributed over `workers` executors that reach its scheduler on
    /// `scheduler_port`.
    pub fn distributed(mut self, workers: u32, scheduler_port: u16) -> Self {
        self.workers = Some(workers);
        self.scheduler_port = Some(scheduler_port);
        self
    }

    /// The same command, serving metrics on `address`.
    pub fn serving_metrics(mut self, address: &str) -> Self {
        self.metrics_address = Some(address.to_string());
        self
    }

    /// The same command, allowed the local folders `paths`.
    pub fn allowing_local_paths(mut self, paths: &[PathBuf]) -> Self {
        self.allow_local_paths = paths.to_vec();
        self
    }

    /// This attempt's settle attempt: the same command with `--settle`, in one pod (settling
    /// reads and moves what the attempt staged; it runs no plan).
    pub fn settling(mut self, mode: SettleMode) -> Self {
        self.settle = Some(mode);
        self.workers = None;
        self.scheduler_port = None;
        self
    }

    /// The container's arguments: the subcommand and every field, the way [`AttemptArgs`]
    /// parses them.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            SUBCOMMAND.to_string(),
            "--kind".into(),
            self.kind.as_str().into(),
            "--name".into(),
            self.name.clone(),
            "--run-id".into(),
            self.run_id.clone(),
            "--attempt".into(),
            self.attempt.to_string(),
        ];
        let mut flag = |name: &str, value: String| {
            args.push(format!("--{name}"));
            args.push(value);
        };
        if let Some(size) = self.worker_size {
            flag("worker-size", size.as_str().into());
        }
        if let (Some(cpus), Some(memory_gib)) = (self.cpus, self.memory_gib) {
            flag("cpus", cpus.to_string());
            flag("memory-gib", memory_gib.to_string());
        }
        if let Some(spill_dir) = &self.spill_dir {
            flag("spill-dir", spill_dir.display().to_string());
        }
        flag("termination-log", self.termination_log.display().to_string());
        if let Some(arguments) = &self.arguments {
            flag("arguments", arguments.clone());
        }
        flag("secrets-dir", self.secrets_dir.display().to_string());
        for path in &self.allow_local_paths {
            flag("allow-local-path", path.display().to_string());
        }
        if let Some(mode) = self.settle {
            flag("settle", mode.as_str().into());
        }
        if let Some(address) = &self.metrics_address {
            flag("metrics-address", address.clone());
        }
        if let (Some(workers), Some(port)) = (self.workers, self.scheduler_port) {
            flag("workers", workers.to_string());
            flag("scheduler-port", port.to_string());
        }
        args
    }

    /// The run's arguments, or why `--arguments` is not a JSON object of strings.
    pub fn arguments(&self) -> Result<BTreeMap<String, String>, String> {
        match &self.arguments {
            None => Ok(BTreeMap::new()),
            Some(text) => serde_json::from_str(text).map_err(|e| e.to_string()),
        }
    }

    /// The CPU and memory the pod was given, when the operator said.
    pub fn resources(&self) -> Option<WorkerResources> {
        self.cpus
            .zip(self.memory_gib)
            .map(|(cpu, memory_gib)| WorkerResources { cpu, memory_gib })
    }
}

/// What a settle attempt does (docs/runs.md, "Exactly once").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettleMode {
    /// Finish a decided commit: move the staged files into place, apply the write mode, write
    /// the catalog. Idempotent.
    Commit,
    /// Remove an undecided attempt's staging folders and abort its uploads.
    Cleanup,
}

impl SettleMode {
    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            SettleMode::Commit => "commit",
            SettleMode::Cleanup => "cleanup",
        }
    }
}

fn parse_settle(text: &str) -> Result<SettleMode, String> {
    [SettleMode::Commit, SettleMode::Cleanup]
        .into_iter()
        .find(|mode| mode.as_str() == text)
        .ok_or_else(|| format!("{text:?} is not commit or cleanup"))
}

fn parse_kind(text: &str) -> Result<RunOwnerKind, String> {
    [RunOwnerKind::Job, RunOwnerKind::Crawler]
        .into_iter()
        .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| format!("{text:?} is not Job or Crawler"))
}

fn parse_worker_size(text: &str) -> Result<WorkerSize, String> {
    WorkerSize::ALL
        .into_iter()
        .find(|size| size.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| format!("{text:?} is not a worker size (Small, Medium, Large, XLarge)"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The runner's command line, reduced to the one subcommand.
    #[derive(Parser, Debug)]
    struct Runner {
        #[command(subcommand)]
        command: Subcommand,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Subcommand {
        Attempt(AttemptArgs),
    }

    fn parse(args: &[String]) -> Result<AttemptArgs, clap::Error> {
        let pod = [
            "--namespace",
            "lake",
            "--kubernetes-job",
            "clean-jr-1-0",
            "--kubernetes-job-uid",
            "uid-9",
        ];
        let line = std::iter::once("kglue".to_string())
            .chain(args.iter().cloned())
            .chain(pod.iter().map(|a| a.to_string()));
        Runner::try_parse_from(line).map(|runner| match runner.command {
            Subcommand::Attempt(args) => args,
        })
    }

    #[test]
    fn what_the_operator_renders_is_what_the_runner_parses() {
        let arguments = BTreeMap::from([("day".to_string(), "2024-05-01".to_string())]);
        for (kind, arguments, size) in [
            (RunOwnerKind::Job, arguments.clone(), WorkerSize::XLarge),
            (RunOwnerKind::Crawler, BTreeMap::new(), WorkerSize::Small),
        ] {
            let command = AttemptCommand::in_pod(
                kind,
                "clean-orders",
                "jr-3fa29c01d2",
                2,
                &arguments,
                size,
                WorkerResources { cpu: 3, memory_gib: 6 },
            );
            let args = command.to_args();
            assert_eq!(args[0], "attempt");
            let parsed = parse(&args).expect("the runner parses what the operator renders");
            assert_eq!(parsed.command, command, "{args:?}");
            assert_eq!(parsed.command.arguments(), Ok(arguments));
            assert_eq!(
                parsed.command.resources(),
                Some(WorkerResources { cpu: 3, memory_gib: 6 })
            );
            assert_eq!(parsed.pod.kubernetes_job, "clean-jr-1-0");
            for mode in [SettleMode::Commit, SettleMode::Cleanup] {
                let settle = command.clone().settling(mode);
                let parsed = parse(&settle.to_args()).expect("a settle command parses");
                assert_eq!(parsed.command, settle);
            }
            let streaming = command.clone().serving_metrics("0.0.0.0:9464");
            let parsed = parse(&streaming.to_args()).expect("a streaming attempt's command parses");
            assert_eq!(parsed.command.metrics_address.as_deref(), Some("0.0.0.0:9464"));
            let distributed = command.clone().distributed(3, 50050);
            let parsed = parse(&distributed.to_args()).expect("a distributed attempt's command parses");
            assert_eq!(parsed.command, distributed);
            assert_eq!(
                (parsed.command.workers, parsed.command.scheduler_port),
                (Some(3), Some(50050))
            );
            assert_eq!(
                distributed.settling(SettleMode::Commit).workers,
                None,
                "a settle attempt is one pod"
            );
        }
    }

    #[test]
    fn a_hand_written_command_line_takes_defaults_and_any_case() {
        let args: Vec<String> = [
            "attempt",
            "--kind",
            "crawler",
            "--name",
            "c",
            "--run-id",
            "cr-1",
            "--attempt",
            "0",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let parsed = parse(&args).expect("parses");
        assert_eq!(parsed.command.kind, RunOwnerKind::Crawler);
        assert_eq!(parsed.command.termination_log, PathBuf::from(TERMINATION_LOG));
        assert_eq!(parsed.command.resources(), None);
        let mut sized = args.clone();
        sized.extend(["--worker-size".to_string(), "xlarge".to_string()]);
        assert_eq!(
            parse(&sized).expect("parses").command.worker_size,
            Some(WorkerSize::XLarge)
        );
        let mut half = args;
        half.extend(["--cpus".to_string(), "2".to_string()]);
        assert!(parse(&half).is_err(), "--cpus needs --memory-gib");
    }

    #[test]
    fn malformed_arguments_are_kept_for_the_report() {
        let mut command = AttemptCommand::in_pod(
            RunOwnerKind::Job,
            "j",
            "jr-1",
            0,
            &BTreeMap::new(),
            WorkerSize::Small,
            WorkerSize::Small.default_resources(),
        );
        assert_eq!(command.arguments, None, "no arguments, no flag");
        command.arguments = Some("[1]".into());
        let parsed = parse(&command.to_args()).expect("the command line still parses");
        assert!(parsed.command.arguments().is_err());
    }

    #[test]
    fn run_labels_name_the_owner_when_it_fits() {
        let labels = run_labels(RunOwnerKind::Job, "load", "jr-1");
        assert_eq!(labels[LABEL_OWNER_NAME], "load");
        assert_eq!(labels[LABEL_OWNER_KIND], "Job");
        let long = run_labels(RunOwnerKind::Job, &"x".repeat(64), "jr-1");
        assert!(!long.contains_key(LABEL_OWNER_NAME));
        assert_eq!(long[LABEL_RUN_ID], "jr-1");
        assert_eq!(
            table_field_manager(RunOwnerKind::Crawler, "landing"),
            "kglue-crawler-landing"
        );
    }
}
