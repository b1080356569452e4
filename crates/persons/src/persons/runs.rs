//! Who held a person's distinct ids when: the runs of `_seq`s of each id
//! that are the person's, from the records of resets and splits
//! (`detached_ids`) of every person. A person's deletion deletes exactly
//! these rows and its subject-access export reads exactly them.
//!
//! Invariant: a record (id, holder, c) gives the holder the id's rows
//! below `c`, down to the id's record before it (records of one cut-off
//! in the order they were made); the rows from the last record on are the
//! id's current holder's. A holder of the nil UUID is no one (a deleted
//! person's erased record, or a reset that lifted a block).

use std::collections::HashSet;

use uuid::Uuid;

use crate::error::Result;
use crate::meta::MetaTx;

/// Who held a person's ids before, as its deletion and its export read it.
pub(crate) struct Detached {
    /// The person and the persons merged into it.
    pub(crate) uuids: Vec<Uuid>,
    /// How many records of ids a reset or a split detached from one of
    /// them there are (metadata rows its deletion erases).
    pub(crate) records: usize,
    /// Every record, of any person, of those ids and of the person's
    /// current ids: (id, person it was detached from, cut-off).
    holders: Vec<(String, Uuid, u64)>,
}

impl Detached {
    /// The runs of rows of `current` (the person's ids now) and of its
    /// detached ids that are the person's ([`spans`]).
    pub(crate) fn spans(&self, current: &[String]) -> Vec<Span> {
        spans(current, &self.uuids, &self.holders)
    }
}

/// A run of one id's rows that are the deleted person's: `_seq`s from
/// `floor` to below `cutoff` (`None`: every row appended before the
/// deletion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) id: String,
    pub(crate) floor: u64,
    pub(crate) cutoff: Option<u64>,
}

impl Span {
    /// All the id's rows so far: its current ids' usual request.
    pub(crate) fn is_whole(&self) -> bool {
        self.floor == 0 && self.cutoff.is_none()
    }

    /// Whether a row of the id with this `_seq` is in the span.
    pub(crate) fn holds(&self, seq: u64) -> bool {
        seq >= self.floor && self.cutoff.is_none_or(|c| seq < c)
    }
}

/// Who held the ids of the person `uuids[0]` (`uuids`: it and the
/// persons merged into it; `ids`: its current ids, as the caller read
/// them in the same transaction), and the ids detached from any of them.
pub(crate) fn holders(
    tx: &mut dyn MetaTx,
    project: i64,
    uuids: Vec<Uuid>,
    ids: &[String],
) -> Result<Detached> {
    let own = tx.detached(project, &uuids)?;
    let mut named: Vec<String> = ids.to_vec();
    named.extend(own.iter().map(|(id, _)| id.clone()));
    named.sort_unstable();
    named.dedup();
    Ok(Detached {
        records: own.len(),
        holders: tx.detached_holders(project, &named)?,
        uuids,
    })
}

/// Which rows of each id are the person's (`uuids`: it and the persons
/// merged into it). `holders` come in the order they were recorded. A
/// record (id, holder, c) says that the id's rows
/// below `c`, down to the record before it, are the holder's; the rows
/// from the last record on are the current holder's, the person's when
/// the id is one of its `current` ids. One span per run of the person's
/// (an id it held, lost and got back has two), none empty.
fn spans(current: &[String], uuids: &[Uuid], holders: &[(String, Uuid, u64)]) -> Vec<Span> {
    let mut by_id: std::collections::BTreeMap<&str, Vec<(u64, bool)>> = Default::default();
    for id in current {
        by_id.entry(id.as_str()).or_default();
    }
    for (id, holder, cutoff) in holders {
        by_id
            .entry(id.as_str())
            .or_default()
            .push((*cutoff, uuids.contains(holder)));
    }
    let current: HashSet<&str> = current.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for (id, mut records) in by_id {
        // Stable: of two records at one cut-off (no row between them),
        // the earlier held the rows below it.
        records.sort_by_key(|r| r.0);
        let mut push = |floor: u64, cutoff: Option<u64>| {
            if cutoff.is_none_or(|c| floor < c) {
                out.push(Span {
                    id: id.to_string(),
                    floor,
                    cutoff,
                });
            }
        };
        // The start of the person's run being walked, and the end of the
        // record before.
        let (mut start, mut lo) = (None, 0);
        for (cutoff, mine) in records {
            if mine {
                start.get_or_insert(lo);
            } else if let Some(s) = start.take() {
                push(s, Some(lo));
            }
            lo = cutoff;
        }
        if current.contains(id) {
            push(start.unwrap_or(lo), None);
        } else if let Some(s) = start {
            push(s, Some(lo));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, floor: u64, cutoff: Option<u64>) -> Span {
        Span {
            id: id.into(),
            floor,
            cutoff,
        }
    }

    /// An id's holders in `_seq` order: `a` held `x` below 10, `b` from 10
    /// to 20, `a` again from 20 to 30, and `c` holds it now. `a`'s runs
    /// are its two; `b`'s is bounded on both sides; `c`'s starts at 30.
    /// A current id no one held before is whole; records of persons
    /// merged into the deleted one are its own; empty runs are left out.
    #[test]
    fn spans_follow_who_held_each_id() {
        let (a, b, c, m) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let x = |p: Uuid, cut: u64| ("x".to_string(), p, cut);
        let holders = vec![x(b, 20), x(a, 10), x(a, 30)];
        assert_eq!(
            spans(&[], &[a], &holders),
            vec![span("x", 0, Some(10)), span("x", 20, Some(30))]
        );
        assert_eq!(spans(&[], &[b], &holders), vec![span("x", 10, Some(20))]);
        assert_eq!(
            spans(&["x".into(), "y".into()], &[c], &holders),
            vec![span("x", 30, None), span("y", 0, None)]
        );
        // `a` holds it again now: its first run, and all from 20 on.
        assert_eq!(
            spans(&["x".into()], &[a], &holders),
            vec![span("x", 0, Some(10)), span("x", 20, None)]
        );
        // `b` merged into `m`: `m`'s deletion covers `b`'s run.
        assert_eq!(spans(&[], &[m, b], &holders), vec![span("x", 10, Some(20))]);
        // Two records at one cut-off (the later held no row): the rows
        // below it are the earlier's.
        let tied = vec![x(a, 10), x(b, 10)];
        assert_eq!(spans(&[], &[b], &tied), vec![]);
        assert_eq!(spans(&[], &[a], &tied), vec![span("x", 0, Some(10))]);
    }
}
