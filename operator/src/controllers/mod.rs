//! The controllers, one module per kind, over the shared [`pipeline`] and the reference helpers of
//! [`refs`]. Kinds that act hand over to `crate::runs` (Jobs, Crawlers), `crate::triggers`,
//! `crate::workflows` and `crate::sessions` after their conditions are written.

pub mod classifier;
pub mod connection;
pub mod crawler;
pub mod database;
pub mod job;
pub mod pipeline;
pub mod problem;
pub mod refs;
pub mod session;
pub mod table;
pub mod trigger;
pub mod workflow;

use std::sync::Arc;

use kglue_crds::{Classifier, Connection, Crawler, Database, Job, Session, Table, Trigger, Workflow};
use tokio::sync::watch;

use self::pipeline::{Reconcile, run};
use crate::context::Context;

/// Runs every controller, and the shared watches they reconcile from, until `shutdown` turns
/// true.
pub async fn run_all(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    // Every controller subscribes to the shared watches before they start, so the first listing
    // reaches all of them.
    let database = Database::controller(&ctx);
    let table = Table::controller(&ctx);
    let classifier = Classifier::controller(&ctx);
    let connection = Connection::controller(&ctx);
    let crawler = Crawler::controller(&ctx);
    let job = Job::controller(&ctx);
    let trigger = Trigger::controller(&ctx);
    let workflow = Workflow::controller(&ctx);
    let session = Session::controller(&ctx);
    let watches = {
        let ctx = ctx.clone();
        let mut shutdown = shutdown.clone();
        async move {
            tokio::select! {
                _ = ctx.informers.run(&ctx.client, ctx.namespace.as_deref()) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        }
    };
    let mut stopping = shutdown.clone();
    let controllers = async {
        // Reconciles read the caches: none starts before every kind is listed.
        tokio::select! {
            _ = ctx.informers.wait_until_ready() => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        futures::join!(
            run(database, ctx.clone(), shutdown.clone()),
            run(table, ctx.clone(), shutdown.clone()),
            run(classifier, ctx.clone(), shutdown.clone()),
            run(connection, ctx.clone(), shutdown.clone()),
            run(crawler, ctx.clone(), shutdown.clone()),
            run(job, ctx.clone(), shutdown.clone()),
            run(trigger, ctx.clone(), shutdown.clone()),
            run(workflow, ctx.clone(), shutdown.clone()),
            run(session, ctx.clone(), shutdown.clone()),
        );
    };
    futures::join!(watches, controllers);
}
