//! ETL jobs (issue: ETL jobs in the runner): the run's arguments in Glue's precedence, the SQL
//! script with them bound as parameters, and writing sinks.

pub mod arguments;
pub mod script;
pub mod sink;
