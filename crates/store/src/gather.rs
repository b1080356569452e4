//! Gathering rows of several batches into one batch ([`gather`]), as a
//! part writer does a row group at a time from the memtable's chunks or
//! a merge's inputs.
//!
//! It is arrow's `interleave`, except for fixed-size binary columns (the
//! 16-byte UUIDs): arrow has no kernel for them and gathers them through
//! its generic `MutableArrayData` fallback, a row at a time and after
//! copying every input's `ArrayData`; here a row is one copy of its
//! bytes. The output is the same array (values, nulls, data type).

use std::sync::Arc;

use arrow::array::BooleanBufferBuilder;
use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, RecordBatch, RecordBatchOptions,
};
use arrow::buffer::{Buffer, NullBuffer};
use arrow::compute::interleave;
use arrow::datatypes::DataType;
use arrow::error::ArrowError;

/// The rows `rows` ((batch, row) pairs, in output order) of `batches`,
/// which share one schema.
pub(crate) fn gather(
    batches: &[&RecordBatch],
    rows: &[(usize, usize)],
) -> Result<RecordBatch, ArrowError> {
    let Some(first) = batches.first() else {
        return Err(ArrowError::InvalidArgumentError(
            "no batches to gather rows from".into(),
        ));
    };
    let schema = first.schema();
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays = batches
                .iter()
                .map(|b| match b.columns().get(c) {
                    Some(a) => Ok(a.as_ref()),
                    None => Err(ArrowError::InvalidArgumentError(format!(
                        "a batch of {} columns among batches of {}",
                        b.num_columns(),
                        schema.fields().len()
                    ))),
                })
                .collect::<Result<Vec<&dyn Array>, _>>()?;
            match schema.field(c).data_type() {
                DataType::FixedSizeBinary(width) => gather_fixed(&arrays, *width, rows),
                _ => interleave(&arrays, rows),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )
}

/// Copies the value of each of `rows` into its `w` bytes of `values` (and
/// its validity into `nulls`). `W` is `w` when it is a constant (16 for
/// UUIDs), so that each copy is a move of a known width rather than a call
/// to `memcpy`; 0 for any other width.
fn fill_fixed<const W: usize>(
    arrays: &[&FixedSizeBinaryArray],
    rows: &[(usize, usize)],
    w: usize,
    values: &mut [u8],
    nulls: &mut Option<BooleanBufferBuilder>,
) -> Result<(), ArrowError> {
    let w = if W == 0 { w } else { W };
    for (i, &(b, r)) in rows.iter().enumerate() {
        let Some(a) = arrays.get(b).filter(|a| r < a.len()) else {
            return Err(ArrowError::InvalidArgumentError(format!(
                "row ({b}, {r}) is not in the batches"
            )));
        };
        if let Some(to) = values.get_mut(i * w..i * w + w) {
            to.copy_from_slice(a.value(r));
        }
        if let Some(n) = nulls {
            n.append(a.is_valid(r));
        }
    }
    Ok(())
}

/// [`gather`] of one fixed-size binary column.
fn gather_fixed(
    arrays: &[&dyn Array],
    width: i32,
    rows: &[(usize, usize)],
) -> Result<ArrayRef, ArrowError> {
    let arrays = arrays
        .iter()
        .map(|a| match a.as_fixed_size_binary_opt() {
            Some(f) if f.value_length() == width => Ok(f),
            _ => Err(ArrowError::InvalidArgumentError(format!(
                "a {} column among FixedSizeBinary({width}) ones",
                a.data_type()
            ))),
        })
        .collect::<Result<Vec<&FixedSizeBinaryArray>, _>>()?;
    let w = usize::try_from(width)
        .map_err(|_| ArrowError::InvalidArgumentError(format!("width {width}")))?;
    let mut values: Vec<u8> = vec![0; rows.len() * w];
    let mut nulls = arrays
        .iter()
        .any(|a| a.null_count() > 0)
        .then(|| BooleanBufferBuilder::new(rows.len()));
    match w {
        16 => fill_fixed::<16>(&arrays, rows, w, &mut values, &mut nulls)?,
        8 => fill_fixed::<8>(&arrays, rows, w, &mut values, &mut nulls)?,
        _ => fill_fixed::<0>(&arrays, rows, w, &mut values, &mut nulls)?,
    }
    let nulls = nulls.map(|mut n| NullBuffer::new(n.finish()));
    Ok(Arc::new(FixedSizeBinaryArray::try_new(
        width,
        Buffer::from_vec(values),
        nulls,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::compute::interleave_record_batch;
    use arrow::datatypes::{Field, Schema};
    use proptest::prelude::*;

    fn batch(schema: &Arc<Schema>, ids: &[Option<[u8; 16]>], n: &[i64]) -> RecordBatch {
        let fixed = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
            ids.iter().map(|x| x.as_ref().map(|v| v.as_slice())),
            16,
        )
        .expect("fixed");
        let text = StringArray::from_iter_values(n.iter().map(|x| format!("row {x}")));
        RecordBatch::try_new(
            Arc::clone(schema),
            vec![
                Arc::new(fixed),
                Arc::new(Int64Array::from(n.to_vec())),
                Arc::new(text),
            ],
        )
        .expect("batch")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The same batch as arrow's `interleave_record_batch`, nulls and
        /// field metadata included, for random batches and row lists.
        #[test]
        fn equals_arrows_interleave(
            sizes in proptest::collection::vec(1usize..20, 1..5),
            nulls in any::<bool>(),
            picks in proptest::collection::vec((any::<usize>(), any::<usize>()), 0..80),
        ) {
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::FixedSizeBinary(16), true).with_metadata(
                    [("ARROW:extension:name".to_string(), "arrow.uuid".to_string())].into(),
                ),
                Field::new("n", DataType::Int64, false),
                Field::new("t", DataType::Utf8, false),
            ]));
            let mut k = 0i64;
            let batches: Vec<RecordBatch> = sizes
                .iter()
                .map(|&len| {
                    let n: Vec<i64> = (0..len).map(|_| { k += 1; k }).collect();
                    // Every byte of every value differs from its neighbours'.
                    let ids: Vec<Option<[u8; 16]>> = n
                        .iter()
                        .map(|&x| {
                            (!nulls || x % 3 != 0).then_some(
                                (x as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835).to_le_bytes(),
                            )
                        })
                        .collect();
                    // Sliced, when it can be: offsets must be honoured.
                    let b = batch(&schema, &ids, &n);
                    if len > 2 { b.slice(1, len - 1) } else { b }
                })
                .collect();
            let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            let rows: Vec<(usize, usize)> = picks
                .iter()
                .map(|&(b, r)| (b % sizes.len(), r % sizes[b % sizes.len()]))
                .collect();
            let got = gather(&refs, &rows).expect("gather");
            let want = interleave_record_batch(&refs, &rows).expect("interleave");
            prop_assert_eq!(got.schema(), want.schema());
            prop_assert_eq!(got.num_rows(), rows.len());
            for c in 0..want.num_columns() {
                prop_assert_eq!(&got.column(c).to_data(), &want.column(c).to_data(), "column {}", c);
            }
        }
    }

    /// Widths other than 16 (8 has a copy of its own, 5 the general one)
    /// give arrow's answer too, nulls included.
    #[test]
    fn other_widths_equal_arrows_interleave() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::FixedSizeBinary(8), true),
            Field::new("b", DataType::FixedSizeBinary(5), true),
        ]));
        let batch = |seed: u8, len: u8| {
            let values = |w: usize| {
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    (0..len).map(|i| (i % 4 != 1).then(|| vec![seed ^ i; w])),
                    w as i32,
                )
                .expect("fixed")
            };
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(values(8)), Arc::new(values(5))],
            )
            .expect("batch")
        };
        let batches = [batch(1, 9), batch(200, 4).slice(1, 3)];
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let rows = [(0, 3), (1, 0), (0, 1), (1, 2), (0, 8), (0, 0), (1, 1)];
        let got = gather(&refs, &rows).expect("gather");
        let want = interleave_record_batch(&refs, &rows).expect("interleave");
        for c in 0..want.num_columns() {
            assert_eq!(
                got.column(c).to_data(),
                want.column(c).to_data(),
                "column {c}"
            );
        }
    }

    /// The columns of [`batch`], without field metadata.
    fn plain_schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::FixedSizeBinary(16), true),
            Field::new("n", DataType::Int64, false),
            Field::new("t", DataType::Utf8, false),
        ]))
    }

    #[test]
    fn a_row_outside_the_batches_is_an_error() {
        let schema = plain_schema();
        let b = batch(&schema, &[Some([1; 16])], &[1]);
        assert!(gather(&[&b], &[(0, 1)]).is_err());
        assert!(gather(&[&b], &[(1, 0)]).is_err());
        assert!(gather(&[], &[]).is_err());
    }

    /// A batch with fewer columns than the first is an error, not a panic.
    #[test]
    fn a_batch_of_another_width_is_an_error() {
        let schema = plain_schema();
        let wide = batch(&schema, &[Some([1; 16])], &[1]);
        let narrow = wide.project(&[0]).expect("project");
        assert!(gather(&[&wide, &narrow], &[(0, 0), (1, 0)]).is_err());
    }
}
