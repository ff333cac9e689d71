//! Writing a sink's rows: staged, partitioned files named after the run, committed per write mode.
//! (Being written; see the ETL issue.)
