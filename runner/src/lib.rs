//! The kglue data plane: what runs inside a crawl's or a job run's Kubernetes Job, and on a
//! laptop through the `kglue` CLI (brief §3: one manifest, two places).
//!
//! - [`storage`]: object-store locations and the clients that reach them.
//! - [`catalog`]: the catalog as a directory of manifests, for local runs.
//! - [`crawl`]: discovering data and keeping Tables true to it.
//! - [`etl`]: ETL jobs: arguments and the SQL script (in progress).
//! - [`cluster`]: a job run's catalog in a namespace, and its Tables written back.
//! - [`attempt`]: `kglue attempt`, one run attempt in its Kubernetes Job, reported as a RunResult.
//! - [`control`]: the CLI's start, stop, runs, logs and bookmark requests against the cluster.
//! - [`ddl`]: CREATE statements that let DuckDB, Trino, Spark and Athena read a catalog table.

pub mod attempt;
pub mod catalog;
pub mod cluster;
pub mod control;
pub mod crawl;
pub mod ddl;
pub mod etl;
pub mod local;
pub mod manifest;
pub mod storage;
