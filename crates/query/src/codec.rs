//! [`ElideCodec`]: how Elide's physical operators cross a process boundary
//! (datafusion-proto's `PhysicalExtensionCodec`), for distributed
//! execution (`elide-distributed`) or any other shipping of plans.
//!
//! ```text
//!  coordinator                                   worker (same store, read-only)
//!  DataSourceExec(FileScanConfig(ElideParquetSource))
//!   │ encode: snapshot version, table; per file: part id, size
//!   │         and checksums, rows hidden, row groups ruled out
//!   │         by bloom filters; and the scan as DataFusion's own
//!   │         ParquetScan node (projection, predicate, file groups,
//!   │         byte ranges, options) — no row position, no bitmap
//!   ▼
//!  bytes ─────────────────────────────────────▶  decode: snapshot_at(version)
//!                                                 each file → its part of that
//!                                                 version (same id, path, size,
//!                                                 checksums, rows hidden)
//!                                                 → ExpectedLayout + access plan
//!                                                 from the worker's tombstones;
//!                                                 Elide's fail-closed reader
//! ```
//!
//! Invariants:
//! - A decoded scan reads exactly the rows the coordinator's would: the
//!   tombstones (and undo windows) of the pinned version, reloaded where
//!   it runs. When the worker cannot load that version, when a file is
//!   not a part of it, or when its count of hidden rows differs from the
//!   coordinator's, decoding fails: a worker never scans a part without
//!   its deletions.
//! - Without this codec, the scan is not encodable at all (DataFusion's
//!   default codec refuses its `ElideParquetSource`), and the bytes this
//!   codec writes are an extension node that a decoder without it refuses:
//!   nothing falls back to a plain parquet scan.
//! - [`CountByKeyExec`], [`DistinctRunsExec`] and [`DistinctKeysExec`]
//!   are shipped as the aggregate they stand for, and replaced again on
//!   decode by the same rules.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfig, FileScanConfigBuilder, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType;
use datafusion_proto::protobuf::PhysicalPlanNode;
use elide_store::format::PartChecksum;
use elide_store::{PartMeta, Snapshot, Store, Table, WeakStore};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::access::{scan_plan, ExpectedLayout, PartReaderFactory};
use crate::count_by_key::CountByKeyExec;
use crate::distinct_keys::DistinctKeysExec;
use crate::distinct_runs::DistinctRunsExec;
use crate::provider::hidden_rows;
use crate::scan::ElideParquetSource;
use crate::uuid_adapter::UuidTextAdapterFactory;
use crate::ElideTable;

/// The first bytes of every node this codec writes (the last one is the
/// format's version).
const MAGIC: &[u8; 6] = b"ELIDE\x01";
/// What follows the magic: an Elide scan, or an aggregate that Elide's
/// rules replace ([`CountByKeyExec`], [`DistinctRunsExec`],
/// [`DistinctKeysExec`]).
const KIND_SCAN: u8 = 1;
const KIND_AGGREGATE: u8 = 2;

/// Encodes Elide's scans (and [`CountByKeyExec`], [`DistinctRunsExec`],
/// [`DistinctKeysExec`]) for another process, and
/// decodes them there against `store`: the same store (same id), opened
/// by the decoding process (read-only, on shared storage). See the module
/// documentation.
#[derive(Debug, Clone)]
pub struct ElideCodec {
    store: WeakStore,
}

impl ElideCodec {
    /// A codec that decodes scans against `store`. It holds the store
    /// weakly (as [`ElideTable`] does): decoding after the store was
    /// closed fails.
    pub fn new(store: &Store) -> Self {
        ElideCodec {
            store: store.downgrade(),
        }
    }
}

/// What the coordinator tells the worker about a scan, beside DataFusion's
/// own description of it.
#[derive(Debug, Serialize, Deserialize)]
struct ScanMeta {
    /// The manifest version the coordinator planned against.
    version: u64,
    table: String,
    files: Vec<FileMeta>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileMeta {
    path: String,
    part_id: u64,
    /// The part's size and checksums: the worker's part of that id must
    /// be the same file (the same store, not another one at the same
    /// version).
    size: u64,
    checksum: Option<PartChecksum>,
    /// Rows of the part the coordinator's snapshot hides.
    hidden: u64,
    /// Row groups the coordinator ruled out (bloom filters of a lookup,
    /// or every row deleted).
    skip: Vec<usize>,
}

fn codec_err(what: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Plan(format!("Elide plan codec: {what}"))
}

impl PhysicalExtensionCodec for ElideCodec {
    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let replaced = node
            .downcast_ref::<CountByKeyExec>()
            .map(CountByKeyExec::aggregate)
            .or_else(|| {
                node.downcast_ref::<DistinctRunsExec>()
                    .map(DistinctRunsExec::aggregate)
            })
            .or_else(|| {
                node.downcast_ref::<DistinctKeysExec>()
                    .map(DistinctKeysExec::aggregate)
            });
        if let Some(agg) = replaced {
            // The aggregate over a placeholder of its input's schema: the
            // input itself is encoded as this node's child.
            let input = agg
                .children()
                .first()
                .map(|i| i.schema())
                .ok_or_else(|| codec_err("an aggregate without input"))?;
            let placeholder: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(input));
            let agg = replace_children_if_necessary(Arc::clone(agg), vec![placeholder])?;
            let proto = proto_converter.execution_plan_to_proto(&agg, self)?;
            buf.extend_from_slice(MAGIC);
            buf.push(KIND_AGGREGATE);
            buf.extend_from_slice(&proto.encode_to_vec());
            return Ok(());
        }
        let Some((config, source)) = node
            .downcast_ref::<DataSourceExec>()
            .and_then(|e| e.downcast_to_file_source::<ElideParquetSource>())
        else {
            return Err(codec_err(format!(
                "{} is not one of Elide's operators",
                node.name()
            )));
        };
        let meta = scan_meta(config, source)?;
        // DataFusion's own node for the parquet part of the scan.
        let plain: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(
            FileScanConfigBuilder::from(config.clone())
                .with_source(Arc::new(source.parquet().clone()))
                .build(),
        );
        let proto = proto_converter.execution_plan_to_proto(&plain, self)?;
        let meta = serde_json::to_vec(&meta).map_err(codec_err)?;
        let len = u32::try_from(meta.len()).map_err(|_| codec_err("scan description too long"))?;
        buf.extend_from_slice(MAGIC);
        buf.push(KIND_SCAN);
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&meta);
        buf.extend_from_slice(&proto.encode_to_vec());
        Ok(())
    }

    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rest = buf
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| codec_err("not a node Elide's codec wrote"))?;
        let (&kind, rest) = rest
            .split_first()
            .ok_or_else(|| codec_err("truncated node"))?;
        let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
        match kind {
            KIND_AGGREGATE => {
                let [input] = inputs else {
                    return Err(codec_err("an aggregate needs exactly one input"));
                };
                let proto = PhysicalPlanNode::decode(rest).map_err(codec_err)?;
                let agg = proto_converter.proto_to_execution_plan(&proto, &decode_ctx)?;
                let agg = replace_children_if_necessary(agg, vec![Arc::clone(input)])?;
                if let Some(exec) = CountByKeyExec::replacing(&agg) {
                    return Ok(Arc::new(exec));
                }
                if let Some(exec) = DistinctKeysExec::replacing(&agg) {
                    return Ok(Arc::new(exec));
                }
                Ok(match DistinctRunsExec::replacing(&agg)? {
                    Some(exec) => Arc::new(exec),
                    None => agg,
                })
            }
            KIND_SCAN => {
                if !inputs.is_empty() {
                    return Err(codec_err("a scan has no input"));
                }
                let (len, rest) = rest
                    .split_first_chunk::<4>()
                    .ok_or_else(|| codec_err("truncated scan"))?;
                let len = u32::from_le_bytes(*len) as usize;
                if rest.len() < len {
                    return Err(codec_err("truncated scan"));
                }
                let (meta, proto) = rest.split_at(len);
                let meta: ScanMeta = serde_json::from_slice(meta).map_err(codec_err)?;
                let mut proto = PhysicalPlanNode::decode(proto).map_err(codec_err)?;
                // The store and its object store first: decoding the
                // parquet scan looks the object store up, by the URL of
                // this process's store (each open store has its own).
                let snapshot = self.pinned(&meta, ctx)?;
                let url = ElideTable::object_store_url(snapshot.store_id())?;
                match &mut proto.physical_plan_type {
                    Some(PhysicalPlanType::ParquetScan(scan)) => match &mut scan.base_conf {
                        Some(base) if base.object_store_url.starts_with("elide://") => {
                            base.object_store_url = url.as_str().to_string();
                        }
                        _ => return Err(codec_err("the scan does not read an Elide store")),
                    },
                    _ => return Err(codec_err("the scan is not a parquet scan")),
                }
                let plan = proto_converter.proto_to_execution_plan(&proto, &decode_ctx)?;
                self.rebuild_scan(meta, snapshot, plan, ctx)
            }
            other => Err(codec_err(format!("unknown node kind {other}"))),
        }
    }
}

/// What the worker needs to reload `config`'s deletions.
fn scan_meta(config: &FileScanConfig, source: &ElideParquetSource) -> Result<ScanMeta> {
    let snapshot = source.snapshot();
    let parts: HashMap<u64, &PartMeta> =
        snapshot.parts(source.table()).map(|p| (p.id, p)).collect();
    let mut files = Vec::new();
    for file in config.file_groups.iter().flat_map(|g| g.files()) {
        let path = file.object_meta.location.to_string();
        let layout = file
            .extensions
            .get::<ExpectedLayout>()
            .ok_or_else(|| codec_err(format!("file {path} has no part layout")))?;
        let part = parts.get(&layout.part_id).ok_or_else(|| {
            codec_err(format!(
                "part {} is not in the scan's snapshot",
                layout.part_id
            ))
        })?;
        let hidden = hidden_rows(snapshot, part)
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .map_or(0, |b| b.cardinality());
        let skip = file
            .extensions
            .get::<ParquetAccessPlan>()
            .map(|p| {
                p.inner()
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| matches!(a, RowGroupAccess::Skip))
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default();
        files.push(FileMeta {
            path,
            part_id: layout.part_id,
            size: part.size,
            checksum: part.checksum,
            hidden,
            skip,
        });
    }
    Ok(ScanMeta {
        version: snapshot.version(),
        table: source.table().name().to_string(),
        files,
    })
}

impl ElideCodec {
    /// The snapshot of the version `meta` pins, from this process's
    /// store, with the store's objects registered on `ctx`'s runtime.
    /// (Whether it is the plan's store is checked part by part, in
    /// [`ElideCodec::rebuild_scan`]: store ids are per process.)
    fn pinned(&self, meta: &ScanMeta, ctx: &TaskContext) -> Result<Arc<Snapshot>> {
        let store = self
            .store
            .upgrade()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let snapshot = Arc::new(
            store
                .snapshot_at(meta.version)
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
        );
        let url = ElideTable::object_store_url(snapshot.store_id())?;
        ctx.runtime_env()
            .register_object_store(url.as_ref(), snapshot.storage().inner());
        Ok(snapshot)
    }

    /// The scan `plan` (DataFusion's parquet scan, as decoded) made
    /// Elide's again: each file's deletions from this process's view of
    /// the pinned version, and Elide's reader.
    fn rebuild_scan(
        &self,
        meta: ScanMeta,
        snapshot: Arc<Snapshot>,
        plan: Arc<dyn ExecutionPlan>,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table = Table::from_name(&meta.table)
            .ok_or_else(|| codec_err(format!("unknown table {:?}", meta.table)))?;
        let Some((config, parquet)) = plan
            .downcast_ref::<DataSourceExec>()
            .and_then(|e| e.downcast_to_file_source::<ParquetSource>())
        else {
            return Err(codec_err("the scan did not decode to a parquet scan"));
        };
        let parts: HashMap<&str, &PartMeta> = snapshot
            .parts(table)
            .map(|p| (p.path.as_str(), p))
            .collect();
        let described: HashMap<&str, &FileMeta> =
            meta.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let mut groups = Vec::with_capacity(config.file_groups.len());
        for group in &config.file_groups {
            let mut files = Vec::with_capacity(group.len());
            for file in group.files() {
                let path = file.object_meta.location.as_ref();
                let described = described
                    .get(path)
                    .ok_or_else(|| codec_err(format!("file {path} is not described")))?;
                let part = parts
                    .get(path)
                    .filter(|p| {
                        p.id == described.part_id
                            && p.size == described.size
                            && p.checksum == described.checksum
                    })
                    .ok_or_else(|| {
                        codec_err(format!(
                            "part {} ({path}) is not in version {} of this store (another store, or another file); refusing to scan it",
                            described.part_id, meta.version
                        ))
                    })?;
                let hidden = hidden_rows(&snapshot, part)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                let n = hidden.as_ref().map_or(0, |b| b.cardinality());
                if n != described.hidden {
                    return Err(codec_err(format!(
                        "part {} hides {n} rows here and {} where the query was planned; refusing to scan it",
                        part.id, described.hidden
                    )));
                }
                let plan = scan_plan(part, hidden.as_deref(), &described.skip)
                    .map_err(|e| codec_err(e.message()))?;
                let mut file = file
                    .clone()
                    .with_extension(ExpectedLayout::of(part, snapshot.store_id()));
                if let Some(plan) = plan {
                    file = file.with_extension(plan);
                }
                files.push(file);
            }
            let mut rebuilt = FileGroup::new(files);
            if let Some(stats) = group.file_statistics(None) {
                rebuilt = rebuilt.with_statistics(Arc::new(stats.clone()));
            }
            groups.push(rebuilt);
        }
        let factory = PartReaderFactory::cached(Arc::clone(&snapshot), &ctx.runtime_env());
        let parquet = parquet
            .clone()
            .with_parquet_file_reader_factory(Arc::new(factory));
        let source = ElideParquetSource::new(parquet, table, snapshot);
        let config = FileScanConfigBuilder::from(config.clone())
            .with_source(Arc::new(source))
            .with_file_groups(groups)
            .with_expr_adapter(Some(Arc::new(UuidTextAdapterFactory)))
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;

    /// Bytes that are not a node this codec wrote, or that describe a
    /// version the store does not have, are errors (never a panic, never
    /// a plan).
    #[test]
    fn malformed_nodes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), elide_store::StoreOptions::one_shot()).unwrap();
        let codec = ElideCodec::new(&store);
        let ctx = TaskContext::default();
        let conv = DefaultPhysicalProtoConverter {};
        let scan = |meta: &[u8], proto: &[u8]| {
            let mut b = MAGIC.to_vec();
            b.push(KIND_SCAN);
            b.extend_from_slice(&(meta.len() as u32).to_le_bytes());
            b.extend_from_slice(meta);
            b.extend_from_slice(proto);
            b
        };
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            b"ELIDE".to_vec(),
            MAGIC.to_vec(),
            [MAGIC.as_slice(), &[9]].concat(),
            [MAGIC.as_slice(), &[KIND_SCAN]].concat(),
            [MAGIC.as_slice(), &[KIND_SCAN, 0xff, 0xff, 0xff, 0xff]].concat(),
            [MAGIC.as_slice(), &[KIND_AGGREGATE, 1, 2, 3]].concat(),
            scan(b"{}", b""),
            scan(b"not json", b""),
            // A version the store never had.
            scan(br#"{"version":99,"table":"events","files":[]}"#, b""),
            // The store's version, and a node that is not a parquet scan.
            scan(br#"{"version":0,"table":"events","files":[]}"#, &[0xff; 8]),
            scan(br#"{"version":0,"table":"nope","files":[]}"#, b""),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            assert!(
                codec.try_decode(bytes, &[], &ctx, &conv).is_err(),
                "case {i} decoded"
            );
        }
    }
}
