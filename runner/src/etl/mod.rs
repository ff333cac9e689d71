//! ETL jobs (issue: ETL jobs in the runner). So far: the run's arguments in Glue's precedence,
//! and running the SQL script with them bound as parameters.

pub mod arguments;
pub mod script;
