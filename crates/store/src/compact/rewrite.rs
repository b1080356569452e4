//! The *execute* step of a task: read the input part(s), skipping the rows
//! deleted as of the pinned version, and write the output part, durable
//! before the swap ([`prepare_purge`]: a part's rows in order, with an
//! implicit row map; [`prepare_merge`]: several parts re-sorted, with an
//! explicit one).

use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;

use super::{
    after_write_failpoint, cancelled_err, pin, PreparedRewrite, RewriteInput, RowMap, TaskKind,
    Throttle,
};
use crate::error::{Result, StoreError};
use crate::part::{scan_live_rows, str_col, u64_col, PartBuilder};
use crate::policy::PurgeReason;
use crate::schema::{DISTINCT_ID_COLUMN, SEQ_COLUMN};
use crate::store::Inner;

pub(super) fn prepare_purge(
    inner: &Inner,
    part_id: u64,
    reason: Option<PurgeReason>,
    throttle: &Throttle<'_>,
    cancelled: &dyn Fn() -> bool,
) -> Result<Option<PreparedRewrite>> {
    let started = Instant::now();
    let (version, pin) = pin(inner)?;
    let Some(meta) = version.manifest.part(part_id).cloned() else {
        return Ok(None);
    };
    let read_deleted = version
        .tombstones
        .get(&part_id)
        .map(|b| (**b).clone())
        .unwrap_or_default();
    let id = inner.alloc_file_id();
    let mut builder: Option<PartBuilder> = None;
    let per_row = meta.size as f64 / meta.rows.max(1) as f64;
    scan_live_rows(
        &inner.storage,
        &meta,
        Some(&read_deleted),
        throttle.batch_rows(inner.opts.part.row_group_rows.clamp(1, 64 * 1024)),
        &mut |batch| {
            if cancelled() {
                return Err(cancelled_err());
            }
            let b = match builder.as_mut() {
                Some(b) => b,
                None => builder.insert(PartBuilder::new(
                    &inner.opts.part,
                    meta.table,
                    meta.project_id,
                    meta.days(),
                    id,
                    batch.schema(),
                )?),
            };
            b.write(&batch)?;
            throttle.spend((batch.num_rows() as f64 * per_row * 2.0) as u64);
            Ok(())
        },
    )?;
    let output = match builder {
        Some(b) => b.finish(&inner.storage, &inner.gc)?,
        None => None,
    };
    if let Some(o) = &output {
        if let Err(e) = inner.storage.sync_parts(&[&o.meta]) {
            inner.gc.discard_part(&inner.storage, &o.meta);
            return Err(e);
        }
    }
    if let Err(e) = after_write_failpoint() {
        if let Some(o) = &output {
            inner.gc.discard_part(&inner.storage, &o.meta);
        }
        return Err(e);
    }
    Ok(Some(PreparedRewrite {
        kind: TaskKind::Purge,
        reason,
        inputs: vec![RewriteInput {
            meta,
            read_deleted,
            map: RowMap::Rank,
        }],
        output,
        first_late_request: version.manifest.next_request_id,
        prepare: started.elapsed(),
        _pin: pin,
    }))
}

pub(super) fn prepare_merge(
    inner: &Inner,
    part_ids: &[u64],
    throttle: &Throttle<'_>,
    cancelled: &dyn Fn() -> bool,
) -> Result<Option<PreparedRewrite>> {
    let started = Instant::now();
    let (version, pin) = pin(inner)?;
    let mut metas = Vec::new();
    for id in part_ids {
        match version.manifest.part(*id) {
            Some(m) => metas.push(m.clone()),
            None => return Ok(None),
        }
    }
    let Some(first) = metas.first() else {
        return Ok(None);
    };
    let key = (first.table, first.project_id);
    // The merged part holds every input's days: one day, or days of one
    // month (see `policy`).
    let days = crate::format::days_of(&metas).unwrap_or(first.day..=first.day);
    let (first_day, last_day) = (*days.start(), *days.end());
    if metas.iter().any(|m| (m.table, m.project_id) != key)
        || crate::format::month_of(first_day) != crate::format::month_of(last_day)
    {
        return Err(StoreError::InvalidInput(
            "a merge combines parts of one table, project and month only".into(),
        ));
    }
    // Read each input (live rows, file order) into one batch.
    let mut inputs = Vec::new();
    let mut batches: Vec<RecordBatch> = Vec::new();
    // batches[i] holds the live rows of inputs[batch_input[i]]; an input
    // with no live row has no batch.
    let mut batch_input: Vec<usize> = Vec::new();
    for meta in metas {
        if cancelled() {
            return Err(cancelled_err());
        }
        let read_deleted = version
            .tombstones
            .get(&meta.id)
            .map(|b| (**b).clone())
            .unwrap_or_default();
        let mut got = Vec::new();
        scan_live_rows(
            &inner.storage,
            &meta,
            Some(&read_deleted),
            64 * 1024,
            &mut |b| {
                got.push(b);
                Ok(())
            },
        )?;
        throttle.spend(meta.size);
        if let Some(schema) = got.first().map(|b| b.schema()) {
            batch_input.push(inputs.len());
            batches.push(concat_batches(&schema, &got)?);
        }
        inputs.push(RewriteInput {
            map: RowMap::Explicit(vec![u32::MAX; meta.rows as usize]),
            meta,
            read_deleted,
        });
    }
    // Order all rows by (distinct_id, _seq): (id, seq, batch, row).
    let mut keys: Vec<(&str, u64, usize, usize)> = Vec::new();
    for (bi, b) in batches.iter().enumerate() {
        let path = &inputs[batch_input[bi]].meta.path;
        let dids = str_col(b, DISTINCT_ID_COLUMN, path)?;
        let seqs = u64_col(b, SEQ_COLUMN, path)?;
        for i in 0..b.num_rows() {
            keys.push((dids.value(i), seqs.value(i), bi, i));
        }
    }
    keys.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    // Row map: old position (kept rows in file order) -> new position.
    let mut kept: Vec<Vec<u32>> = Vec::with_capacity(inputs.len());
    for inp in &inputs {
        kept.push(
            (0..inp.meta.rows as u32)
                .filter(|r| !inp.read_deleted.contains(*r))
                .collect(),
        );
    }
    for (new_pos, (_, _, bi, i)) in keys.iter().enumerate() {
        let k = batch_input[*bi];
        let old = kept[k].get(*i).copied().ok_or_else(|| {
            StoreError::corrupt(&inputs[k].meta.path, "fewer rows than the manifest says")
        })?;
        if let RowMap::Explicit(m) = &mut inputs[k].map {
            if let Some(slot) = m.get_mut(old as usize) {
                *slot = new_pos as u32;
            }
        }
    }
    let id = inner.alloc_file_id();
    let mut output = None;
    if let Some(schema) = batches.first().map(|b| b.schema()) {
        let mut builder = PartBuilder::new(
            &inner.opts.part,
            key.0,
            key.1,
            first_day..=last_day,
            id,
            schema,
        )?;
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let idx: Vec<(usize, usize)> = keys.iter().map(|(_, _, b, i)| (*b, *i)).collect();
        builder.write_gathered(&refs, &idx, &|| {
            if cancelled() {
                Err(cancelled_err())
            } else {
                Ok(())
            }
        })?;
        output = builder.finish(&inner.storage, &inner.gc)?;
        if let Some(o) = &output {
            if let Err(e) = inner.storage.sync_parts(&[&o.meta]) {
                inner.gc.discard_part(&inner.storage, &o.meta);
                return Err(e);
            }
            throttle.spend(o.meta.size);
        }
    }
    if let Err(e) = after_write_failpoint() {
        if let Some(o) = &output {
            inner.gc.discard_part(&inner.storage, &o.meta);
        }
        return Err(e);
    }
    Ok(Some(PreparedRewrite {
        kind: TaskKind::Merge,
        reason: None,
        inputs,
        output,
        first_late_request: version.manifest.next_request_id,
        prepare: started.elapsed(),
        _pin: pin,
    }))
}
