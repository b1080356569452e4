//! The streaming batch generator.

use std::fmt::Write as _;

use arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::NaiveTime;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use std::sync::Arc;

use crate::persons::{person_traits, session_uuid, PersonIdCache, ProjectMap};
use crate::props::{pick_event, write_properties, EventCtx, PropsScratch, EVENTS, IDENTIFY};
use crate::time::{TimeCursor, MICROS_PER_DAY};
use crate::{events_schema, GenConfig, GenError, MAX_DAYS, MAX_PERSONS, MAX_PROJECTS};

/// Zipf exponent of person activity.
const PERSON_ZIPF_EXPONENT: f64 = 1.1;
/// Share of events without a person (per 10_000).
const PERSONLESS_PER_10K: u64 = 200;
/// Share of events without a session (per 10_000).
const NO_SESSION_PER_10K: u64 = 500;
/// Share of an anon-using person's events sent under the anon id (per 10_000).
const ANON_PER_10K: u64 = 3_500;

/// Streaming generator of event batches; see the crate docs.
///
/// Implements `Iterator<Item = RecordBatch>`: every batch has at most
/// `batch_rows` rows, timestamps are non-decreasing across the whole stream,
/// and exactly `events` rows are produced in total. An internal error (which
/// should not happen) ends iteration early; use [`Generator::try_next_batch`]
/// to observe it.
pub struct Generator {
    cfg: GenConfig,
    schema: SchemaRef,
    rng: ChaCha8Rng,
    zipf: Option<Zipf<f64>>,
    projects: ProjectMap,
    time: TimeCursor,
    start_us: i64,
    remaining: u64,
    /// One bit per person: seen with a non-null person id.
    seen: Vec<u64>,
    persons_seen: u64,
    props: PropsScratch,
    person_ids: PersonIdCache,
    failed: bool,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("cfg", &self.cfg)
            .field("remaining", &self.remaining)
            .field("persons_seen", &self.persons_seen)
            .finish_non_exhaustive()
    }
}

fn invalid(msg: impl Into<String>) -> GenError {
    GenError::InvalidConfig(msg.into())
}

impl Generator {
    /// Validate `cfg` and prepare to generate it.
    pub fn new(cfg: GenConfig) -> Result<Self, GenError> {
        if cfg.days == 0 {
            return Err(invalid("days must be > 0"));
        }
        if cfg.days > MAX_DAYS {
            return Err(invalid(format!("days must be <= {MAX_DAYS}")));
        }
        if cfg.batch_rows == 0 {
            return Err(invalid("batch_rows must be > 0"));
        }
        if cfg.events > 0 && cfg.persons == 0 {
            return Err(invalid("events > 0 requires persons > 0"));
        }
        if cfg.events > 0 && cfg.projects == 0 {
            return Err(invalid("events > 0 requires projects > 0"));
        }
        if cfg.persons > MAX_PERSONS {
            return Err(invalid(format!("persons must be <= {MAX_PERSONS}")));
        }
        if cfg.projects > MAX_PROJECTS {
            return Err(invalid(format!("projects must be <= {MAX_PROJECTS}")));
        }
        let start = cfg
            .end_day
            .checked_sub_days(chrono::Days::new(u64::from(cfg.days)))
            .ok_or_else(|| invalid("end_day - days is out of range"))?;
        let start_us = start.and_time(NaiveTime::MIN).and_utc().timestamp_micros();

        let zipf = if cfg.persons > 0 {
            Some(
                Zipf::new(cfg.persons as f64, PERSON_ZIPF_EXPONENT)
                    .map_err(|e| invalid(format!("person distribution: {e}")))?,
            )
        } else {
            None
        };
        let seen_words = usize::try_from(cfg.persons.div_ceil(64))
            .map_err(|_| invalid("too many persons for this platform"))?;
        Ok(Self {
            schema: events_schema(),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            zipf,
            projects: ProjectMap::new(cfg.projects),
            time: TimeCursor::new(start, cfg.days, start_us, cfg.events),
            start_us,
            remaining: cfg.events,
            seen: vec![0; seen_words],
            persons_seen: 0,
            props: PropsScratch::default(),
            person_ids: PersonIdCache::new(),
            failed: false,
            cfg,
        })
    }

    /// The schema of every batch ([`events_schema`]).
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Rows still to be generated.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Distinct persons emitted so far with a non-null `person_id`.
    pub fn persons_seen(&self) -> u64 {
        self.persons_seen
    }

    /// Generate the next batch, `Ok(None)` once all rows have been produced.
    pub fn try_next_batch(&mut self) -> Result<Option<RecordBatch>, GenError> {
        if self.failed || self.remaining == 0 {
            return Ok(None);
        }
        let Some(zipf) = self.zipf else {
            return Err(invalid("events > 0 requires persons > 0"));
        };
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(self.cfg.batch_rows);
        match self.build_batch(&zipf, n) {
            Ok(batch) => {
                self.remaining -= n as u64;
                Ok(Some(batch))
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn build_batch(&mut self, zipf: &Zipf<f64>, n: usize) -> Result<RecordBatch, GenError> {
        let mut uuid_b = StringBuilder::with_capacity(n, n * 36);
        let mut event_b = StringBuilder::with_capacity(n, n * 12);
        let mut distinct_b = StringBuilder::with_capacity(n, n * 16);
        let mut person_b = StringBuilder::with_capacity(n, n * 36);
        let mut project_b = Int64Builder::with_capacity(n);
        let mut ts_b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut props_b = StringBuilder::with_capacity(n, n * 160);
        let mut session_b = StringBuilder::with_capacity(n, n * 36);
        let mut uuid_buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let persons = self.cfg.persons;
        let seed = self.cfg.seed;

        for _ in 0..n {
            let rng = &mut self.rng;
            let ts = self.time.next_us(rng);
            // Zipf ranks are 1..=persons; rank r is person r - 1.
            let person_index = (zipf.sample(rng) as u64).clamp(1, persons) - 1;
            let project_id = self.projects.project_of(person_index);
            let traits = person_traits(seed, person_index);
            let event = pick_event(rng.random_range(0..100));
            let flags = rng.random::<u64>();
            let personless = flags % 10_000 < PERSONLESS_PER_10K;
            let no_session = (flags >> 16) % 10_000 < NO_SESSION_PER_10K;
            let use_anon =
                traits.has_anon && event != IDENTIFY && (flags >> 32) % 10_000 < ANON_PER_10K;

            let event_uuid =
                uuid::Builder::from_random_bytes(rng.random::<u128>().to_le_bytes()).into_uuid();
            uuid_b.append_value(event_uuid.hyphenated().encode_lower(&mut uuid_buf));
            event_b.append_value(EVENTS[event].0);

            if personless {
                write!(
                    distinct_b,
                    "guest-{project_id}-{:016x}",
                    rng.random::<u64>()
                )?;
                distinct_b.append_value("");
                person_b.append_null();
            } else {
                let prefix = if use_anon { "anon" } else { "user" };
                write!(distinct_b, "{prefix}-{project_id}-{person_index}")?;
                distinct_b.append_value("");
                person_b.append_value(self.person_ids.get(project_id, person_index));
                self.mark_seen(person_index);
            }
            project_b.append_value(project_id);
            ts_b.append_value(ts);

            let ctx = EventCtx {
                event,
                project_id,
                person_index,
                traits,
                personless,
            };
            write_properties(&mut self.rng, &ctx, &mut self.props)?;
            props_b.append_value(std::str::from_utf8(&self.props.json)?);

            if no_session {
                session_b.append_null();
            } else {
                let day = ((ts - self.start_us) / MICROS_PER_DAY) as u64;
                let sid = session_uuid(seed, project_id, person_index, day);
                session_b.append_value(sid.hyphenated().encode_lower(&mut uuid_buf));
            }
        }

        let columns: Vec<ArrayRef> = vec![
            Arc::new(uuid_b.finish()),
            Arc::new(event_b.finish()),
            Arc::new(distinct_b.finish()),
            Arc::new(person_b.finish()),
            Arc::new(project_b.finish()),
            Arc::new(ts_b.finish()),
            Arc::new(props_b.finish()),
            Arc::new(session_b.finish()),
        ];
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }

    fn mark_seen(&mut self, person_index: u64) {
        let word = (person_index / 64) as usize;
        let bit = 1u64 << (person_index % 64);
        if let Some(w) = self.seen.get_mut(word) {
            if *w & bit == 0 {
                *w |= bit;
                self.persons_seen += 1;
            }
        }
    }
}

impl Iterator for Generator {
    type Item = RecordBatch;

    fn next(&mut self) -> Option<RecordBatch> {
        self.try_next_batch().ok().flatten()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.failed {
            return (0, Some(0));
        }
        let batches = self.remaining.div_ceil(self.cfg.batch_rows as u64);
        // Lower bound 0: an internal error may end iteration early.
        (0, usize::try_from(batches).ok())
    }
}
