//! [`TrimScanPredicates`]: a physical optimizer rule that leaves the
//! parquet reader of an Elide scan only the part of its predicate that it
//! can use.
//!
//! The reader evaluates its predicate for pruning only (Elide's scans run
//! without `pushdown_filters`; the `FilterExec` above the scan applies
//! every filter), but it adapts, simplifies and analyses the whole
//! predicate again for every part it opens. Two things make that cost
//! more than it saves:
//!
//! - **Each filter twice.** The provider hands the scan the query's
//!   filters (to rule parts out when it plans), and DataFusion's
//!   `FilterPushdown` then adds the `FilterExec`'s predicate to the
//!   reader's again. Repeated conjuncts are dropped.
//! - **Long IN lists.** The reader's statistics and page pruning give up
//!   on a list of more than `datafusion.execution.parquet.max_in_list_size`
//!   values; what is left to it is the bloom filters, which the provider
//!   has already checked for `person_id` and `distinct_id`, part by part
//!   and row group by row group ([`crate::access::PartReaderFactory`]).
//!   Such a conjunct is dropped. Before this rule, the per-part handling of
//!   a 1,000-person lookup's list was 45% of the query's time.
//!
//! Invariant: only conjuncts are removed, and only from scans of an Elide
//! store (`elide://` object store URLs) whose reader does not filter rows
//! itself (`pushdown_filters` off): there the predicate is a hint, so a
//! weaker one changes what is read, never what a query returns. A scan
//! with `pushdown_filters` on keeps every conjunct but the repeated ones
//! (there the reader's predicate may be all that filters the rows).

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, FileSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_expr::expressions::InListExpr;
use datafusion::physical_expr::utils::{conjunction, split_conjunction};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};

use crate::scan::ElideParquetSource;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct TrimScanPredicates;

impl PhysicalOptimizerRule for TrimScanPredicates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let max_in_list = config.execution.parquet.max_in_list_size;
        plan.transform_up(|node| {
            let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some((scan, elide)) = exec.downcast_to_file_source::<ElideParquetSource>() else {
                return Ok(Transformed::no(node));
            };
            let parquet = elide.parquet();
            if scan.object_store_url.as_str().split("://").next() != Some("elide") {
                return Ok(Transformed::no(node));
            }
            let Some(pred) = parquet.filter() else {
                return Ok(Transformed::no(node));
            };
            let hint_only = !parquet.table_parquet_options().global.pushdown_filters;
            let Some(trimmed) = trim(&pred, hint_only.then_some(max_in_list)) else {
                return Ok(Transformed::no(node));
            };
            let source = elide.with_parquet(parquet.with_predicate(trimmed));
            let config = FileScanConfigBuilder::from(scan.clone())
                .with_source(Arc::new(source))
                .build();
            let exec: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
            Ok(Transformed::yes(exec))
        })
        .data()
    }

    fn name(&self) -> &str {
        "elide_trim_scan_predicates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `pred` without repeated conjuncts and, given `max_in_list`, without
/// the IN lists of more values than that; `None` when nothing is
/// removed. Everything removed leaves `true`.
fn trim(pred: &Arc<dyn PhysicalExpr>, max_in_list: Option<usize>) -> Option<Arc<dyn PhysicalExpr>> {
    let all = split_conjunction(pred);
    let mut kept: Vec<Arc<dyn PhysicalExpr>> = Vec::with_capacity(all.len());
    for c in &all {
        let long_list = max_in_list.is_some_and(|max| {
            c.downcast_ref::<InListExpr>()
                .is_some_and(|l| l.list().len() > max)
        });
        if !long_list && !kept.iter().any(|k| k == *c) {
            kept.push(Arc::clone(c));
        }
    }
    (kept.len() < all.len()).then(|| conjunction(kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{binary, col, in_list, lit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("project_id", DataType::Int64, false),
            Field::new("distinct_id", DataType::Utf8, false),
        ])
    }

    fn project_is(v: i64) -> Arc<dyn PhysicalExpr> {
        let s = schema();
        binary(col("project_id", &s).unwrap(), Operator::Eq, lit(v), &s).unwrap()
    }

    fn ids(n: usize) -> Arc<dyn PhysicalExpr> {
        let s = schema();
        let list = (0..n).map(|i| lit(format!("d{i}"))).collect();
        in_list(col("distinct_id", &s).unwrap(), list, &false, &s).unwrap()
    }

    fn and(a: Arc<dyn PhysicalExpr>, b: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        conjunction([a, b])
    }

    /// A conjunct repeated (the provider's filter and the pushed-down
    /// FilterExec's) is kept once, with or without the IN-list limit.
    #[test]
    fn repeated_conjuncts_are_kept_once() {
        let pred = and(and(project_is(1), ids(3)), and(project_is(1), ids(3)));
        for max in [None, Some(20)] {
            let trimmed = trim(&pred, max).expect("repeats removed");
            assert_eq!(split_conjunction(&trimmed).len(), 2, "{trimmed}");
            assert_eq!(&trimmed, &and(project_is(1), ids(3)));
        }
    }

    /// A list longer than the limit is dropped, a short one kept; with no
    /// limit (the reader filters rows itself) both are kept.
    #[test]
    fn long_in_lists_are_dropped_only_under_a_limit() {
        let pred = and(and(project_is(2), ids(21)), ids(20));
        let trimmed = trim(&pred, Some(20)).expect("the long list removed");
        assert_eq!(&trimmed, &and(project_is(2), ids(20)));
        assert!(trim(&pred, None).is_none());
        assert!(trim(&and(project_is(2), ids(20)), Some(20)).is_none());
    }

    /// Nothing left is `true`: the scan reads as if it had no predicate.
    #[test]
    fn nothing_left_is_true() {
        let trimmed = trim(&ids(1000), Some(20)).expect("removed");
        assert_eq!(&trimmed, &lit(true));
    }

    /// A list under OR is kept: only the top-level conjuncts are looked
    /// at.
    #[test]
    fn only_top_level_lists_are_dropped() {
        let s = schema();
        let either = binary(ids(50), Operator::Or, project_is(3), &s).unwrap();
        assert!(trim(&either, Some(20)).is_none());
    }
}
