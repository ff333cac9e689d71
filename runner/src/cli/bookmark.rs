//! `kglue bookmark`: a Job's bookmark in the cluster (`reset|rewind job NAME`: the operator
//! changes it on request, brief §3) or in a bookmark file of `kglue run --bookmarks`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use kglue_crds::protocol::requests::Request;
use kglue_runner::control::{Cluster, Console};
use kglue_runner::local::{BookmarkChange, change_bookmark_file};

/// Only Jobs have bookmarks; a kind word keeps the cluster form like the other commands.
#[derive(Clone, Copy, ValueEnum)]
pub enum BookmarkKind {
    /// A kglue Job (kgjob).
    Job,
}

/// `kglue bookmark`.
#[derive(Subcommand)]
pub enum BookmarkCommand {
    /// Print the bookmark file and the runs it can be rewound to (in the cluster:
    /// `kubectl get kgjob NAME -o jsonpath='{.status.bookmark}'`).
    Show {
        /// The bookmark file.
        #[arg(long)]
        bookmarks: PathBuf,
    },
    /// Forget the bookmark: the next run reads everything. `reset job NAME` asks the operator
    /// (annotation bookmark.kglue.dev/reset); `reset --bookmarks FILE` changes the file.
    Reset {
        #[command(flatten)]
        place: PlaceArgs,
    },
    /// Move the bookmark back to where a run started: the next run reads again what that run
    /// and later ones read. `rewind job NAME [--to-run ID]` asks the operator (annotation
    /// bookmark.kglue.dev/rewind; no --to-run: undo the last run); `rewind --bookmarks FILE
    /// --to-run ID` changes the file.
    Rewind {
        #[command(flatten)]
        place: PlaceArgs,
        /// The run to rewind to (required with --bookmarks).
        #[arg(long)]
        to_run: Option<String>,
    },
}

/// A Job of the cluster (`job NAME [-n NAMESPACE]`) or a bookmark file (`--bookmarks FILE`).
#[derive(Args)]
pub struct PlaceArgs {
    /// `job` (cluster form).
    #[arg(
        value_enum,
        required_unless_present = "bookmarks",
        conflicts_with = "bookmarks",
        requires = "name"
    )]
    kind: Option<BookmarkKind>,
    /// The Job's name (cluster form).
    name: Option<String>,
    /// The namespace (cluster form); default: the kubeconfig context's, else `default`.
    #[arg(short, long, conflicts_with = "bookmarks")]
    namespace: Option<String>,
    /// The bookmark file (local form).
    #[arg(long)]
    bookmarks: Option<PathBuf>,
}

/// Where a bookmark command goes: a Job of the cluster, or a file.
enum Place {
    Job { name: String, namespace: Option<String> },
    File(PathBuf),
}

impl BookmarkCommand {
    /// The place and the change.
    fn split(self) -> anyhow::Result<(Place, BookmarkChange)> {
        let (place, change) = match self {
            BookmarkCommand::Show { bookmarks } => (
                PlaceArgs {
                    kind: None,
                    name: None,
                    namespace: None,
                    bookmarks: Some(bookmarks),
                },
                BookmarkChange::Show,
            ),
            BookmarkCommand::Reset { place } => (place, BookmarkChange::Reset),
            BookmarkCommand::Rewind { place, to_run } => (place, BookmarkChange::Rewind(to_run)),
        };
        let PlaceArgs {
            name,
            namespace,
            bookmarks: file,
            ..
        } = place;
        // A Job name selects the cluster form: the operator, not the CLI, changes the bookmark
        // in status (brief §3), so the CLI only writes the request annotation.
        let place = match (name, file) {
            (Some(name), _) => Place::Job { name, namespace },
            (None, Some(file)) => Place::File(file),
            (None, None) => {
                return Err(anyhow!(
                    "give a job (`bookmark reset job NAME`) or a file (`--bookmarks FILE`)"
                ));
            }
        };
        Ok((place, change))
    }
}

/// Runs a bookmark command: a request to the operator, or a change of the file (printed).
pub async fn run(command: BookmarkCommand) -> anyhow::Result<ExitCode> {
    match command.split()? {
        (Place::Job { name, namespace }, change) => {
            let request = match change {
                BookmarkChange::Reset => Request::BookmarkReset,
                BookmarkChange::Rewind(to_run) => Request::BookmarkRewind { to_run },
                BookmarkChange::Show => return Err(anyhow!("`bookmark show` reads a file: --bookmarks FILE")),
            };
            let cluster = Cluster::connect(namespace).await?;
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            let mut console = Console {
                out: &mut out,
                err: &mut err,
            };
            cluster.bookmark(&name, &request, &mut console).await?;
        }
        (Place::File(path), change) => {
            let file = change_bookmark_file(&path, change)?;
            println!("{}", serde_json::to_string_pretty(&file)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
