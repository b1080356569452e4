//! Work over a slice on every core: the flush's part writers and the
//! predicate scans share it.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Result, StoreError};

/// `job` of every item, in order, on up to as many threads as the machine
/// has cores. Each thread takes the next item until none is left; once a
/// job fails, no thread takes another, and the first failure (in item
/// order) is returned. `what` names the work in the error of a panicked
/// thread.
pub(crate) fn try_map<T: Sync, R: Send>(
    items: &[T],
    what: &str,
    job: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(job).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Vec<Vec<(usize, Result<R>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        let r = job(item);
                        let failed = r.is_err();
                        mine.push((i, r));
                        if failed {
                            next.store(items.len(), Ordering::Relaxed);
                            break;
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![(
                        usize::MAX,
                        Err(StoreError::Internal(format!("a {what} thread panicked"))),
                    )]
                })
            })
            .collect()
    });
    let mut done: Vec<(usize, Result<R>)> = results.into_iter().flatten().collect();
    done.sort_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(items.len());
    for (_, r) in done {
        out.push(r?);
    }
    if out.len() != items.len() {
        return Err(StoreError::Internal(format!(
            "{what}: {} of {} items done",
            out.len(),
            items.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_order_and_the_first_failure_wins() {
        let items: Vec<u32> = (0..100).collect();
        let out = try_map(&items, "test", |i| Ok(i * 2)).unwrap();
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let e = try_map(&items, "test", |i| {
            if *i >= 40 {
                Err(StoreError::Internal(format!("item {i}")))
            } else {
                Ok(*i)
            }
        })
        .unwrap_err();
        assert!(e.to_string().contains("item 40"), "{e}");
        assert!(try_map(&Vec::<u32>::new(), "test", |i| Ok(*i))
            .unwrap()
            .is_empty());
    }
}
