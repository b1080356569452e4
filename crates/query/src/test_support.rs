//! Helpers of the unit tests of Elide's physical rules.

use std::sync::Arc;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

/// A session like `ctx` (its tables, functions and rules) without the
/// physical optimizer rule named `name`: the other side of the
/// differential tests of Elide's rules.
pub(crate) fn without_physical_rule(ctx: &SessionContext, name: &str) -> SessionContext {
    let state = ctx.state();
    let rules = state
        .physical_optimizers()
        .iter()
        .filter(|r| r.name() != name)
        .cloned()
        .collect();
    SessionContext::new_with_state(
        datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_physical_optimizer_rules(rules)
            .build(),
    )
}

/// The rows of `sql` in `ctx` (pretty-printed) and its physical plan.
pub(crate) fn rows_and_plan(ctx: &SessionContext, sql: &str) -> (String, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let df = ctx.sql(sql).await.expect("planned");
        let plan = df.clone().create_physical_plan().await.expect("a plan");
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        let rows = df.collect().await.expect("rows");
        (
            pretty_format_batches(&rows).expect("printed").to_string(),
            shown,
        )
    })
}

/// The first node of `plan` (itself, then its children depth first) that
/// `is` picks.
pub(crate) fn find_node(
    plan: &Arc<dyn ExecutionPlan>,
    is: &dyn Fn(&Arc<dyn ExecutionPlan>) -> bool,
) -> Option<Arc<dyn ExecutionPlan>> {
    if is(plan) {
        return Some(Arc::clone(plan));
    }
    plan.children().into_iter().find_map(|c| find_node(c, is))
}

/// Plans and runs `sql` in `ctx`: its rows (pretty-printed) and the plan
/// that ran (for its metrics), or the error.
pub(crate) fn executed(
    ctx: &SessionContext,
    sql: &str,
) -> datafusion::error::Result<(String, Arc<dyn ExecutionPlan>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let plan = ctx.sql(sql).await?.create_physical_plan().await?;
        let rows = datafusion::physical_plan::collect(Arc::clone(&plan), ctx.task_ctx()).await?;
        Ok((pretty_format_batches(&rows)?.to_string(), plan))
    })
}

/// The metric `name` (summed over partitions, 0 if it has none) of the
/// first node of `plan` named `node`, which must be there and have run.
pub(crate) fn node_metric(plan: &Arc<dyn ExecutionPlan>, node: &str, name: &str) -> usize {
    let exec =
        find_node(plan, &|p| p.name() == node).unwrap_or_else(|| panic!("{node} in the plan"));
    let metrics = exec.metrics().expect("metrics");
    assert!(metrics.output_rows().is_some(), "{metrics:?}");
    metrics.sum_by_name(name).map_or(0, |v| v.as_usize())
}
