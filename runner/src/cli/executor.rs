//! `kglue executor`: one executor of a distributed run, a process that `kglue run --workers N`
//! starts or a pod the operator starts for a Job with `workers` (`etl::workers`).

use std::process::ExitCode;

use anyhow::anyhow;
use kglue_crds::protocol::executor::ExecutorCommand;
use kglue_runner::etl::workers;
use kglue_runner::storage::{Credentials, SecretsDir};

/// Serves tasks until its lifetime ends: stdin closes (the `kglue run` that started it ended),
/// or, in a pod, the run's scheduler is gone.
pub async fn executor(command: ExecutorCommand) -> anyhow::Result<ExitCode> {
    let credentials = Credentials::from_process(SecretsDir(command.secrets_dir.clone()));
    workers::serve_executor(&command, credentials)
        .await
        .map_err(|e| anyhow!("executor of {}: {e}", command.scheduler))?;
    Ok(ExitCode::SUCCESS)
}
