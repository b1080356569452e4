//! A sample of PostHog-like capture traffic (JSON lines): persons that
//! arrive anonymous and most of whom identify, then a realistic mix of
//! their events. Used by `elide bench-persons`, `elide bench-http` and
//! `elide serve --demo`.

use rand::{Rng, SeedableRng};
use serde_json::json;

const EVENTS: &[&str] = &[
    "$pageview",
    "$pageview",
    "$pageview",
    "$autocapture",
    "$pageleave",
    "signed_up",
    "purchase",
];
const BROWSERS: &[&str] = &["Chrome", "Firefox", "Safari", "Edge"];
const OSES: &[&str] = &["Mac OS X", "Windows", "iOS", "Android", "Linux"];
const PLANS: &[&str] = &["free", "pro", "team", "enterprise"];

/// Makes capture JSON lines for the mix.
pub struct Mix {
    rng: rand_chacha::ChaCha8Rng,
    persons: u64,
    next_anon: u64,
    ts: i64,
    step_us: i64,
}

impl Mix {
    /// A mix over `persons` persons whose events start at `start_us` and
    /// are `step_us` apart.
    pub fn new(seed: u64, persons: u64, start_us: i64, step_us: i64) -> Mix {
        Mix {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            persons,
            next_anon: 0,
            ts: start_us,
            step_us,
        }
    }

    /// The distinct id a known person's events use.
    pub fn known_id(i: u64) -> String {
        // 70% are identified (their events use the user id).
        if i % 10 < 7 {
            format!("user-{i}")
        } else {
            format!("anon-{i}")
        }
    }

    /// Properties of a web event in `session`.
    pub fn props(&mut self, session: u64) -> serde_json::Value {
        let r = &mut self.rng;
        json!({
            "$current_url": format!("https://example.com/page/{}", r.random_range(0..500)),
            "$browser": BROWSERS[r.random_range(0..BROWSERS.len())],
            "$os": OSES[r.random_range(0..OSES.len())],
            "$session_id": format!("s-{session}"),
            "$lib": "web",
            "$screen_width": 1280 + r.random_range(0..4) * 160,
        })
    }

    /// One capture JSON line (advances the clock).
    pub fn line(&mut self, event: &str, did: &str, props: serde_json::Value) -> String {
        self.ts += self.step_us;
        let ts = chrono::DateTime::from_timestamp_micros(self.ts)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        json!({"event": event, "distinct_id": did, "properties": props, "timestamp": ts})
            .to_string()
    }

    /// A person's first events.
    pub fn warmup(&mut self, i: u64) -> Vec<String> {
        let mut p = self.props(i);
        p["$set_once"] = json!({"$initial_browser": p["$browser"], "$initial_os": p["$os"]});
        let mut out = vec![self.line("$pageview", &format!("anon-{i}"), p)];
        if i % 10 < 7 {
            let mut p = self.props(i);
            p["$anon_distinct_id"] = json!(format!("anon-{i}"));
            p["$set"] = json!({"email": format!("user{i}@example.com"), "name": format!("User {i}"),
                               "plan": PLANS[(i % 4) as usize]});
            out.push(self.line("$identify", &format!("user-{i}"), p));
        }
        out
    }

    /// A returning user on a new device, `n`-th of its kind: an anonymous
    /// pageview (a new person), then an `$identify` of an identified known
    /// person with that anonymous id, which merges the new person into
    /// the known one (two persons exist: a merge, not an attach).
    pub fn device_merge(&mut self, n: u64) -> Vec<String> {
        // An identified known person (`known_id` of i % 10 < 7).
        let i = n.wrapping_mul(7919) % self.persons.max(1);
        let i = i - i % 10 + (i % 10) % 7;
        let anon = format!("device-{n}");
        let p = self.props(i);
        let mut out = vec![self.line("$pageview", &anon, p)];
        let mut p = self.props(i);
        p["$anon_distinct_id"] = json!(anon);
        out.push(self.line("$identify", &Mix::known_id(i), p));
        out
    }

    /// One event of the timed mix.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> String {
        let roll = self.rng.random_range(0..100);
        // Skewed towards active persons: half the events from 10% of them.
        let i = if self.rng.random_bool(0.5) {
            self.rng.random_range(0..self.persons.div_ceil(10))
        } else {
            self.rng.random_range(0..self.persons)
        };
        let mut p = self.props(i);
        match roll {
            // Known persons: 90%, of which 1 in 12 carries a $set.
            0..90 => {
                if self.rng.random_range(0..12) == 0 {
                    p["$set"] = json!({"plan": PLANS[self.rng.random_range(0..4)],
                                       "last_url": p["$current_url"]});
                }
                let event = EVENTS[self.rng.random_range(0..EVENTS.len())];
                self.line(event, &Mix::known_id(i), p)
            }
            // New anonymous visitors: 5%.
            90..95 => {
                self.next_anon += 1;
                self.line("$pageview", &format!("new-{}", self.next_anon), p)
            }
            // A new anonymous id identified into a known person: 2%.
            95..97 => {
                self.next_anon += 1;
                p["$anon_distinct_id"] = json!(format!("new-{}", self.next_anon));
                self.line("$identify", &Mix::known_id(i), p)
            }
            // Personless: 3%.
            _ => {
                p["$process_person_profile"] = json!(false);
                let bot = format!("bot-{}", self.rng.random_range(0..1000));
                self.line("$pageview", &bot, p)
            }
        }
    }
}
