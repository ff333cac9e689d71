//! `kglue attempt`: what an attempt's pod runs. It never fails without a word: the exit code says
//! what was reported — 0 a Succeeded report, 1 a Failed one, 2 nothing (stderr and the
//! termination message say why).

use std::process::ExitCode;

use kglue_crds::protocol::attempt::AttemptArgs;
use kglue_crds::run_result::AttemptOutcome;
use kglue_runner::attempt::{report, result_object, run_attempt, termination_message};

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
    let spec = run_attempt(&client, &attempt).await;
    let object = result_object(&attempt, spec.clone());
    // The report, in the log too, for whoever reads it after the RunResult is gone.
    match serde_json::to_string(&object.spec) {
        Ok(json) => println!("{json}"),
        Err(error) => eprintln!("kglue: cannot print the result: {error}"),
    }
    let reported = report(&client, &object).await;
    let report_error = reported.as_ref().err().map(ToString::to_string);
    write_summary(&termination_message(&spec, report_error.as_deref()));
    let command = &attempt.command;
    if let Some(error) = &spec.error {
        eprintln!(
            "kglue: {} {} run {} attempt {} failed: {error}",
            command.kind.as_str(),
            command.name,
            command.run_id,
            command.attempt
        );
    }
    match (report_error, spec.outcome) {
        (Some(error), _) => {
            eprintln!("kglue: {error}");
            ExitCode::from(2)
        }
        (None, AttemptOutcome::Succeeded) => ExitCode::SUCCESS,
        (None, AttemptOutcome::Failed) => ExitCode::from(1),
    }
}
