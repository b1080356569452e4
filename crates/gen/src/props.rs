//! Event `properties` JSON, written into a reused buffer with serde_json
//! handling all escaping.

use std::fmt::Write as _;

use rand::Rng;

use crate::persons::PersonTraits;
use crate::GenError;

/// Event names with their share in percent (sums to 100).
pub(crate) const EVENTS: [(&str, u32); 8] = [
    ("$pageview", 45),
    ("$autocapture", 25),
    ("$feature_flag_called", 10),
    ("$pageleave", 8),
    ("$exception", 5),
    ("$identify", 3),
    ("signup", 2),
    ("purchase", 2),
];

pub(crate) const PAGEVIEW: usize = 0;
pub(crate) const AUTOCAPTURE: usize = 1;
pub(crate) const FEATURE_FLAG: usize = 2;
pub(crate) const EXCEPTION: usize = 4;
pub(crate) const IDENTIFY: usize = 5;
pub(crate) const SIGNUP: usize = 6;
pub(crate) const PURCHASE: usize = 7;

/// Pick an event index from a roll in `0..100`.
pub(crate) fn pick_event(roll: u32) -> usize {
    let mut acc = 0;
    for (i, &(_, pct)) in EVENTS.iter().enumerate() {
        acc += pct;
        if roll < acc {
            return i;
        }
    }
    PAGEVIEW
}

const PATHS: [&str; 12] = [
    "/",
    "/dashboard",
    "/insights",
    "/insights/new",
    "/events",
    "/persons",
    "/feature_flags",
    "/settings",
    "/docs/getting-started",
    "/pricing",
    "/search?q=a%20b&sort=\"desc\"",
    "/blog/what's-new",
];

const FLAGS: [&str; 5] = [
    "new-onboarding",
    "beta-query-engine",
    "dark-mode",
    "pricing-v2",
    "session-replay",
];

const EXCEPTIONS: [(&str, &str); 4] = [
    (
        "TypeError",
        "Cannot read properties of undefined (reading 'id')",
    ),
    ("ReferenceError", "posthog is not defined"),
    ("Error", "Request failed: \"502 Bad Gateway\"\n\tat fetch"),
    ("SyntaxError", "Unexpected token '<' in JSON at position 0"),
];

const PLANS: [&str; 3] = ["free", "pro", "enterprise"];
const EL_EVENTS: [&str; 3] = ["click", "submit", "change"];

/// Incremental writer of one flat JSON object into a byte buffer.
struct JsonObject<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonObject<'a> {
    fn open(buf: &'a mut Vec<u8>) -> Self {
        buf.clear();
        buf.push(b'{');
        Self { buf, first: true }
    }

    fn key(&mut self, key: &str) -> Result<(), GenError> {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        serde_json::to_writer(&mut *self.buf, key)?;
        self.buf.push(b':');
        Ok(())
    }

    fn str(&mut self, key: &str, value: &str) -> Result<(), GenError> {
        self.key(key)?;
        serde_json::to_writer(&mut *self.buf, value)?;
        Ok(())
    }

    fn f64(&mut self, key: &str, value: f64) -> Result<(), GenError> {
        self.key(key)?;
        serde_json::to_writer(&mut *self.buf, &value)?;
        Ok(())
    }

    fn bool(&mut self, key: &str, value: bool) -> Result<(), GenError> {
        self.key(key)?;
        serde_json::to_writer(&mut *self.buf, &value)?;
        Ok(())
    }

    fn close(self) {
        self.buf.push(b'}');
    }
}

/// Everything [`write_properties`] needs to know about one event.
pub(crate) struct EventCtx {
    pub(crate) event: usize,
    pub(crate) project_id: i64,
    pub(crate) person_index: u64,
    pub(crate) traits: PersonTraits,
    pub(crate) personless: bool,
}

/// Reusable scratch buffers for properties.
#[derive(Debug, Default)]
pub(crate) struct PropsScratch {
    pub(crate) json: Vec<u8>,
    text: String,
}

/// Write the properties object of one event into `scratch.json`.
pub(crate) fn write_properties<R: Rng + ?Sized>(
    rng: &mut R,
    ctx: &EventCtx,
    scratch: &mut PropsScratch,
) -> Result<(), GenError> {
    let roll = rng.random::<u64>();
    let path = match ctx.event {
        SIGNUP => "/signup",
        PURCHASE => "/billing",
        // Skewed: P(index i) = (2(11-i)+1)/144, so "/" is the most common page.
        _ => PATHS[PATHS.len() - 1 - (((roll % 144) as f64).sqrt() as usize).min(PATHS.len() - 1)],
    };
    let text = &mut scratch.text;
    let mut obj = JsonObject::open(&mut scratch.json);

    text.clear();
    text.push_str("https://app.example.com");
    text.push_str(path);
    obj.str("$current_url", text)?;
    obj.str("$pathname", path)?;
    obj.str("$browser", ctx.traits.browser)?;
    obj.str("$os", ctx.traits.os)?;
    obj.str("$lib", "web")?;

    let email_roll = (roll >> 8) % 100;
    if !ctx.personless
        && ctx.traits.has_email
        && (ctx.event == IDENTIFY || ctx.event == SIGNUP || email_roll < 30)
    {
        text.clear();
        write!(
            text,
            "user{}@example{}.com",
            ctx.person_index, ctx.project_id
        )?;
        obj.str("email", text)?;
    }

    let pick = (roll >> 16) as usize;
    match ctx.event {
        AUTOCAPTURE => {
            obj.str("$event_type", EL_EVENTS[pick % EL_EVENTS.len()])?;
            obj.str(
                "$el_text",
                if pick.is_multiple_of(7) {
                    "Sign \"up\""
                } else {
                    "Save"
                },
            )?;
        }
        FEATURE_FLAG => {
            obj.str("$feature_flag", FLAGS[pick % FLAGS.len()])?;
            obj.bool("$feature_flag_response", (roll >> 40) % 3 != 0)?;
        }
        EXCEPTION => {
            let (kind, message) = EXCEPTIONS[pick % EXCEPTIONS.len()];
            obj.str("$exception_type", kind)?;
            obj.str("$exception_message", message)?;
        }
        SIGNUP => obj.str("plan", PLANS[pick % PLANS.len()])?,
        PURCHASE => {
            // Log-normal-ish amount in dollars, rounded to cents.
            let z: f64 = rng.random::<f64>() + rng.random::<f64>() + rng.random::<f64>() - 1.5;
            let amount = ((3.5 + 1.2 * z).exp() * 100.0).round() / 100.0;
            obj.f64("amount", amount.max(0.5))?;
            obj.str("currency", "USD")?;
            obj.str("plan", PLANS[1 + pick % 2])?;
        }
        // $pageview, $pageleave, $identify: common properties only.
        _ => {}
    }
    obj.close();
    Ok(())
}
