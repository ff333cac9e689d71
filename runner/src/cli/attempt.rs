//! `kglue attempt`: what an attempt's pod runs. It never fails without a word: the exit code says
//! what happened — 0 a Succeeded report or a finished commit, 1 a Failed report (or a settle
//! attempt that could not settle), 2 nothing reported, 3 a commit decided but not finished
//! (stderr and the termination message say why; docs/runs.md).

use std::process::ExitCode;

use kglue_crds::RunResultSpec;
use kglue_crds::protocol::attempt::AttemptArgs;
use kglue_crds::run_result::AttemptOutcome;
use kglue_runner::attempt::{AttemptEnd, report, result_object, run_attempt, termination_message};

/// Does the work, reports it and returns the exit code.
pub async fn run(attempt: AttemptArgs) -> ExitCode {
    let termination_log = attempt.command.termination_log.clone();
    // Write errors are ignored: outside a pod the file may not be writable, and the RunResult
    // is the report that counts.
    let write_summary = |text: &str| {
        let _ = std::fs::write(&termination_log, text);
    };
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            let message = format!("Failed: cannot reach the API server to report: {error}");
            eprintln!("kglue: {message}");
            write_summary(&message);
            return ExitCode::from(2);
        }
    };
    let command = &attempt.command;
    let what = format!(
        "{} {} run {} attempt {}",
        command.kind.as_str(),
        command.name,
        command.run_id,
        command.attempt
    );
    let spec = match run_attempt(&client, &attempt).await {
        AttemptEnd::Settled(Ok(done)) => {
            println!("{done}");
            write_summary(&format!("Settled: {done}"));
            return ExitCode::SUCCESS;
        }
        AttemptEnd::Settled(Err(error)) => {
            eprintln!("kglue: settling {what}: {error}");
            write_summary(&format!("Unsettled: {error}").replace('\n', " "));
            return ExitCode::from(1);
        }
        AttemptEnd::Committed(spec) => {
            // The Committing RunResult made at the decision is the report; exit 0 says the
            // commit is complete.
            print_report(&spec);
            write_summary("Succeeded");
            return ExitCode::SUCCESS;
        }
        AttemptEnd::Unfinished(spec) => {
            print_report(&spec);
            let error = spec.error.clone().unwrap_or_default();
            eprintln!("kglue: {what} is unfinished: {error}");
            write_summary(&termination_message(&spec, None));
            return ExitCode::from(3);
        }
        AttemptEnd::Streamed(Ok(done)) => {
            println!("{done}");
            write_summary(&format!("Stopped: {done}"));
            return ExitCode::SUCCESS;
        }
        AttemptEnd::Streamed(Err(error)) => {
            eprintln!("kglue: {what} failed: {error}");
            write_summary(&format!("Failed: {error}").replace('\n', " "));
            return ExitCode::from(1);
        }
        AttemptEnd::Report(spec) => spec,
    };
    print_report(&spec);
    let object = result_object(&attempt, spec.clone());
    let reported = report(&client, &object).await;
    let report_error = reported.as_ref().err().map(ToString::to_string);
    write_summary(&termination_message(&spec, report_error.as_deref()));
    if let Some(error) = &spec.error {
        eprintln!("kglue: {what} failed: {error}");
    }
    match (report_error, spec.outcome) {
        (Some(error), _) => {
            eprintln!("kglue: {error}");
            ExitCode::from(2)
        }
        (None, AttemptOutcome::Succeeded) => ExitCode::SUCCESS,
        (None, AttemptOutcome::Failed | AttemptOutcome::Committing | AttemptOutcome::Streaming) => ExitCode::from(1),
    }
}

/// The report, in the log too, for whoever reads it after the RunResult is gone.
fn print_report(spec: &RunResultSpec) {
    match serde_json::to_string(spec) {
        Ok(json) => println!("{json}"),
        Err(error) => eprintln!("kglue: cannot print the result: {error}"),
    }
}
