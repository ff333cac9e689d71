//! `kglue`: run kglue's data plane from a terminal or inside a Kubernetes Job. The same
//! manifests as in the cluster; a directory of Database/Table manifests stands in for the catalog.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kglue_runner::catalog::DirCatalog;
use kglue_runner::crawl::cluster::crawl_cluster;
use kglue_runner::crawl::local::{crawl_dir, read_crawler, render};
use kglue_runner::ddl::{Dialect, catalog_table_ddl};
use kglue_runner::storage::{Credentials, SecretsDir};

#[derive(Parser)]
#[command(
    name = "kglue",
    version,
    about = "kglue: AWS Glue's crawlers and jobs, as Kubernetes resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Crawl the targets of a Crawler manifest and create or update Tables, in a catalog
    /// directory or in a namespace of the cluster.
    Crawl {
        /// The file holding the Crawler manifest.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// The directory of Database, Table, Connection and Classifier manifests to use as the
        /// catalog; Tables are written there, one per file.
        #[arg(long, required_unless_present = "namespace", conflicts_with = "namespace")]
        catalog: Option<PathBuf>,
        /// Use the catalog of this namespace of the current cluster (kubeconfig, or the pod's
        /// service account) instead of a directory; Tables are written with server-side apply
        /// under the field manager kglue-crawler-<name>.
        #[arg(long)]
        namespace: Option<String>,
        /// Print the plan (tables, schemas, partitions) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where the Secrets that Connections refer to are: one folder per Secret, one file per key.
        #[arg(long, env = "KGLUE_SECRETS_DIR", default_value = "/var/run/secrets/kglue")]
        secrets_dir: PathBuf,
    },
    /// Work with the tables of a catalog directory.
    Table {
        #[command(subcommand)]
        command: TableCommand,
    },
}

#[derive(Subcommand)]
enum TableCommand {
    /// Print a CREATE statement that lets another engine read a catalog table: its location,
    /// format, columns and partition keys. Notes on what the engine needs besides go to stderr.
    Ddl {
        /// The table as DATABASE.TABLE, with the Glue names (e.g. sales_raw.orders).
        name: String,
        /// The directory of Database, Table and Connection manifests to use as the catalog.
        #[arg(long)]
        catalog: PathBuf,
        /// The SQL dialect to write.
        #[arg(long, value_enum)]
        dialect: Dialect,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kglue: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kglue: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Crawl {
            file,
            catalog,
            namespace,
            dry_run,
            secrets_dir,
        } => {
            let crawler = read_crawler(&file).map_err(|e| e.to_string())?;
            let secrets = Credentials::from_process(SecretsDir(secrets_dir));
            let plan = match (catalog, namespace) {
                (Some(catalog), _) => crawl_dir(&crawler, &catalog, secrets, dry_run)
                    .await
                    .map_err(|e| e.to_string())?,
                (None, Some(namespace)) => {
                    let client = kube::Client::try_default()
                        .await
                        .map_err(|e| format!("cannot reach the cluster: {e}"))?;
                    crawl_cluster(&crawler, client, &namespace, secrets, dry_run)
                        .await
                        .map_err(|e| e.to_string())?
                }
                (None, None) => return Err("give --catalog DIR or --namespace NAMESPACE".into()),
            };
            print!("{}", render(&plan, &crawler, dry_run));
            Ok(())
        }
        Command::Table {
            command: TableCommand::Ddl { name, catalog, dialect },
        } => {
            let catalog = DirCatalog::load(&catalog).map_err(|e| e.to_string())?;
            let ddl = catalog_table_ddl(&catalog, &name, dialect).map_err(|e| e.to_string())?;
            print!("{}", ddl.sql);
            for note in &ddl.notes {
                eprintln!("kglue: note: {note}");
            }
            Ok(())
        }
    }
}
