//! The command line's definitions, grouped: [`local`] commands work on files and a catalog
//! directory, [`cluster`] commands on the current kubeconfig context's cluster, [`bookmark`] on
//! either, [`sql`] is the SQL prompt over a catalog, [`serve`] the same over the PostgreSQL wire protocol, [`attempt`] is what an attempt's pod runs, and [`executor`] is one executor of a distributed run. Each module parses, calls the library and
//! prints what it returns; none does the work itself.

pub mod attempt;
pub mod bookmark;
pub mod cluster;
pub mod executor;
pub mod local;
pub mod serve;
pub mod sql;

use std::process::ExitCode;

/// `name=value`, for `--arg`.
pub fn parse_argument(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not name=value"))
}

/// Success or failure as the process's exit code.
pub fn exit_code(succeeded: bool) -> ExitCode {
    if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
