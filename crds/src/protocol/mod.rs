//! Everything the operator, the runner and the `kglue` CLI exchange besides the custom resources
//! themselves, written once so the two sides cannot drift apart:
//!
//! - [`requests`]: the annotations that ask for work (`run.kglue.dev/<request-id>`,
//!   `stop.kglue.dev/<run-id>`, bookmark, resume and run-properties requests), as typed values
//!   that render to a merge patch ([`requests::Request::to_patch`]) and are read back from an
//!   object's annotations ([`requests::Requests::from_annotations`]).
//! - [`ids`]: run ids, request ids and the names of an attempt's Kubernetes Job.
//! - [`attempt`]: the `kglue attempt` command line the operator puts in an attempt's pod and the
//!   runner parses, the pod's environment, paths and labels.
//! - [`executor`]: the `kglue executor` command line of a distributed run's executors, processes
//!   of `kglue run --workers N` or the executor pods of a Job with `workers`.
//! - [`session`]: the `kglue serve` command line of a Session's pod and what it writes back.
//! - [`storage`]: storage locations and how a Connection becomes an object-store client, for the
//!   runner's reads and writes and the operator's Event-trigger listings alike.
//!
//! What an attempt reports back is the [`RunResult`](crate::RunResult) kind.

pub mod attempt;
pub mod executor;
pub mod ids;
pub mod requests;
pub mod session;
pub mod storage;
