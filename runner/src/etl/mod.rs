//! ETL jobs: a job's sources (selected by its bookmark), its SQL script with the run's arguments
//! bound as parameters, and its sinks, written idempotently and committed with the catalog.

pub mod arguments;
pub mod bookmark;
pub mod database;
pub mod database_sink;
pub mod inspect;
pub mod kafka;
pub mod run;
pub mod sandbox;
pub mod scope;
pub mod script;
pub mod settle;
pub mod share;
pub mod sink;
pub mod sized;
pub mod source;
pub mod stream;
pub mod stream_metrics;
pub mod table_update;
pub mod types;
pub mod workers;
