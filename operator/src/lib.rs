//! The kglue operator: reconciles the `kglue.dev/v1alpha1` custom resources.
//!
//! Today it checks what the API server cannot (references between objects, cron expressions,
//! nested column types, grok patterns, cycles; see `docs/validation.md`) and reports the result as
//! kstatus conditions (`Ready`, `Stalled`) with `observedGeneration`; then it acts: runs of Jobs
//! and Crawlers as Kubernetes Jobs (`runs`), Trigger fires (`triggers`), Workflow runs
//! (`workflows`), the latter two asking for runs the way users do (`starts`), and Sessions' pods
//! and Services (`sessions`). `docs/operator.md`
//! describes flags, conditions, metrics and leader election.
//!
//! Every controller is a pipeline: read (the only step that calls the API) → validate (pure) →
//! build status (pure) → apply status with server-side apply → act → requeue. The pure steps are
//! unit tested in each module; `tests/*.rs` run the binary against a real control plane.
//!
//! The modules are layered (docs/architecture.md; `layering.rs` tests it): `controllers` →
//! {`runs`, `triggers`, `workflows`, `sessions`} → {`starts`, `schedule`, `writes`} → {`context`, `settings`,
//! `metrics`}, and nothing points back up.

pub mod admission;
pub mod context;
pub mod controllers;
pub mod graph;
pub mod health;
pub mod informers;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod runs;
pub mod schedule;
pub mod sessions;
pub mod settings;
pub mod starts;
pub mod triggers;
pub mod workflows;
pub mod writes;

#[cfg(test)]
mod layering;

/// The field manager of every write the operator makes, so `managedFields` show who owns what.
pub const FIELD_MANAGER: &str = "kglue-operator";
