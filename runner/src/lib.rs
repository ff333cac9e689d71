//! The kglue data plane: what runs inside a crawl's or a job run's Kubernetes Job, and on a
//! laptop through the `kglue` CLI (brief §3: one manifest, two places).
//!
//! - [`storage`]: object-store locations and the clients that reach them.
//! - [`catalog`]: the catalog as a directory of manifests, for local runs.
//! - [`crawl`]: discovering data and keeping Tables true to it.
//! - [`etl`]: ETL jobs: arguments and the SQL script (in progress).
//! - [`ddl`]: CREATE statements that let DuckDB, Trino, Spark and Athena read a catalog table.

pub mod catalog;
pub mod crawl;
pub mod ddl;
pub mod etl;
pub mod storage;
