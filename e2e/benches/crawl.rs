//! Crawl benchmark: 100,000 objects in 10,000 Hive partitions on the real S3 server, crawled
//! through a Connection, as `kglue crawl` does it. Prints objects per second and the crawl's
//! peak memory, against the targets of the crawler issue (under 60 s, under 500 MiB).
//!
//!     cargo bench -p kglue-e2e --bench crawl
//!     KGLUE_BENCH_PARTITIONS=1000 KGLUE_BENCH_FILES=10 KGLUE_BENCH_SAMPLE=2 cargo bench -p kglue-e2e --bench crawl
//!
//! The crawl runs in a child process (this binary, re-executed), so its peak resident memory is
//! the crawl's alone, not the data generation's; the parent samples the child's `VmHWM`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kglue_e2e::S3Server;
use kglue_runner::local::{crawl_dir, read_crawler};
use kglue_runner::storage::{Credentials, SecretsDir};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};

const TARGET_SECONDS: f64 = 60.0;
const TARGET_MIB: f64 = 500.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Some(position) = args.iter().position(|a| a == "--child") {
        let dir = PathBuf::from(&args[position + 1]);
        return runtime.block_on(child(&dir));
    }
    match runtime.block_on(parent()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("crawl benchmark failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The crawl alone: what the measured child process does.
async fn child(dir: &Path) -> ExitCode {
    let crawler = match read_crawler(&dir.join("crawler.yaml")) {
        Ok(crawler) => crawler,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    match crawl_dir(
        &crawler,
        &dir.join("catalog"),
        Credentials {
            secrets: SecretsDir(dir.join("secrets")),
            environment: Vec::new(),
        },
        false,
    )
    .await
    {
        Ok(plan) => {
            let partitions: i64 = plan.tables.iter().filter_map(|t| t.table.partition_count()).sum();
            let timings: Vec<String> = plan
                .report
                .timings
                .iter()
                .map(|(phase, d)| format!("{phase} {:.2}s", d.as_secs_f64()))
                .collect();
            println!(
                "tables={} partitions={partitions} listed={} read={} skipped={} ({})",
                plan.tables.len(),
                plan.report.objects_listed,
                plan.report.objects_read,
                plan.report.skipped.len(),
                timings.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let partitions = env_usize("KGLUE_BENCH_PARTITIONS", 10_000);
    let files = env_usize("KGLUE_BENCH_FILES", 10);
    let sample = std::env::var("KGLUE_BENCH_SAMPLE").ok();
    let objects = partitions * files;

    let server = S3Server::start()?;
    server.create_bucket("bench")?;
    let store = server.store("bench")?;
    let started = Instant::now();
    let keys: Vec<(usize, usize)> = (0..partitions).flat_map(|p| (0..files).map(move |f| (p, f))).collect();
    let results: Vec<Result<_, object_store::Error>> = futures::stream::iter(keys)
        .map(|(p, f)| {
            let store = &store;
            async move {
                let day = Duration::from_secs(86_400 * p as u64);
                let date = date_of(day);
                let key = Key::from(format!("events/dt={date}/part-{f:02}.csv"));
                let body = format!("event_id,user,amount,at\n{p}{f},u{f},{}.5,{date} 10:00:00\n", p % 100);
                store.put(&key, PutPayload::from(body)).await
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<_>, _>>()?;
    eprintln!(
        "generated {objects} objects in {partitions} partitions in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    write(
        &dir.path().join("catalog/catalog.yaml"),
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Database\nmetadata: {{name: bench}}\nspec: {{databaseName: bench}}\n---\n\
             apiVersion: kglue.dev/v1alpha1\nkind: Connection\nmetadata: {{name: lake}}\n\
             spec: {{s3: {{endpoint: '{}', forcePathStyle: true, credentialsSecretRef: {{name: creds}}}}}}\n",
            server.endpoint()
        ),
    )?;
    write(&dir.path().join("secrets/creds/AWS_ACCESS_KEY_ID"), server.access_key())?;
    write(
        &dir.path().join("secrets/creds/AWS_SECRET_ACCESS_KEY"),
        server.secret_key(),
    )?;
    let sample_line = sample
        .as_ref()
        .map(|n| format!(", sampleSize: {n}"))
        .unwrap_or_default();
    write(
        &dir.path().join("crawler.yaml"),
        &format!(
            "apiVersion: kglue.dev/v1alpha1\nkind: Crawler\nmetadata: {{name: bench}}\nspec:\n  databaseName: bench\n  targets:\n    - {{path: 's3://bench/events/', connection: lake{sample_line}}}\n"
        ),
    )?;

    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child")
        .arg(dir.path())
        .spawn()?;
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(kib) = high_water_mark_kib(child.id()) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("the crawl failed ({status})").into());
    }
    let mib = peak_kib as f64 / 1024.0;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "crawl of {objects} objects in {partitions} partitions (sample size {}): {seconds:.1} s, {:.0} objects/s, peak RSS {mib:.0} MiB",
        sample.as_deref().unwrap_or("all"),
        objects as f64 / seconds
    );
    println!("target under {TARGET_SECONDS} s: {}", verdict(seconds < TARGET_SECONDS));
    println!("target under {TARGET_MIB} MiB: {}", verdict(mib < TARGET_MIB));
    Ok(())
}

/// A date `offset` after 1990-01-01, as `YYYY-MM-DD` (civil-from-days, proleptic Gregorian).
fn date_of(offset: Duration) -> String {
    let days = 7305 + (offset.as_secs() / 86_400) as i64; // 1990-01-01 is day 7305 of the epoch
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The peak resident set size of a running process, from `/proc/PID/status` (Linux).
fn high_water_mark_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))?;
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_count_from_1990() {
        use std::time::Duration;
        assert_eq!(super::date_of(Duration::ZERO), "1990-01-01");
        assert_eq!(super::date_of(Duration::from_secs(86_400 * 59)), "1990-03-01");
    }
}
