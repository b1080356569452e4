//! Stopping a query: a deadline (and a cancel switch) checked between
//! batches at every operator of the plan.
//!
//! A timeout around a query's future is not enough. DataFusion's operators
//! may run for a long time inside one poll — a cross join turns one batch
//! of its right side into a batch per left row, and the aggregate above it
//! consumes them all without ever returning `Pending` — so the timeout does
//! not fire, and a task aborted after it does not stop either: it keeps a
//! core busy until its operator yields. [`with_deadline`] adds a physical
//! optimizer rule, run after all others, that puts a [`DeadlineExec`] above
//! every operator. Its stream checks the deadline before and after each
//! batch of its input, so a loop over batches anywhere in the plan ends
//! within one batch of the deadline (or of [`QueryDeadline::cancel`]),
//! with [`Cancelled`] as the error.
//!
//! Invariant: the wrapper changes no result. It passes its input's
//! batches, schema, partitioning and ordering through unchanged.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SessionStateBuilder, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use datafusion::prelude::SessionContext;
use futures::Stream;

/// When a query must stop: a point in time, and a switch for stopping it
/// sooner (the client went away).
#[derive(Debug)]
pub struct QueryDeadline {
    at: Instant,
    timeout: Duration,
    cancelled: AtomicBool,
}

impl QueryDeadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Arc<QueryDeadline> {
        let now = Instant::now();
        Arc::new(QueryDeadline {
            at: now
                .checked_add(timeout)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
            timeout,
            cancelled: AtomicBool::new(false),
        })
    }

    /// Stop the query at its next batch.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether the query must stop: cancelled, or past the deadline.
    pub fn passed(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || Instant::now() >= self.at
    }

    /// The time the query was given.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// [`Cancelled`] once [`QueryDeadline::passed`]: for work done
    /// outside the plan (a fold of its rows) that must stop too.
    pub fn check(&self) -> Result<()> {
        if self.passed() {
            return Err(cancelled(self));
        }
        Ok(())
    }
}

/// The error of a query stopped by its [`QueryDeadline`].
#[derive(Debug, thiserror::Error)]
#[error("the query was cancelled: it ran past its {} s or its client went away", .0.as_secs())]
pub struct Cancelled(pub Duration);

/// `ctx` with the rule that stops its queries at `deadline`.
pub fn with_deadline(ctx: SessionContext, deadline: Arc<QueryDeadline>) -> SessionContext {
    let state = SessionStateBuilder::new_from_existing(ctx.state())
        .with_physical_optimizer_rule(Arc::new(DeadlineRule(deadline)))
        .build();
    SessionContext::new_with_state(state)
}

/// Puts a [`DeadlineExec`] above every operator.
#[derive(Debug)]
struct DeadlineRule(Arc<QueryDeadline>);

impl PhysicalOptimizerRule for DeadlineRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let wrapped: Arc<dyn ExecutionPlan> =
                Arc::new(DeadlineExec::new(node, Arc::clone(&self.0)));
            Ok(Transformed::yes(wrapped))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "elide_deadline"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input through, failing with [`Cancelled`] once the deadline
/// has passed.
#[derive(Debug)]
pub struct DeadlineExec {
    input: Arc<dyn ExecutionPlan>,
    deadline: Arc<QueryDeadline>,
    properties: Arc<PlanProperties>,
}

impl DeadlineExec {
    fn new(input: Arc<dyn ExecutionPlan>, deadline: Arc<QueryDeadline>) -> DeadlineExec {
        let properties = Arc::clone(input.properties());
        DeadlineExec {
            input,
            deadline,
            properties,
        }
    }
}

impl DisplayAs for DeadlineExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeadlineExec")
    }
}

impl ExecutionPlan for DeadlineExec {
    fn name(&self) -> &str {
        "DeadlineExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_plan::PhysicalExpr>,
        ) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // It owns no expression.
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(DeadlineExec::new(
                input,
                Arc::clone(&self.deadline),
            ))),
            _ => Err(DataFusionError::Internal(
                "DeadlineExec has exactly one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.deadline.check()?;
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            DeadlineStream {
                input,
                deadline: Arc::clone(&self.deadline),
                done: false,
            },
        )))
    }
}

fn cancelled(d: &QueryDeadline) -> DataFusionError {
    DataFusionError::External(Box::new(Cancelled(d.timeout())))
}

struct DeadlineStream {
    input: SendableRecordBatchStream,
    deadline: Arc<QueryDeadline>,
    done: bool,
}

impl Stream for DeadlineStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = if self.deadline.passed() {
            Some(Err(cancelled(&self.deadline)))
        } else {
            match self.input.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(_))) if self.deadline.passed() => {
                    Some(Err(cancelled(&self.deadline)))
                }
                Poll::Ready(item) => item,
            }
        };
        if matches!(item, None | Some(Err(_))) {
            self.done = true;
        }
        Poll::Ready(item)
    }
}

/// Whether `e` (or an error it wraps) is a [`Cancelled`].
pub fn is_cancelled(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<Cancelled>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cross join whose aggregate never yields stops at the deadline,
    /// and a query within it answers as without the rule.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runaway_query_stops_at_its_deadline() {
        let d = QueryDeadline::after(Duration::from_millis(300));
        let ctx = with_deadline(SessionContext::new(), Arc::clone(&d));
        let r = ctx
            .sql("select sum(a.value * b.value) from generate_series(1, 1000000) a, generate_series(1, 1000000) b")
            .await
            .expect("plan")
            .collect()
            .await;
        let e = r.expect_err("cancelled");
        // (Without the rule this runs for hours: the test would not end.)
        assert!(is_cancelled(&e), "{e}");

        let d = QueryDeadline::after(Duration::from_secs(3600));
        let ctx = with_deadline(SessionContext::new(), d);
        let b = ctx
            .sql("select count(*) from generate_series(1, 1000) a, generate_series(1, 10) b")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("runs");
        let v = b[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("count")
            .value(0);
        assert_eq!(v, 10_000);
    }

    #[tokio::test]
    async fn a_cancelled_query_does_not_start() {
        let d = QueryDeadline::after(Duration::from_secs(3600));
        d.cancel();
        let ctx = with_deadline(SessionContext::new(), d);
        let e = ctx
            .sql("select 1")
            .await
            .expect("plan")
            .collect()
            .await
            .expect_err("cancelled");
        assert!(is_cancelled(&e), "{e}");
    }
}
