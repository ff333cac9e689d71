//! The controllers, one module per kind, over the shared [`pipeline`] and the reference helpers of
//! [`refs`]. Kinds that act hand over to `crate::runs` (Jobs, Crawlers), `crate::triggers` and
//! `crate::workflows` after their conditions are written.

pub mod classifier;
pub mod connection;
pub mod crawler;
pub mod database;
pub mod job;
pub mod pipeline;
pub mod problem;
pub mod refs;
pub mod table;
pub mod trigger;
pub mod workflow;

use std::sync::Arc;

use kglue_crds::{Classifier, Connection, Crawler, Database, Job, Table, Trigger, Workflow};
use tokio::sync::watch;

use self::pipeline::run;
use crate::context::Context;

/// Runs every controller until `shutdown` turns true.
pub async fn run_all(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    futures::join!(
        run::<Database>(ctx.clone(), shutdown.clone()),
        run::<Table>(ctx.clone(), shutdown.clone()),
        run::<Classifier>(ctx.clone(), shutdown.clone()),
        run::<Connection>(ctx.clone(), shutdown.clone()),
        run::<Crawler>(ctx.clone(), shutdown.clone()),
        run::<Job>(ctx.clone(), shutdown.clone()),
        run::<Trigger>(ctx.clone(), shutdown.clone()),
        run::<Workflow>(ctx, shutdown),
    );
}
