//! The synthetic population: which project a person belongs to, their ids, and
//! their (seeded) per-person traits. Everything here is a pure function.

use uuid::Uuid;

/// Namespace for person UUIDv5s (fixed forever: changing it changes data).
const PERSON_NAMESPACE: Uuid = Uuid::from_u128(0x5e1d_e0a1_7c3b_4f0e_9a6d_2b8c_41f7_e953);

/// Salt for the person -> project hash (independent of the seed).
const PROJECT_SALT: u64 = 0x9e6c_63d0_676a_9a99;
/// Salt for per-person traits.
const TRAIT_SALT: u64 = 0x3c6e_f372_fe94_f82b;
/// Salt for session ids.
const SESSION_SALT: u64 = 0xa54f_f53a_5f1d_36f1;

/// SplitMix64 finalizer: a fast, well-mixed 64-bit hash.
pub(crate) const fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Map a hash to a uniform `f64` in `[0, 1)`.
pub(crate) fn unit_f64(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The primary distinct id the generator uses for a person.
pub fn person_distinct_id(project_id: i64, person_index: u64) -> String {
    format!("user-{project_id}-{person_index}")
}

/// The secondary anonymous distinct id some persons also use (same person id).
pub fn person_anon_id(project_id: i64, person_index: u64) -> String {
    format!("anon-{project_id}-{person_index}")
}

/// The deterministic `person_id` of a person: UUIDv5 of `(project, index)`.
pub fn person_uuid(project_id: i64, person_index: u64) -> Uuid {
    let mut name = [0u8; 16];
    name[..8].copy_from_slice(&project_id.to_le_bytes());
    name[8..].copy_from_slice(&person_index.to_le_bytes());
    Uuid::new_v5(&PERSON_NAMESPACE, &name)
}

/// The project (in `1..=projects`) that person `person_index` belongs to.
/// Independent of the seed. Returns 1 when `projects <= 1`.
///
/// Costs O(projects); the generator uses a precomputed table instead.
pub fn person_project(person_index: u64, projects: u32) -> i64 {
    ProjectMap::new(projects).project_of(person_index)
}

/// Person -> project assignment with harmonic weights (project `p` gets a share
/// proportional to `1/p`), so project 1 is the largest.
#[derive(Debug, Clone)]
pub(crate) struct ProjectMap {
    /// `cum[p]` = cumulative share of projects `1..=p+1`; last entry is 1.0.
    cum: Vec<f64>,
}

impl ProjectMap {
    pub(crate) fn new(projects: u32) -> Self {
        let n = projects.max(1) as usize;
        let mut cum = Vec::with_capacity(n);
        let mut total = 0.0;
        for p in 1..=n {
            total += 1.0 / p as f64;
            cum.push(total);
        }
        for c in &mut cum {
            *c /= total;
        }
        if let Some(last) = cum.last_mut() {
            *last = 1.0;
        }
        Self { cum }
    }

    pub(crate) fn project_of(&self, person_index: u64) -> i64 {
        if self.cum.len() == 1 {
            return 1;
        }
        let u = unit_f64(splitmix64(person_index ^ PROJECT_SALT));
        let pos = self.cum.partition_point(|&c| c <= u);
        pos.min(self.cum.len() - 1) as i64 + 1
    }
}

/// Stable per-person characteristics (depend on the seed and the index).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PersonTraits {
    pub(crate) browser: &'static str,
    pub(crate) os: &'static str,
    /// ~40% of persons have an email that shows up on some events.
    pub(crate) has_email: bool,
    /// ~30% of persons also send events under an anonymous id.
    pub(crate) has_anon: bool,
}

const BROWSERS: [(&str, u64); 4] = [("Chrome", 62), ("Safari", 20), ("Firefox", 10), ("Edge", 8)];
const OSES: [(&str, u64); 5] = [
    ("Windows", 38),
    ("Mac OS X", 27),
    ("iOS", 15),
    ("Android", 13),
    ("Linux", 7),
];

fn pick_pct(table: &[(&'static str, u64)], roll: u64) -> &'static str {
    let mut acc = 0;
    for &(name, pct) in table {
        acc += pct;
        if roll < acc {
            return name;
        }
    }
    table.last().map_or("", |&(name, _)| name)
}

pub(crate) fn person_traits(seed: u64, person_index: u64) -> PersonTraits {
    let h = splitmix64(splitmix64(seed ^ TRAIT_SALT) ^ person_index);
    PersonTraits {
        browser: pick_pct(&BROWSERS, h % 100),
        os: pick_pct(&OSES, (h >> 16) % 100),
        has_email: (h >> 32) % 100 < 40,
        has_anon: (h >> 48) % 100 < 30,
    }
}

/// Session id of a person on a given day (days counted from the start).
pub(crate) fn session_uuid(seed: u64, project_id: i64, person_index: u64, day: u64) -> Uuid {
    let a = splitmix64(seed ^ SESSION_SALT ^ splitmix64(person_index));
    let b = splitmix64(a ^ (project_id as u64).rotate_left(32) ^ day);
    let c = splitmix64(b ^ a);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&b.to_le_bytes());
    bytes[8..].copy_from_slice(&c.to_le_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Direct-mapped cache of formatted person UUIDs. Zipf activity means a few
/// thousand hot persons account for most events, so this skips most SHA-1s.
#[derive(Debug)]
pub(crate) struct PersonIdCache {
    slots: Vec<(u64, String)>,
}

const PERSON_CACHE_SLOTS: usize = 4_096;

impl PersonIdCache {
    pub(crate) fn new() -> Self {
        Self {
            slots: vec![(u64::MAX, String::new()); PERSON_CACHE_SLOTS],
        }
    }

    /// The hyphenated lowercase `person_uuid(project_id, person_index)`.
    /// (`project_id` is a function of `person_index`, so the index is the key.)
    pub(crate) fn get(&mut self, project_id: i64, person_index: u64) -> &str {
        let slot = &mut self.slots[(person_index % PERSON_CACHE_SLOTS as u64) as usize];
        if slot.0 != person_index {
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let formatted = person_uuid(project_id, person_index)
                .hyphenated()
                .encode_lower(&mut buf);
            slot.1.clear();
            slot.1.push_str(formatted);
            slot.0 = person_index;
        }
        &slot.1
    }
}
