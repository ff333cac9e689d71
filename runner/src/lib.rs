//! The kglue data plane: what runs inside a crawl's or a job run's Kubernetes Job, and on a
//! laptop through the `kglue` CLI (brief §3: one manifest, two places).
//!
//! - [`storage`]: the clients that reach object-store locations.
//! - [`catalog`]: the `Catalog` every crawl and run writes through, and the catalog as a directory
//!   of manifests.
//! - [`cluster`]: a namespace as a `Catalog` (a snapshot to read, the API server to write).
//! - [`crawl`]: discovering data and keeping Tables true to it; one driver for both catalogs.
//! - [`etl`]: ETL jobs: sources with bookmarks, the SQL script, sinks with the staged commit.
//! - [`local`]: the local commands' work (`kglue crawl --catalog`, `kglue run`, bookmark files).
//! - [`attempt`]: `kglue attempt`, one run attempt in its Kubernetes Job, reported as a RunResult.
//! - [`control`]: the cluster commands (start, stop, runs, logs, resume, bookmark requests).
//! - [`connections`]: `kglue connection test`, a database Connection reached as a run reaches it.
//! - [`ddl`]: CREATE statements that let DuckDB, Trino, Spark and Athena read a catalog table.
//! - [`manifest`]: one object read from a `-f` manifest file.
//! - [`sql`]: `kglue sql`, read-only SQL over the catalog.

pub mod attempt;
pub mod catalog;
pub mod cluster;
pub mod connections;
pub mod control;
pub mod crawl;
pub mod ddl;
pub mod etl;
pub mod local;
pub mod manifest;
pub mod multipart;
pub mod sql;
pub mod storage;
