//! Personless actors: events whose distinct id has no person (sent with
//! `$process_person_profile: false`, posthog-js's default for anonymous
//! visitors), which trends, funnels and correlation count by the person
//! UUID the event carries, as PostHog does.
//!
//! Invariants:
//!
//! - a deleted person counts nowhere: the events it kept have no distinct
//!   id with a person either, so they are told apart by what the deletion
//!   left behind: its UUID ([`Personless::deleted`]), and its distinct
//!   ids, blocked until reset ([`BLOCKED_ID`]), whose events from before
//!   they joined the person carry other UUIDs;
//! - an event whose distinct id has no person but whose UUID is a live
//!   person's (its id was reset away from that person) is no personless
//!   actor: it belongs to nobody, and never counts that person twice
//!   ("live": owning a distinct id; a person whose last id was reset
//!   counts once, as an anonymous visitor);
//! - a blocked id that is reset is a fresh id: the events it sent for the
//!   deleted person before count again as an anonymous visitor's;
//! - personless actors have empty person properties: a person filter sees
//!   them as absent ([`personless_can_match`]), and they are in no cohort.

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use elide_persons::deleted::DeletedActors;
use elide_persons::{Persons, SqliteMeta};

use super::in_set;
use super::properties::props_sql;
use super::properties::{Prop, PropKind};
use crate::error::Result;

/// The condition that event `e`'s distinct id has no person.
pub const NO_PERSON: &str =
    "NOT EXISTS (SELECT 1 FROM person_distinct_ids x WHERE x.distinct_id = e.distinct_id)";

/// The condition that the UUID event `e` carries is no live person's (one
/// that owns a distinct id).
pub const NOT_A_PERSONS_UUID: &str =
    "NOT EXISTS (SELECT 1 FROM person_distinct_ids y WHERE uuid_from_text(y.person_id) = e.person_id)";

/// The event filter that an event was not sent personless
/// (`$process_person_profile` is not `false`), by its property as PostHog's
/// lifecycle reads it (as text, so `"false"` too), whoever owns its distinct id
/// now. Given to [`props_sql`] with the query's other event filters, so
/// that each event's properties are read once.
pub fn sent_with_person() -> Prop {
    Prop::leaf(
        PropKind::Event,
        elide_store::predicate::PropertyFilter {
            key: "$process_person_profile".into(),
            operator: elide_store::predicate::PropertyOperator::IsNot,
            value: serde_json::json!(false),
        },
    )
}

/// Name of the function whether a distinct id is blocked
/// (`elide_blocked_id(distinct_id)`), registered by [`Personless::register`].
pub const BLOCKED_ID: &str = "elide_blocked_id";

/// `props` as they read for a personless event (no person: no cohort,
/// empty person properties), on the event alone: `None` when they cannot
/// hold of one. A person property filter holds when it holds of an absent
/// value (`is_not`, `is_not_set`), as PostHog evaluates them on a
/// personless event's empty person properties; a cohort filter never
/// does, not even "not in" one (its condition on no person is NULL, as
/// in the queries that read persons and personless events together). An `OR` group
/// keeps the lists that can hold, and is no condition when one of them is
/// left empty.
pub fn personless_props(props: &[Prop]) -> Option<Vec<Prop>> {
    let mut out = Vec::new();
    for p in props {
        match p {
            Prop::Leaf(l) => match l.kind {
                PropKind::Event => out.push(p.clone()),
                PropKind::Person => {
                    if !l
                        .filter
                        .matches_value_as(None, elide_store::predicate::Comparison::Text)
                    {
                        return None;
                    }
                }
                PropKind::Cohort => return None,
            },
            Prop::AnyOf(branches) => {
                let mut left: Vec<Vec<Prop>> = branches
                    .iter()
                    .filter_map(|b| personless_props(b))
                    .collect();
                if left.is_empty() {
                    return None;
                }
                if left.iter().any(Vec::is_empty) {
                    // A list of no condition left: the group always holds.
                } else if let [one] = &mut left[..] {
                    out.append(one);
                } else {
                    out.push(Prop::AnyOf(left));
                }
            }
        }
    }
    Some(out)
}

/// Whether personless events can pass `props` ([`personless_props`]).
pub fn personless_can_match(props: &[Prop]) -> bool {
    personless_props(props).is_some()
}

/// [`props_sql`] for personless events, on `e` alone
/// ([`personless_props`]; `FALSE` when none can pass).
pub fn personless_props_sql(props: &[Prop]) -> Result<String> {
    match personless_props(props) {
        Some(events) => props_sql(&events),
        None => Ok("FALSE".into()),
    }
}

/// What a request needs to leave deleted persons out of its personless
/// actors ([`Persons::deleted_actors`], kept between requests until a
/// deletion or reset). Read before the query, which reads the persons
/// tables when it is planned: a person deleted in between would be in
/// neither, so the caller asks [`Personless::stale`] after the query and
/// runs it again if so.
pub struct Personless {
    deleted: Arc<DeletedActors>,
}

impl Personless {
    /// Read the project's deleted persons and blocked ids.
    pub fn read(persons: &Arc<Persons<SqliteMeta>>, project: i64) -> Result<Personless> {
        Ok(Personless {
            deleted: persons.deleted_actors(project)?,
        })
    }

    /// Whether `uuid` (text) is a deleted person's: its kept events count
    /// for no one.
    pub fn is_deleted(&self, uuid: &str) -> bool {
        self.deleted.is_deleted(uuid)
    }

    /// Whether a person was deleted or an id reset since this was read
    /// (the query that used it may have seen its events without its ids).
    pub fn stale(&self, persons: &Arc<Persons<SqliteMeta>>, project: i64) -> Result<bool> {
        Ok(persons.deletion_stamp(project)? != self.deleted.stamp())
    }

    /// Put [`BLOCKED_ID`] and [`DELETED_ACTOR`] on `ctx` (both false for
    /// NULL).
    pub fn register(&self, ctx: &SessionContext) {
        let blocked = Arc::clone(self.deleted.blocked());
        ctx.register_udf(in_set::udf(
            BLOCKED_ID,
            Arc::new(move |id| blocked.contains(id)),
            Some(false),
        ));
        let deleted = Arc::clone(&self.deleted);
        ctx.register_udf(in_set::udf(
            DELETED_ACTOR,
            Arc::new(move |uuid| deleted.is_deleted(uuid)),
            Some(false),
        ));
    }

    /// The condition that the UUID personless event `e` carries is no
    /// deleted person's (`TRUE` when nobody was deleted), for a query that
    /// counts their events in SQL rather than by actor.
    pub fn not_deleted_sql(&self) -> String {
        if self.deleted.deleted_count() == 0 {
            "TRUE".into()
        } else {
            format!("NOT {DELETED_ACTOR}(CAST(e.person_id AS VARCHAR))")
        }
    }

    /// The condition that event `e` is a personless actor's: it carries a
    /// UUID, its distinct id has no person and is not blocked (a deleted
    /// person's), the UUID is no live person's (an id reset away from
    /// that person: nobody's) and, with `not_deleted`, no deleted
    /// person's ([`Personless::not_deleted_sql`]; a query that counts by
    /// actor may leave those out itself).
    pub fn actor_sql(&self, not_deleted: bool) -> String {
        let mut out = format!(
            "e.person_id IS NOT NULL AND {NO_PERSON} AND {NOT_A_PERSONS_UUID} AND {}",
            self.not_blocked_sql()
        );
        if not_deleted {
            out.push_str(" AND ");
            out.push_str(&self.not_deleted_sql());
        }
        out
    }

    /// The condition that event `e`'s distinct id is not blocked (`TRUE`
    /// when no id is: the common case costs nothing).
    pub fn not_blocked_sql(&self) -> String {
        if self.deleted.blocked().is_empty() {
            "TRUE".into()
        } else {
            format!("NOT {BLOCKED_ID}(e.distinct_id)")
        }
    }
}

impl std::fmt::Debug for Personless {
    // The deleted persons' UUIDs are not printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Personless")
            .field("deleted", &self.deleted.deleted_count())
            .field("blocked", self.deleted.blocked())
            .finish()
    }
}

/// Most times a query runs again because a person was deleted while it ran
/// ([`Personless::stale`]); then its last answer stands.
pub const MAX_RUNS: usize = 3;

/// Name of the function whether a person UUID (text) is a deleted
/// person's (`elide_deleted_actor(uuid)`), registered by
/// [`Personless::register`].
pub const DELETED_ACTOR: &str = "elide_deleted_actor";

#[cfg(test)]
mod tests {
    use super::super::properties::Leaf;
    use super::*;
    use elide_store::predicate::Comparison;
    use serde_json::json;

    /// The lifecycle's filter leaves out `false` and `"false"` (PostHog
    /// reads the property's text), and keeps every other value and a
    /// missing key.
    #[test]
    fn sent_with_person_reads_the_property_as_text() {
        let Prop::Leaf(Leaf { filter: f, .. }) = sent_with_person() else {
            panic!("one filter")
        };
        for (v, kept) in [
            (Some(json!(false)), false),
            (Some(json!("false")), false),
            (Some(json!(true)), true),
            (Some(json!("no")), true),
            (Some(json!(null)), true),
            (None, true),
        ] {
            assert_eq!(
                f.matches_value_as(v.as_ref(), Comparison::Text),
                kept,
                "{v:?}"
            );
        }
    }

    /// A personless event's person properties are empty: a person filter
    /// that holds of a missing key lets it through, as the query's own
    /// (text) comparison would.
    #[test]
    fn person_filters_that_hold_of_nothing_let_personless_events_through() {
        let person =
            |v: serde_json::Value| Prop::leaf(PropKind::Person, serde_json::from_value(v).unwrap());
        assert!(personless_can_match(&[person(
            json!({"key": "plan", "operator": "is_not", "value": "pro"})
        )]));
        assert!(personless_can_match(&[person(
            json!({"key": "plan", "operator": "exact", "value": null})
        )]));
        assert!(!personless_can_match(&[person(
            json!({"key": "plan", "operator": "is_set"})
        )]));
        assert!(!personless_can_match(&[person(
            json!({"key": "plan", "operator": "is_not", "value": null})
        )]));
    }
}
