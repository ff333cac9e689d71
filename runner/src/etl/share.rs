//! One computation for several sinks. A job often writes a relation and something derived from it:
//! the curated detail and a summary of it, or the same rows to two places. Planned one by one,
//! each sink computes everything it reads from the sources up, so the detail (its scans, joins
//! and window functions) would be computed twice. Instead, when a sink's relation reads the
//! relation an earlier file sink writes, the later sink reads the rows the earlier one writes, as
//! they pass: the earlier sink's plan is wrapped in a [`TeeExec`] that hands every batch on, and
//! the later sink's plan reads them from a [`FeedExec`] in place of the relation. Both sinks then
//! run together, and the relation is computed once.
//!
//! The rows are the same either way: the feed carries exactly the batches the earlier sink
//! writes, and it ends with an error, never early, when they stop before their end. A sink whose
//! plan would read more than one feed (a self-join) is planned as before, and so is one that
//! turns out to read none of the rows (the optimizer removed the scan).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::{TableProvider, TableType, provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, SubqueryAlias};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, ChildrenPropertiesMode, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, ReplaceChildrenOptions,
};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tokio::sync::mpsc;

/// Batches in flight between a sink and one sink fed by it. Small: the batches are shared, not
/// copied, and a slow reader should hold the writer back rather than let rows pile up.
const FEED_CAPACITY: usize = 4;

/// What flows down a feed: each batch the earlier sink writes, then one `End` per partition of
/// its plan, or the error that stopped it.
enum Message {
    Batch(RecordBatch),
    End,
    Failed(String),
}

/// An earlier file sink whose relation later sinks may read.
struct Producer {
    /// The sink's position among the run's file sinks.
    sink: usize,
    name: String,
    /// The relation it writes, as the session resolves it.
    relation: Arc<dyn TableProvider>,
    /// The plan of that relation when it is a view: what a later plan holds where it reads it.
    view: Option<LogicalPlan>,
    partitions: usize,
    feeds: Vec<mpsc::Sender<Message>>,
}

/// The sinks planned so far, and which later sinks they feed.
#[derive(Default)]
pub struct Sharing {
    producers: Vec<Producer>,
    /// (reader, producer) positions among the file sinks.
    links: Vec<(usize, usize)>,
}

/// The feeds a sink's plan reads, planned but not yet connected to their producers.
pub struct Rewritten {
    /// The relation, reading the feeds.
    pub frame: DataFrame,
    connections: Vec<(usize, mpsc::Sender<Message>, Arc<FeedSlot>)>,
}

/// The receiving end of a feed, until the plan that reads it runs (or is done without reading
/// it, when [`Feeds::close`] drops it so that the producer is not held back).
struct FeedSlot {
    receiver: Mutex<Option<mpsc::Receiver<Message>>>,
    /// Whether a plan reads it (a scan of it was planned). Planned twice is refused.
    scanned: AtomicBool,
}

impl FeedSlot {
    fn take(&self) -> Option<mpsc::Receiver<Message>> {
        self.receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// The feeds of one sink: those its plan reads, and those it writes.
#[derive(Default, Clone)]
pub struct Feeds {
    reads: Vec<Arc<FeedSlot>>,
    writes: Option<Arc<TeeSenders>>,
}

impl Feeds {
    /// Once the sink's plan has run (to its end or not): drops every feed end it did not take, so
    /// that no producer waits for a reader that is gone, and no reader for a partition of its
    /// producer that never ran (the reader then fails, as the feed stopped before its end).
    pub fn close(&self) {
        for slot in &self.reads {
            drop(slot.take());
        }
        if let Some(senders) = &self.writes {
            senders.close();
        }
    }

    /// Whether the sink neither reads nor writes a feed.
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.writes.is_none()
    }
}

/// The senders of a producer's feeds, one set per partition of its plan: a partition's stream
/// takes its own and drops them when it ends, however it ends, so a feed closes when the last
/// partition is gone.
struct TeeSenders(Mutex<Vec<Option<Vec<mpsc::Sender<Message>>>>>);

impl TeeSenders {
    fn take(&self, partition: usize) -> Option<Vec<mpsc::Sender<Message>>> {
        let mut partitions = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        partitions.get_mut(partition).and_then(Option::take)
    }

    fn close(&self) {
        let mut partitions = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        partitions.iter_mut().for_each(|senders| drop(senders.take()));
    }
}

impl Sharing {
    /// `frame` with every scan of an earlier sink's relation replaced by a feed from that sink,
    /// looking through views; `None` when it reads none.
    pub fn rewrite(&self, ctx: &SessionContext, frame: &DataFrame) -> DfResult<Option<Rewritten>> {
        if self.producers.is_empty() {
            return Ok(None);
        }
        let mut connections = Vec::new();
        let plan = self.replace_scans(frame.logical_plan().clone(), &mut connections)?;
        // One feed at most: a plan that read two (a self-join, or two sinks' relations) could
        // wait for all of one before reading the other, while their producer waits for it to
        // read the other.
        if !plan.transformed || connections.len() > 1 {
            return Ok(None);
        }
        Ok(Some(Rewritten {
            frame: DataFrame::new(ctx.state(), plan.data),
            connections,
        }))
    }

    fn replace_scans(
        &self,
        plan: LogicalPlan,
        connections: &mut Vec<(usize, mpsc::Sender<Message>, Arc<FeedSlot>)>,
    ) -> DfResult<Transformed<LogicalPlan>> {
        // Top down, so that the outermost relation another sink writes is the one fed.
        plan.transform_down(|node| {
            let found = match &node {
                // A view is inlined where it is read, as its plan under an alias of its name.
                LogicalPlan::SubqueryAlias(alias) => self
                    .producers
                    .iter()
                    .position(|p| p.view.as_ref().is_some_and(|view| *view == *alias.input))
                    .map(|index| (index, alias.alias.clone())),
                // A table (a source written again) is read by a scan of it.
                LogicalPlan::TableScan(scan) if scan.filters.is_empty() && scan.fetch.is_none() => {
                    source_as_provider(&scan.source).ok().and_then(|provider| {
                        self.producers
                            .iter()
                            .position(|p| p.view.is_none() && Arc::ptr_eq(&p.relation, &provider))
                            .map(|index| (index, scan.table_name.clone()))
                    })
                }
                _ => None,
            };
            let Some((index, name)) = found else {
                return Ok(Transformed::no(node));
            };
            let producer = &self.producers[index];
            let (sender, receiver) = mpsc::channel(FEED_CAPACITY);
            let slot = Arc::new(FeedSlot {
                receiver: Mutex::new(Some(receiver)),
                scanned: AtomicBool::new(false),
            });
            let table = FeedTable {
                schema: producer.relation.schema(),
                producer: producer.name.clone(),
                inputs: producer.partitions,
                slot: Arc::clone(&slot),
            };
            let projection = match &node {
                LogicalPlan::TableScan(scan) => scan.projection.clone(),
                _ => None,
            };
            let scan =
                LogicalPlanBuilder::scan(name.clone(), provider_as_source(Arc::new(table)), projection)?.build()?;
            let replaced = match node {
                LogicalPlan::SubqueryAlias(_) => {
                    LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(scan), name)?)
                }
                _ => scan,
            };
            connections.push((index, sender, slot));
            Ok(Transformed::new(replaced, true, TreeNodeRecursion::Jump))
        })
    }

    /// Connects the feeds of the sink at position `reader` among the file sinks, whose rewritten
    /// plan was planned: its producers will hand it their batches. Returns them, for
    /// [`Feeds::close`] once the sink is written.
    pub fn connect(&mut self, reader: usize, rewritten: Rewritten) -> Feeds {
        let mut feeds = Feeds::default();
        for (index, sender, slot) in rewritten.connections {
            // A feed the planned plan does not read (the optimizer found it needs no rows) is
            // not connected: its producer must never wait for it.
            if !slot.scanned.load(Ordering::Acquire) {
                continue;
            }
            let producer = &mut self.producers[index];
            producer.feeds.push(sender);
            self.links.push((reader, producer.sink));
            feeds.reads.push(slot);
        }
        feeds
    }

    /// Records a file sink (at position `sink` among the file sinks) that later sinks may read.
    pub async fn add(&mut self, ctx: &SessionContext, sink: usize, name: &str, relation: &str, partitions: usize) {
        if let Ok(provider) = ctx.table_provider(relation).await {
            self.producers.push(Producer {
                sink,
                name: name.to_string(),
                view: provider.get_logical_plan().map(|plan| plan.into_owned()),
                relation: provider,
                partitions,
                feeds: Vec::new(),
            });
        }
    }

    /// Wraps the plan of every file sink that feeds others so that it does (`sinks`: each file
    /// sink's plan and feeds), and returns, for each file sink, the first sink of the group it
    /// runs with: sinks joined by feeds run together.
    pub fn finish(self, sinks: &mut [(&mut Arc<dyn ExecutionPlan>, &mut Feeds)]) -> Vec<usize> {
        for producer in self.producers {
            if producer.feeds.is_empty() {
                continue;
            }
            let (plan, feeds) = &mut sinks[producer.sink];
            let senders = Arc::new(TeeSenders(Mutex::new(
                (0..producer.partitions).map(|_| Some(producer.feeds.clone())).collect(),
            )));
            feeds.writes = Some(Arc::clone(&senders));
            **plan = Arc::new(TeeExec {
                input: Arc::clone(plan),
                readers: producer.feeds.len(),
                senders,
                name: producer.name,
            });
        }
        let mut group: Vec<usize> = (0..sinks.len()).collect();
        for (reader, producer) in self.links {
            let (keep, merged) = (group[reader].min(group[producer]), group[reader].max(group[producer]));
            for g in group.iter_mut().filter(|g| **g == merged) {
                *g = keep;
            }
        }
        group
    }
}

/// A relation read from a feed: what [`Sharing::rewrite`] puts in place of another sink's
/// relation. It can be scanned once.
#[derive(Debug)]
struct FeedTable {
    schema: SchemaRef,
    producer: String,
    inputs: usize,
    slot: Arc<FeedSlot>,
}

impl fmt::Debug for FeedSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FeedSlot")
    }
}

#[async_trait]
impl TableProvider for FeedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.slot.scanned.swap(true, Ordering::AcqRel) {
            return Err(DataFusionError::Plan(format!(
                "the rows of sink {} can be read once",
                self.producer
            )));
        }
        let schema = match projection {
            Some(indices) => Arc::new(self.schema.project(indices)?),
            None => self.schema.clone(),
        };
        Ok(Arc::new(FeedExec {
            producer: self.producer.clone(),
            inputs: self.inputs,
            projection: projection.cloned(),
            slot: Arc::clone(&self.slot),
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(schema.clone()),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
            schema,
        }))
    }
}

/// The batches of another sink, as they are written: every partition of the producer's plan ends
/// with an `End`; a feed that closes before all of them have come is an error, never an end.
struct FeedExec {
    producer: String,
    inputs: usize,
    projection: Option<Vec<usize>>,
    slot: Arc<FeedSlot>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for FeedExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FeedExec({})", self.producer)
    }
}

impl DisplayAs for FeedExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FeedExec: the rows sink {} writes", self.producer)
    }
}

impl ExecutionPlan for FeedExec {
    fn name(&self) -> &str {
        "FeedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, _: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let receiver = match (partition, self.slot.take()) {
            (0, Some(receiver)) => receiver,
            _ => {
                return Err(DataFusionError::Internal(format!(
                    "the rows of sink {} are read once, by one partition",
                    self.producer
                )));
            }
        };
        let state = FeedState {
            receiver,
            ended: 0,
            inputs: self.inputs,
            producer: self.producer.clone(),
            projection: self.projection.clone(),
        };
        let batches = futures::stream::unfold(state, |mut state| async move {
            loop {
                if state.ended == state.inputs {
                    return None;
                }
                let item = match state.receiver.recv().await {
                    Some(Message::Batch(batch)) => match &state.projection {
                        Some(indices) => batch.project(indices).map_err(DataFusionError::from),
                        None => Ok(batch),
                    },
                    Some(Message::End) => {
                        state.ended += 1;
                        continue;
                    }
                    Some(Message::Failed(message)) => Err(DataFusionError::Execution(format!(
                        "sink {} failed: {message}",
                        state.producer
                    ))),
                    None => Err(DataFusionError::Execution(format!(
                        "the rows of sink {} stopped before their end",
                        state.producer
                    ))),
                };
                if item.is_err() {
                    // Nothing more is read after an error.
                    state.ended = state.inputs;
                }
                return Some((item, state));
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches)))
    }
}

struct FeedState {
    receiver: mpsc::Receiver<Message>,
    ended: usize,
    inputs: usize,
    producer: String,
    projection: Option<Vec<usize>>,
}

/// A sink's plan that also hands every batch to the sinks it feeds. A feed whose reader has gone
/// (it stopped reading: a LIMIT) is skipped; the sink itself always gets every batch.
struct TeeExec {
    input: Arc<dyn ExecutionPlan>,
    readers: usize,
    senders: Arc<TeeSenders>,
    name: String,
}

impl fmt::Debug for TeeExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TeeExec({})", self.name)
    }
}

impl DisplayAs for TeeExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "TeeExec: sink {} also feeds {} other sink(s)",
            self.name, self.readers
        )
    }
}

impl ExecutionPlan for TeeExec {
    fn name(&self) -> &str {
        "TeeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal("TeeExec has one child".into()))?;
        Ok(Arc::new(TeeExec {
            input,
            readers: self.readers,
            senders: Arc::clone(&self.senders),
            name: self.name.clone(),
        }))
    }

    #[allow(deprecated)]
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let feeds = self.senders.take(partition).ok_or_else(|| {
            DataFusionError::Internal(format!(
                "partition {partition} of sink {} runs once, and only while it is written",
                self.name
            ))
        })?;
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let state = (input, feeds, false);
        let batches = futures::stream::unfold(state, |(mut input, mut feeds, done)| async move {
            if done {
                return None;
            }
            match input.next().await {
                Some(Ok(batch)) => {
                    let mut open = Vec::with_capacity(feeds.len());
                    for feed in feeds.drain(..) {
                        if feed.send(Message::Batch(batch.clone())).await.is_ok() {
                            open.push(feed);
                        }
                    }
                    Some((Ok(batch), (input, open, false)))
                }
                Some(Err(error)) => {
                    for feed in &feeds {
                        let _ = feed.send(Message::Failed(error.to_string())).await;
                    }
                    Some((Err(error), (input, Vec::new(), true)))
                }
                None => {
                    for feed in &feeds {
                        let _ = feed.send(Message::End).await;
                    }
                    None
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::{collect, collect_partitioned, displayable};

    use super::*;

    /// `t(k, v)` in two partitions, and the views of a job that writes `detail` and a summary of it.
    async fn session(values: &[&str]) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Utf8, false),
        ]));
        let batch = |range: std::ops::Range<usize>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(range.clone().map(|i| (i % 3) as i64))),
                    Arc::new(StringArray::from_iter_values(range.map(|i| values[i]))),
                ],
            )
            .expect("the test's session plans and runs it")
        };
        let half = values.len() / 2;
        let table = MemTable::try_new(
            schema.clone(),
            vec![vec![batch(0..half)], vec![batch(half..values.len())]],
        )
        .expect("the test's session plans and runs it");
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(table)).expect("t registers");
        for sql in [
            "CREATE VIEW detail AS SELECT k, CAST(v AS BIGINT) * 10 AS w FROM t",
            "CREATE VIEW summary AS SELECT k, sum(w) AS total, count(*) AS n FROM detail GROUP BY k",
            "CREATE VIEW twice AS SELECT a.k FROM detail a JOIN detail b ON a.w = b.w",
            "CREATE VIEW nothing AS SELECT * FROM detail WHERE false",
        ] {
            ctx.sql(sql).await.expect("a view is created");
        }
        ctx
    }

    /// Plans `detail` as the first sink and `reader` as the second, as a run does.
    async fn plan(ctx: &SessionContext, reader: &str) -> (Vec<Arc<dyn ExecutionPlan>>, Vec<Feeds>, Vec<usize>) {
        let mut sharing = Sharing::default();
        let detail = ctx
            .table("detail")
            .await
            .expect("the test's session plans and runs it")
            .create_physical_plan()
            .await
            .expect("the test's session plans and runs it");
        let partitions = detail.properties().partitioning.partition_count();
        sharing.add(ctx, 0, "detail", "detail", partitions).await;
        let frame = ctx.table(reader).await.expect("the reader's view");
        let (second, feeds) = match sharing.rewrite(ctx, &frame).expect("the rewrite") {
            Some(rewritten) => match rewritten.frame.clone().create_physical_plan().await {
                Ok(plan) => (plan, sharing.connect(1, rewritten)),
                Err(_) => (
                    frame
                        .create_physical_plan()
                        .await
                        .expect("the test's session plans and runs it"),
                    Feeds::default(),
                ),
            },
            None => (
                frame
                    .create_physical_plan()
                    .await
                    .expect("the test's session plans and runs it"),
                Feeds::default(),
            ),
        };
        let (mut plans, mut feeds) = (vec![detail, second], vec![Feeds::default(), feeds]);
        let groups = sharing.finish(&mut plans.iter_mut().zip(feeds.iter_mut()).collect::<Vec<_>>());
        (plans, feeds, groups)
    }

    fn sorted(batches: &[RecordBatch]) -> Vec<String> {
        let text = pretty_format_batches(batches).expect("printable").to_string();
        let mut lines: Vec<String> = text.lines().filter(|l| l.starts_with("| ")).map(String::from).collect();
        lines.sort();
        lines
    }

    /// Runs both sinks' plans together, as a run writes a group.
    async fn run_both(
        plans: &[Arc<dyn ExecutionPlan>],
        feeds: &[Feeds],
    ) -> (DfResult<Vec<RecordBatch>>, DfResult<Vec<RecordBatch>>) {
        let ctx = SessionContext::new();
        let first = async {
            let batches = collect_partitioned(Arc::clone(&plans[0]), ctx.task_ctx()).await;
            feeds[0].close();
            batches.map(|partitions| partitions.concat())
        };
        let second = async {
            let batches = collect(Arc::clone(&plans[1]), ctx.task_ctx()).await;
            feeds[1].close();
            batches
        };
        tokio::join!(first, second)
    }

    const VALUES: [&str; 8] = ["1", "2", "3", "4", "5", "6", "7", "8"];

    #[tokio::test]
    async fn a_summary_of_another_sinks_relation_is_computed_from_its_rows_not_again() {
        let ctx = session(&VALUES).await;
        let alone = ctx
            .table("summary")
            .await
            .expect("the test's session plans and runs it")
            .collect()
            .await
            .expect("the test's session plans and runs it");
        let (plans, feeds, groups) = plan(&ctx, "summary").await;
        let shown = displayable(plans[1].as_ref()).indent(false).to_string();
        assert!(shown.contains("FeedExec: the rows sink detail writes"), "{shown}");
        assert!(!shown.contains("DataSourceExec"), "the summary reads t again:\n{shown}");
        assert!(
            displayable(plans[0].as_ref())
                .indent(false)
                .to_string()
                .starts_with("TeeExec")
        );
        assert_eq!(groups, [0, 0], "they run together");
        let (detail, summary) = run_both(&plans, &feeds).await;
        assert_eq!(
            detail.expect("detail runs").iter().map(|b| b.num_rows()).sum::<usize>(),
            VALUES.len()
        );
        assert_eq!(sorted(&summary.expect("the fed summary runs")), sorted(&alone));
    }

    #[tokio::test]
    async fn a_relation_read_twice_or_not_at_all_is_planned_on_its_own() {
        let ctx = session(&VALUES).await;
        let (plans, feeds, groups) = plan(&ctx, "twice").await;
        assert!(feeds[1].is_empty() && feeds[0].is_empty(), "a self-join is not fed");
        assert_eq!(groups, [0, 1]);
        assert!(
            !displayable(plans[0].as_ref())
                .indent(false)
                .to_string()
                .contains("TeeExec")
        );

        let (plans, feeds, _) = plan(&ctx, "nothing").await;
        assert!(feeds[0].is_empty(), "a plan that reads no row of detail is not fed");
        let (detail, nothing) = run_both(&plans, &feeds).await;
        assert_eq!(
            detail.expect("detail runs").iter().map(|b| b.num_rows()).sum::<usize>(),
            VALUES.len()
        );
        assert!(nothing.expect("the unfed view runs").iter().all(|b| b.num_rows() == 0));
    }

    #[tokio::test]
    async fn a_failure_of_the_feeding_sink_fails_its_reader_and_never_ends_it_early() {
        // The last row does not cast: detail fails part way, after some batches went down the feed.
        let values = ["1", "2", "3", "4", "5", "6", "7", "x"];
        let ctx = session(&values).await;
        let (plans, feeds, _) = plan(&ctx, "summary").await;
        let (detail, summary) = run_both(&plans, &feeds).await;
        assert!(detail.is_err());
        let error = summary
            .expect_err("the summary of a partial detail must not succeed")
            .to_string();
        assert!(
            error.contains("sink detail failed") || error.contains("stopped before their end"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_partition_of_the_feeding_sink_that_never_runs_fails_the_reader_once_it_is_closed() {
        let ctx = session(&VALUES).await;
        let (plans, feeds, _) = plan(&ctx, "summary").await;
        let context = SessionContext::new().task_ctx();
        // Only partition 0 of detail runs, then its sink is done (it failed to start the other).
        let reader = tokio::spawn({
            let plan = Arc::clone(&plans[1]);
            let context = Arc::clone(&context);
            async move { collect(plan, context).await }
        });
        let mut first = plans[0]
            .execute(0, Arc::clone(&context))
            .expect("the test's session plans and runs it");
        while let Some(batch) = first.next().await {
            batch.expect("a batch of partition 0");
        }
        drop(first);
        feeds[0].close();
        let error = reader
            .await
            .expect("the test's session plans and runs it")
            .expect_err("half of detail is not all of it")
            .to_string();
        assert!(error.contains("stopped before their end"), "{error}");
        assert!(plans[0].execute(0, context).is_err(), "a partition runs once");
    }
}
