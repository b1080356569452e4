//! What a `PathsQuery` asks ([`PathsSpec`]): its range, filters, limits,
//! and how an event becomes a path item (step 1 of the list in
//! [`super`]); refused keys and values are a 400 naming them.

use serde_json::{Map, Value};

use super::super::filter::{range, Interval, Params};
use super::super::funnel::{FunnelSpec, StepSelection};
use super::super::properties::{props, Prop};
use super::super::query_nodes;
use crate::error::{AppError, Result};

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(AppError::InvalidQuery(msg.into()))
}

/// PostHog's default `stepLimit`: steps kept per session.
pub const DEFAULT_STEP_LIMIT: usize = 5;
/// PostHog's default `edgeLimit`: edges in the answer.
pub const DEFAULT_EDGE_LIMIT: usize = 50;
/// Most steps a session's path may keep.
pub const MAX_STEP_LIMIT: usize = 100;
/// Most edges an answer may hold.
pub const MAX_EDGE_LIMIT: usize = 10_000;
/// Most cleaning rules and groupings each.
const MAX_RULES: usize = 50;

/// Which events make path items (`includeEventTypes`; all when empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Include {
    /// `$pageview`: their URL.
    pub pageview: bool,
    /// `$screen`: their screen name.
    pub screen: bool,
    /// `custom_event`: events whose name does not start with `$`.
    pub custom: bool,
}

impl Include {
    /// Whether any type is asked.
    pub fn any(self) -> bool {
        self.pageview || self.screen || self.custom
    }
}

/// A paths query, parsed and checked.
#[derive(Debug, Clone)]
pub struct PathsSpec {
    /// First instant (µs; the start of `date_from`'s day), if bounded.
    pub from: Option<i64>,
    /// Last instant (µs, inclusive; the end of `date_to`'s day).
    pub to: i64,
    /// The query's property filters.
    pub props: Vec<Prop>,
    /// Which events count (`None`: every event).
    pub include: Option<Include>,
    /// Path items left out (with `include` only, as PostHog), sorted.
    pub exclude: Vec<String>,
    /// Where paths start.
    pub start: Option<String>,
    /// Where paths end.
    pub end: Option<String>,
    /// Steps kept per session.
    pub step_limit: usize,
    /// Edges kept.
    pub edge_limit: usize,
    /// Fewest sessions an edge needs.
    pub min_weight: Option<i64>,
    /// Most sessions an edge may have.
    pub max_weight: Option<i64>,
    /// Local cleaning rules: (pattern, replacement in the regex crate's
    /// form), in order.
    pub cleaning: Vec<(regex::Regex, String)>,
    /// Groupings: (the texts between the wildcards, the grouping's text).
    pub groupings: Vec<(Vec<String>, String)>,
    /// The persons of an edge (`pathStartKey`, `pathEndKey`) or of a
    /// drop-off (`pathDropoffKey`).
    pub keys: ActorKeys,
    /// Paths around a funnel's step (`funnelPathsFilter`).
    pub funnel: Option<FunnelPaths>,
}

/// Paths around a funnel's step (PostHog's `funnelPathsFilter`): only the
/// actors of the step (as its persons list has them), each with only its
/// events after the step, before it, or between it and the step before;
/// sessions are cut at pauses as long as the funnel's window.
#[derive(Debug, Clone)]
pub struct FunnelPaths {
    /// Which events of each actor.
    pub kind: FunnelPathKind,
    /// The funnel.
    pub funnel: FunnelSpec,
    /// Its actors of `funnelStep`.
    pub selection: StepSelection,
    /// The step whose time bounds the events (0-based: `funnelStep - 1`,
    /// or for a drop-off `-funnelStep - 2`, the last step reached).
    pub target: usize,
    /// A drop-off (`funnelStep` negative).
    pub dropoff: bool,
    /// Whether the funnel names its window's length
    /// (`funnelWindowInterval`): else PostHog cuts the paths' sessions at
    /// 14 days whatever the unit.
    pub window_given: bool,
}

/// `funnelPathType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunnelPathKind {
    /// `funnel_path_after_step`: from the step's time (a drop-off: from
    /// the end of the window after the last step reached).
    After,
    /// `funnel_path_before_step`: up to the step's time.
    Before,
    /// `funnel_path_between_steps`: from the step before's time to the
    /// step's (of the first step: from the epoch, as PostHog's).
    Between,
}

/// Which rows' actors a paths' persons list holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorKeys {
    /// The step before (`N_item`).
    pub start: Option<String>,
    /// The step (`N_item`).
    pub end: Option<String>,
    /// The last step of a path (`N_item`): who stopped there.
    pub dropoff: Option<String>,
}

/// The keys of `pathsFilter`.
const FILTER_KEYS: &[&str] = &[
    "includeEventTypes",
    "excludeEvents",
    "startPoint",
    "endPoint",
    "pathGroupings",
    "pathReplacements",
    "localPathCleaningFilters",
    "stepLimit",
    "edgeLimit",
    "minEdgeWeight",
    "maxEdgeWeight",
    "pathsHogQLExpression",
    "pathStartKey",
    "pathEndKey",
    "pathDropoffKey",
    // Presentation: read by no computation.
    "showFullUrls",
];

fn text_list(f: &Map<String, Value>, key: &str) -> Result<Vec<String>> {
    match f.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => {
            if a.len() > 1_000 {
                return invalid(format!("pathsFilter.{key}: at most 1000 values"));
            }
            a.iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    v => invalid(format!(
                        "pathsFilter.{key} must be a list of texts, got {v}"
                    )),
                })
                .collect()
        }
        Some(v) => invalid(format!(
            "pathsFilter.{key} must be a list of texts, got {v}"
        )),
    }
}

fn text(f: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match f.get(key) {
        None | Some(Value::Null) => Ok(None),
        // PostHog reads an empty text as none (`if self.query.pathsFilter.startPoint`).
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => invalid(format!("pathsFilter.{key} must be a text, got {v}")),
    }
}

/// An integer of `pathsFilter` (an integral float too, as pydantic reads
/// one), `None` when absent or 0 (PostHog's `or` and `if` defaults).
fn integer(f: &Map<String, Value>, key: &str) -> Result<Option<i64>> {
    match f.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        }) {
            Some(0) => Ok(None),
            Some(n) => Ok(Some(n)),
            None => invalid(format!("pathsFilter.{key} must be an integer, got {v}")),
        },
    }
}

/// A count of `pathsFilter` ([`integer`]) within `1..=most`.
fn count(f: &Map<String, Value>, key: &str, most: u64) -> Result<Option<u64>> {
    match integer(f, key)? {
        None => Ok(None),
        Some(n) => match u64::try_from(n) {
            Ok(n) if n <= most => Ok(Some(n)),
            _ => invalid(format!(
                "pathsFilter.{key} must be an integer from 1 to {most}, got {n}"
            )),
        },
    }
}

fn compile(p: &str, what: &str) -> Result<regex::Regex> {
    if p.len() > elide_store::predicate::MAX_PATTERN_BYTES {
        return invalid(format!(
            "{what}: a regular expression holds at most {} bytes, got {}",
            elide_store::predicate::MAX_PATTERN_BYTES,
            p.len()
        ));
    }
    // ClickHouse's `replaceRegexpAll` and `multiMatchAnyIndex` let `.`
    // match a line break.
    regex::RegexBuilder::new(p)
        .dot_matches_new_line(true)
        .size_limit(elide_store::predicate::REGEX_SIZE_LIMIT)
        .dfa_size_limit(elide_store::predicate::REGEX_SIZE_LIMIT / 2)
        .build()
        .map_err(|e| AppError::InvalidQuery(format!("{what}: {e}")))
}

/// ClickHouse's replacement text (`\0`–`\9` name the groups, `\\` is a
/// backslash, `\x` any other character `x`) in the regex crate's form
/// (`${1}`, `$$`); a group the pattern does not have is refused, as
/// ClickHouse refuses it.
pub(super) fn replacement(clickhouse: &str, groups: usize) -> Result<String> {
    let mut out = String::with_capacity(clickhouse.len());
    let mut chars = clickhouse.chars();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_digit() => {
                    let n = d as usize - '0' as usize;
                    if n >= groups {
                        return invalid(format!(
                            "pathsFilter.localPathCleaningFilters: the alias names group \\{n}, and the regex has {} groups",
                            groups.saturating_sub(1)
                        ));
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                Some('$') => out.push_str("$$"),
                Some(x) => out.push(x),
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Longest cleaning alias (bytes).
const MAX_ALIAS_BYTES: usize = 1024;

/// Longest path item a cleaning rule may make (bytes): rules that match
/// the empty text would otherwise multiply an item's length.
pub const MAX_ITEM_BYTES: usize = 64 << 10;

impl PathsSpec {
    /// Parse a `PathsQuery` (the last 7 days by default).
    pub fn parse(q: &Map<String, Value>, now: chrono::DateTime<chrono::Utc>) -> Result<Self> {
        query_nodes::check_node(q, "PathsQuery", &["pathsFilter", "funnelPathsFilter"])?;
        let funnel = match q.get("funnelPathsFilter") {
            None | Some(Value::Null) => None,
            Some(Value::Object(f)) => Some(FunnelPaths::parse(f, now)?),
            Some(v) => return invalid(format!("funnelPathsFilter must be an object, got {v}")),
        };
        match q.get("samplingFactor") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_f64() == Some(1.0) => {}
            Some(v) => {
                return invalid(format!(
                    "PathsQuery: samplingFactor {v} is not supported (every event is read)"
                ))
            }
        }
        let f = match q.get("pathsFilter") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(f)) => f.clone(),
            Some(v) => return invalid(format!("pathsFilter must be an object, got {v}")),
        };
        if let Some(k) = f.keys().find(|k| !FILTER_KEYS.contains(&k.as_str())) {
            return invalid(format!("pathsFilter.{k} is not supported"));
        }
        let mut m = Map::new();
        query_nodes::date_range(q, &mut m)?;
        let r = range(&Params(m), now, "-7d", Interval::Day)?;
        let types = text_list(&f, "includeEventTypes")?;
        let include = if types.is_empty() {
            None
        } else {
            let mut inc = Include::default();
            for t in &types {
                match t.as_str() {
                    "$pageview" => inc.pageview = true,
                    "$screen" => inc.screen = true,
                    "custom_event" => inc.custom = true,
                    "hogql" => {
                        return invalid(
                            "pathsFilter.includeEventTypes: hogql is not supported (path items from a HogQL expression)",
                        )
                    }
                    other => {
                        return invalid(format!(
                            "pathsFilter.includeEventTypes: {other:?} is not one of $pageview, $screen, custom_event"
                        ))
                    }
                }
            }
            Some(inc)
        };
        let mut exclude = text_list(&f, "excludeEvents")?;
        exclude.sort();
        exclude.dedup();
        // PostHog's items come from the expression when no types are given
        // and `hogql` is not excluded; otherwise it is read by nothing.
        if include.is_none()
            && !exclude.iter().any(|e| e == "hogql")
            && text(&f, "pathsHogQLExpression")?.is_some()
        {
            return invalid(
                "pathsFilter.pathsHogQLExpression is not supported (path items from a HogQL expression)",
            );
        }
        let mut cleaning = Vec::new();
        match f.get("localPathCleaningFilters") {
            None | Some(Value::Null) => {}
            Some(Value::Array(rules)) => {
                if rules.len() > MAX_RULES {
                    return invalid(format!(
                        "pathsFilter.localPathCleaningFilters: at most {MAX_RULES} rules"
                    ));
                }
                for r in rules {
                    let (Some(re), alias) = (
                        r.get("regex").and_then(Value::as_str),
                        r.get("alias").and_then(Value::as_str),
                    ) else {
                        return invalid(
                            "pathsFilter.localPathCleaningFilters: each rule is {\"regex\", \"alias\"}",
                        );
                    };
                    let alias = alias.unwrap_or("");
                    if alias.len() > MAX_ALIAS_BYTES {
                        return invalid(format!(
                            "pathsFilter.localPathCleaningFilters: an alias holds at most {MAX_ALIAS_BYTES} bytes"
                        ));
                    }
                    // ClickHouse leaves the text as it is for an empty
                    // pattern.
                    if re.is_empty() {
                        continue;
                    }
                    let re = compile(re, "pathsFilter.localPathCleaningFilters")?;
                    let with = replacement(alias, re.captures_len())?;
                    cleaning.push((re, with));
                }
            }
            Some(v) => {
                return invalid(format!(
                    "pathsFilter.localPathCleaningFilters must be a list, got {v}"
                ))
            }
        }
        let groupings_text = text_list(&f, "pathGroupings")?;
        if groupings_text.len() > MAX_RULES {
            return invalid(format!("pathsFilter.pathGroupings: at most {MAX_RULES}"));
        }
        if let Some(g) = groupings_text
            .iter()
            .find(|g| g.len() > elide_store::predicate::MAX_PATTERN_BYTES)
        {
            return invalid(format!(
                "pathsFilter.pathGroupings: a grouping holds at most {} bytes, got {}",
                elide_store::predicate::MAX_PATTERN_BYTES,
                g.len()
            ));
        }
        // PostHog's `escape(g).replace("\\*", ".*")`: literal texts
        // between the wildcards.
        let groupings = groupings_text
            .into_iter()
            .map(|g| (g.split('*').map(str::to_string).collect(), g))
            .collect();
        match f.get("pathReplacements") {
            None | Some(Value::Null) | Some(Value::Bool(_)) => {}
            Some(v) => {
                return invalid(format!(
                    "pathsFilter.pathReplacements must be true or false, got {v}"
                ))
            }
        }
        let step_limit = count(&f, "stepLimit", MAX_STEP_LIMIT as u64)?
            .map_or(DEFAULT_STEP_LIMIT, |n| n as usize);
        let edge_limit = count(&f, "edgeLimit", MAX_EDGE_LIMIT as u64)?
            .map_or(DEFAULT_EDGE_LIMIT, |n| n as usize);
        Ok(PathsSpec {
            // The start of its day, even with `explicitDate` (PostHog's
            // `toStartOfInterval`); `date_to` as `range` gives it.
            from: r.from.map(|f| Interval::Day.trunc(f)),
            to: r.to,
            props: props(q.get("properties").cloned(), "properties")?,
            include,
            exclude,
            start: text(&f, "startPoint")?,
            end: text(&f, "endPoint")?,
            step_limit,
            edge_limit,
            min_weight: integer(&f, "minEdgeWeight")?,
            max_weight: integer(&f, "maxEdgeWeight")?,
            cleaning,
            groupings,
            keys: ActorKeys {
                start: text(&f, "pathStartKey")?,
                end: text(&f, "pathEndKey")?,
                dropoff: text(&f, "pathDropoffKey")?,
            },
            funnel,
        })
    }

    /// Whether events named `event` make their own kind of item (a
    /// page's URL, a screen's name): PostHog's `_should_query_event`.
    pub fn reads(&self, event: &str) -> bool {
        match self.include {
            None => self
                .exclude
                .binary_search_by(|e| e.as_str().cmp(event))
                .is_err(),
            Some(i) => match event {
                "$pageview" => i.pageview,
                "$screen" => i.screen,
                _ => false,
            },
        }
    }

    /// The path item of an event named `event` whose `$current_url` and
    /// `$screen_name` are `url` and `screen` (as text): step 1 of the
    /// module's list.
    pub fn item(&self, event: &str, url: Option<&str>, screen: Option<&str>) -> Result<String> {
        let mut item = if event == "$screen" && self.reads("$screen") {
            screen.unwrap_or("").to_string()
        } else if event == "$pageview" && self.reads("$pageview") {
            strip_slash(url.unwrap_or("")).to_string()
        } else {
            event.to_string()
        };
        for (re, with) in &self.cleaning {
            if let Some(s) = replace_capped(re, with, &item)? {
                item = s;
            }
        }
        // The grouping whose match ends first (as hyperscan reports
        // `multiMatchAnyIndex`'s matches), the first listed among equal
        // ends.
        if let Some((_, g)) = self
            .groupings
            .iter()
            .filter_map(|(parts, g)| earliest_end(parts, &item).map(|end| (end, g)))
            .min_by_key(|(end, _)| *end)
        {
            item = g.clone();
        }
        Ok(item)
    }

    /// Whether path item `item` is left out (`excludeEvents`, which
    /// PostHog applies only with `includeEventTypes`).
    pub fn excluded(&self, item: &str) -> bool {
        self.include.is_some()
            && self
                .exclude
                .binary_search_by(|e| e.as_str().cmp(item))
                .is_ok()
    }
}

impl FunnelPaths {
    /// `{funnelPathType, funnelSource: <FunnelsQuery>, funnelStep}`.
    fn parse(f: &Map<String, Value>, now: chrono::DateTime<chrono::Utc>) -> Result<Self> {
        if let Some(k) = f
            .keys()
            .find(|k| !matches!(k.as_str(), "funnelPathType" | "funnelSource" | "funnelStep"))
        {
            return invalid(format!("funnelPathsFilter.{k} is not supported"));
        }
        let kind = match f.get("funnelPathType").and_then(Value::as_str) {
            Some("funnel_path_after_step") => FunnelPathKind::After,
            Some("funnel_path_before_step") => FunnelPathKind::Before,
            Some("funnel_path_between_steps") => FunnelPathKind::Between,
            _ => {
                return invalid(
                    "funnelPathsFilter.funnelPathType must be funnel_path_after_step, \
                     funnel_path_before_step or funnel_path_between_steps",
                )
            }
        };
        let Some(Value::Object(source)) = f.get("funnelSource") else {
            return invalid("funnelPathsFilter.funnelSource must be a FunnelsQuery");
        };
        let Some(step) = f.get("funnelStep").and_then(Value::as_i64) else {
            return invalid("funnelPathsFilter.funnelStep must be a step number (1-based; negative: who dropped off before it)");
        };
        let mut params = query_nodes::funnels_params(source)?;
        params.0.insert("funnel_step".into(), Value::from(step));
        let funnel = FunnelSpec::parse(&params, now)?;
        if funnel.breakdown.is_some() {
            return invalid("funnelPathsFilter: a funnel with a breakdown is not supported");
        }
        let selection = StepSelection::parse(&params, funnel.steps.len())?;
        let n = funnel.steps.len() as i64;
        let (target, dropoff) = match (step, step.checked_neg()) {
            (k, _) if k > 0 && k <= n => ((k - 1) as usize, false),
            (_, Some(m)) if m > 1 && m <= n => ((m - 2) as usize, true),
            (k, _) => {
                return invalid(format!(
                    "funnelPathsFilter.funnelStep {k} is not a step of this funnel of {n} steps"
                ))
            }
        };
        let window_given = params
            .int("funnel_window_interval")?
            .is_some_and(|n| n != 0)
            || params.int("funnel_window_days")?.is_some_and(|n| n != 0);
        Ok(FunnelPaths {
            kind,
            funnel,
            selection,
            target,
            dropoff,
            window_given,
        })
    }

    /// The times (µs, inclusive) of an actor's events that count, from
    /// its funnel path's step times.
    pub fn bounds(&self, times: &[i64]) -> Option<(i64, i64)> {
        let at = *times.get(self.target)?;
        Some(match self.kind {
            FunnelPathKind::After if self.dropoff => (self.funnel.window.end(at), i64::MAX),
            FunnelPathKind::After => (at, i64::MAX),
            FunnelPathKind::Before => (i64::MIN, at),
            // Of the first step, PostHog's preceding time is its default,
            // the epoch: as before the step.
            FunnelPathKind::Between => match self.target.checked_sub(1) {
                Some(before) => (*times.get(before)?, at),
                None => (0, at),
            },
        })
    }

    /// The pause that starts a new session (µs): the funnel's window, as
    /// PostHog measures it from 2018-01-01 (14 days when the funnel does
    /// not name its length).
    pub fn session_gap(&self) -> i64 {
        const BASE: i64 = 1_514_764_800_000_000;
        if !self.window_given {
            return 14 * 86_400_000_000;
        }
        self.funnel.window.end(BASE).saturating_sub(BASE)
    }
}

/// `re`'s matches in `item` replaced by `with` (the regex crate's
/// replacement form), `None` when none matched. The result may not grow
/// past both [`MAX_ITEM_BYTES`] and the item's own length (a 400 as soon
/// as it does, before it is all built): rules that match short texts
/// could otherwise multiply an item.
fn replace_capped(re: &regex::Regex, with: &str, item: &str) -> Result<Option<String>> {
    let most = MAX_ITEM_BYTES.max(item.len());
    let mut out = String::new();
    let mut last = 0;
    let mut any = false;
    for caps in re.captures_iter(item) {
        let Some(m) = caps.get(0) else { continue };
        out.push_str(&item[last..m.start()]);
        caps.expand(with, &mut out);
        last = m.end();
        any = true;
        if out.len() > most {
            return invalid(format!(
                "pathsFilter.localPathCleaningFilters: a rule made a path item longer than {MAX_ITEM_BYTES} bytes"
            ));
        }
    }
    if !any {
        return Ok(None);
    }
    out.push_str(&item[last..]);
    if out.len() > most {
        return invalid(format!(
            "pathsFilter.localPathCleaningFilters: a rule made a path item longer than {MAX_ITEM_BYTES} bytes"
        ));
    }
    Ok(Some(out))
}

/// Where the earliest match of `parts` joined by wildcards (`.*`, which
/// matches line breaks too) ends in `item`: each part found after the one
/// before.
fn earliest_end(parts: &[String], item: &str) -> Option<usize> {
    let mut at = 0;
    for p in parts {
        at += item.get(at..)?.find(p.as_str())? + p.len();
    }
    Some(at)
}

/// `replaceRegexpAll(url, '(.)/$', '\1')`: one trailing `/` off, unless
/// it is all there is (ClickHouse's `.` matches a line break too).
fn strip_slash(url: &str) -> &str {
    match url.strip_suffix('/') {
        Some(rest) if !rest.is_empty() => rest,
        _ => url,
    }
}
