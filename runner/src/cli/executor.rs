//! `kglue executor`: one executor of a distributed run (`kglue run --workers N` starts them).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use clap::Args;
use kglue_crds::common::WorkerResources;
use kglue_crds::protocol::attempt::{SECRETS_DIR, SECRETS_DIR_ENV};
use kglue_runner::catalog::DirCatalog;
use kglue_runner::etl::run::Resources;
use kglue_runner::etl::workers;
use kglue_runner::storage::{Credentials, SecretsDir, StoreResolver};
use tokio::io::AsyncReadExt;

/// `kglue executor`.
#[derive(Args)]
pub struct ExecutorArgs {
    /// The run's scheduler, `http://HOST:PORT`.
    #[arg(long)]
    scheduler: String,
    /// Tasks run at once.
    #[arg(long, default_value_t = 1)]
    slots: usize,
    /// The engine's memory pool, in bytes; operators spill beyond it.
    #[arg(long)]
    memory_bytes: usize,
    /// Where the engine spills.
    #[arg(long)]
    spill_dir: PathBuf,
    /// The catalog directory whose Connections the run's stores are reached through.
    #[arg(long)]
    catalog: PathBuf,
    /// Where the Secrets that Connections refer to are.
    #[arg(long, env = SECRETS_DIR_ENV, default_value = SECRETS_DIR)]
    secrets_dir: PathBuf,
}

/// Serves tasks until stdin closes (the run that started it ended, however it ended).
pub async fn executor(args: ExecutorArgs) -> anyhow::Result<ExitCode> {
    let catalog = DirCatalog::load(&args.catalog)?;
    let resolver = Arc::new(StoreResolver::new(
        catalog.connections().clone(),
        Credentials::from_process(SecretsDir(args.secrets_dir)),
    ));
    let mut resources = Resources::for_resources(
        WorkerResources {
            cpu: u32::try_from(args.slots).unwrap_or(u32::MAX),
            memory_gib: 1,
        },
        args.spill_dir,
    );
    resources.memory_limit_bytes = args.memory_bytes;
    workers::serve_executor(&args.scheduler, args.slots, &resources, resolver)
        .await
        .map_err(|e| anyhow!(e))
        .context("starting the executor")?;
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 64];
    while stdin.read(&mut buffer).await.context("reading stdin")? > 0 {}
    Ok(ExitCode::SUCCESS)
}
