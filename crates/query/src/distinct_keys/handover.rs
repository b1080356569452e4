//! The plan node through which a [`super::DistinctKeysExec`] partition
//! hands its rows to DataFusion's aggregate when memory runs out.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
    SendableRecordBatchStream,
};

/// The input of DataFusion's aggregate once a [`super::DistinctKeysExec`] hands
/// its rows over: one partition's stream (the rows dealt so far, then the
/// rest of the input), executed once, under the input's properties (so
/// that the aggregate, asked for that partition, reads it).
pub(super) struct Handover {
    stream: std::sync::Mutex<Option<SendableRecordBatchStream>>,
    properties: Arc<PlanProperties>,
}

impl Handover {
    pub(super) fn new(
        stream: SendableRecordBatchStream,
        properties: Arc<PlanProperties>,
    ) -> Handover {
        Handover {
            stream: std::sync::Mutex::new(Some(stream)),
            properties,
        }
    }
}

impl fmt::Debug for Handover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Handover")
    }
}

impl DisplayAs for Handover {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DistinctKeysExec's rows handed over")
    }
}

impl ExecutionPlan for Handover {
    fn name(&self) -> &str {
        "Handover"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "DistinctKeysExec's handover has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.stream
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .ok_or_else(|| {
                DataFusionError::Internal("DistinctKeysExec's handover executed twice".into())
            })
    }
}
