//! Container processes: each runs in its own process group (so a kill reaches everything it
//! started), with stdout and stderr appended to one log file. A registry of live groups lets the
//! agent kill every child when it stops.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};
use tokio::process::{Child, Command};

/// Everything needed to start one container's process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// argv; `argv[0]` is looked up on the agent's `PATH` when it has no slash.
    pub argv: Vec<String>,
    /// The complete environment (the agent's own environment is not inherited).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Log file (created, then appended to).
    pub log: PathBuf,
    /// Container mode: the runc container this process runs, removed before each start and after
    /// the process ends (a killed `runc run` leaves its container behind).
    pub container: Option<super::container::Handle>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code; 128 + signal number when a signal ended it (as container runtimes report).
    pub code: i32,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
}

/// The process groups of running containers.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    groups: Arc<Mutex<HashSet<i32>>>,
}

impl Registry {
    fn with_groups<T>(&self, f: impl FnOnce(&mut HashSet<i32>) -> T) -> T {
        let mut guard = match self.groups.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Sends SIGTERM to every running container's process group, waits up to `grace` for them to
    /// end, then sends SIGKILL to whatever is left.
    pub async fn kill_all(&self, grace: Duration) {
        let groups: Vec<i32> = self.with_groups(|groups| groups.iter().copied().collect());
        if groups.is_empty() {
            return;
        }
        tracing::info!(count = groups.len(), "stopping all container processes");
        for group in &groups {
            signal_group(*group, Signal::TERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline && groups.iter().any(|g| group_alive(*g)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for group in &groups {
            signal_group(*group, Signal::KILL);
        }
    }
}

/// A started container process.
#[derive(Debug)]
pub struct Running {
    child: Child,
    group: i32,
    registry: Registry,
    container: Option<super::container::Handle>,
}

/// Starts a process in a new process group.
pub fn spawn(spec: &ProcessSpec, registry: &Registry) -> std::io::Result<Running> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"))?;
    if let Some(container) = &spec.container {
        container.prepare()?;
    }
    let log = OpenOptions::new().create(true).append(true).open(&spec.log)?;
    let log_err = log.try_clone()?;
    let mut command = Command::new(resolve_program(program, &spec.env));
    command
        .arg0(program)
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(false);
    let child = command.spawn()?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| std::io::Error::other("the new process has no id"))?;
    registry.with_groups(|groups| groups.insert(group));
    Ok(Running {
        child,
        group,
        registry: registry.clone(),
        container: spec.container.clone(),
    })
}

/// A program name without a slash is looked up on the container's `PATH` (as a runtime does),
/// falling back to the agent's own lookup.
fn resolve_program(program: &str, env: &[(String, String)]) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    let path = env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str());
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

impl Running {
    /// The process id (also the process group id).
    pub fn pid(&self) -> i32 {
        self.group
    }

    /// Waits for the process to end. Afterwards whatever else is left in its group is killed, as
    /// a container's processes all end with it.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.reap_group();
        Ok(convert(status))
    }

    /// SIGTERM to the whole group, SIGKILL after `grace`, then waits.
    pub async fn terminate(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        signal_group(self.group, Signal::TERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                self.reap_group();
                Ok(convert(status?))
            }
            Err(_) => {
                tracing::info!(pid = self.group, "grace period over, sending SIGKILL");
                signal_group(self.group, Signal::KILL);
                let status = self.child.wait().await?;
                self.reap_group();
                Ok(convert(status))
            }
        }
    }

    fn reap_group(&mut self) {
        signal_group(self.group, Signal::KILL);
        self.registry.with_groups(|groups| groups.remove(&self.group));
        if let Some(container) = self.container.take() {
            container.remove();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A dropped handle (its task was cancelled) must not leave the process behind.
        if self.registry.with_groups(|groups| groups.remove(&self.group)) {
            signal_group(self.group, Signal::KILL);
        }
        if let Some(container) = self.container.take() {
            container.remove();
        }
    }
}

fn convert(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus { code, signal: None },
        (None, Some(signal)) => ExitStatus {
            code: 128 + signal,
            signal: Some(signal),
        },
        (None, None) => ExitStatus { code: 1, signal: None },
    }
}

/// Sends a signal to a process group; a group that is already gone is fine.
pub fn signal_group(group: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(group)
        && let Err(error) = kill_process_group(pid, signal)
        && error != rustix::io::Errno::SRCH
    {
        tracing::warn!(group, ?signal, %error, "cannot signal process group");
    }
}

fn group_alive(group: i32) -> bool {
    Pid::from_raw(group).is_some_and(|pid| test_kill_process_group(pid).is_ok())
}

/// Whether a process exists (for the owner-pid watchdog).
pub fn process_alive(pid: i32) -> bool {
    Pid::from_raw(pid).is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}
