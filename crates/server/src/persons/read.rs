//! Reading persons: the list (filters, paging, CSV), one person, batch
//! lookups, property values, the property timeline and the activity
//! log.

use super::*;

/// Filters and paging of a person listing (all filters must hold).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only the person that owns this distinct id.
    distinct_id: Option<String>,
    /// Only persons whose `email` property is this.
    email: Option<String>,
    /// Substring of email or name (case-insensitive), or an exact distinct
    /// id or UUID.
    search: Option<String>,
    /// Property filters: a JSON list of `{"key", "value", "operator"}`
    /// (`exact` by default), or `{"type": "cohort", "value": <id>}`: only
    /// the cohort's members.
    properties: Option<String>,
    /// Page size, 1 to 10000 (default 100).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// Persons to skip (default 0).
    #[param(value_type = Option<u32>)]
    offset: Option<String>,
    /// Any value but `false` or `0`: the answer has `count`.
    include_total: Option<String>,
    /// `csv`: answer CSV text instead of JSON.
    format: Option<String>,
}

/// A cohort filter: the cohort's id, and whether its members (`true`) or
/// everyone else pass.
pub(crate) type CohortFilter = (i64, bool);

/// The filter of a listing and the cohorts it is limited to.
pub(super) fn filter_of(q: &ListQuery) -> ApiResult<(PersonFilter, Vec<CohortFilter>)> {
    let limit: usize = number(q.limit.as_deref(), "limit", 100)?;
    let offset: usize = number(q.offset.as_deref(), "offset", 0)?;
    if limit == 0 || limit > elide_persons::persons::MAX_LIST_LIMIT {
        return Err(ApiError::invalid_attr(
            "limit",
            "invalid_input",
            format!(
                "limit must be between 1 and {}",
                elide_persons::persons::MAX_LIST_LIMIT
            ),
        ));
    }
    let (properties, cohorts) = match q.properties.as_deref() {
        None | Some("") => (Vec::new(), Vec::new()),
        Some(s) => parse_property_filters(s)?,
    };
    Ok((
        PersonFilter {
            distinct_id: q.distinct_id.clone(),
            email: q.email.clone(),
            search: q.search.clone(),
            properties,
            uuids: None,
            not_uuids: Vec::new(),
            limit,
            offset,
        },
        cohorts,
    ))
}

/// Limit `filter` by every cohort of `cohorts`: to its members (`true`),
/// or to the persons not in it (`false`).
pub(crate) async fn limit_to_cohorts(
    state: &AppState,
    project: i64,
    filter: &mut PersonFilter,
    cohorts: Vec<CohortFilter>,
) -> ApiResult<()> {
    if cohorts.is_empty() {
        return Ok(());
    }
    let persons = state.app().persons().clone();
    let (within, outside) = crate::query::run_app_query(state, move |limits| async move {
        type Set = std::collections::BTreeSet<String>;
        let mut within: Option<Set> = None;
        let mut outside = Set::new();
        for (id, members) in cohorts {
            let m: Set = elide_app::analytics::cohorts::members(&persons, project, id, &limits)
                .await?
                .into_iter()
                .collect();
            if !members {
                outside.extend(m);
                continue;
            }
            within = Some(match within {
                None => m,
                Some(c) => c.intersection(&m).cloned().collect(),
            });
        }
        Ok((within, outside))
    })
    .await?;
    let parsed = |set: &std::collections::BTreeSet<String>| -> Vec<uuid::Uuid> {
        set.iter()
            .filter_map(|u| uuid::Uuid::parse_str(u).ok())
            .collect()
    };
    // Both hold in the listing's SQL (members of `within`, none of
    // `outside`).
    filter.uuids = within.as_ref().map(parsed);
    filter.not_uuids = parsed(&outside);
    Ok(())
}

/// PostHog's `properties` parameter: a JSON list of filters (`type` and
/// the default `exact` operator allowed), and the ids of its `type:
/// cohort` filters.
pub(crate) fn parse_property_filters(
    s: &str,
) -> ApiResult<(Vec<PropertyFilter>, Vec<CohortFilter>)> {
    let v = crate::extract::properties_json(s)?;
    let items = match v {
        Value::Array(items) => items,
        Value::Object(_) => vec![v],
        _ => {
            return Err(ApiError::invalid_attr(
                "properties",
                "invalid_input",
                "Properties are unparsable: expected a list of filters",
            ))
        }
    };
    let mut cohorts = Vec::new();
    let filters = items
        .into_iter()
        .filter_map(|mut f| {
            if let Value::Object(o) = &mut f {
                if o.get("type").and_then(Value::as_str) == Some("cohort") {
                    return match elide_app::analytics::properties::cohort_filter(o) {
                        Ok(c) => {
                            cohorts.push(c);
                            None
                        }
                        Err(e) => Some(Err(ApiError::invalid_attr(
                            "properties",
                            "invalid_input",
                            e,
                        ))),
                    };
                }
                o.remove("type");
                o.entry("operator").or_insert_with(|| json!("exact"));
            }
            Some(serde_json::from_value(f).map_err(|e| {
                ApiError::invalid_attr(
                    "properties",
                    "invalid_input",
                    format!("Properties are unparsable: {e}"),
                )
            }))
        })
        .collect::<ApiResult<Vec<PropertyFilter>>>()?;
    // A value the operator cannot compare (a regular expression that
    // does not compile, a date that is none) names the parameter too.
    elide_store::predicate::validate_text_list(&filters)
        .map_err(|e| ApiError::invalid_attr("properties", "invalid_input", e))?;
    Ok((filters, cohorts))
}

/// List the project's persons, newest first, filtered and paged (or as
/// CSV with `format=csv`).
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/",
    operation_id = "persons_list",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ListQuery,
    ),
    responses(
        (status = 200, description = "A page of persons (JSON), or every person of the page as CSV with `format=csv`", content((PersonPage = "application/json"), (String = "text/csv"))),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Q(q): Q<ListQuery>,
) -> ApiResult<Response> {
    let project = key.path_project(&p, "person:read")?;
    let (mut filter, cohorts) = filter_of(&q)?;
    limit_to_cohorts(&state, project, &mut filter, cohorts).await?;
    let csv_wanted = q.format.as_deref() == Some("csv");
    let total = q
        .include_total
        .as_deref()
        .is_some_and(|v| v != "false" && v != "0");
    let app = state.app().clone();
    let f = filter.clone();
    let (page, count) = blocking(move || {
        let page = app.persons().list(project, &f)?;
        let count = if total {
            Some(app.persons().count(project, &f)?)
        } else {
            None
        };
        Ok((page, count))
    })
    .await?;
    if csv_wanted {
        return Ok(csv_response(csv(&page.results)));
    }
    let next = page
        .next_offset
        .map(|o| page_url(&uri, &headers, o, filter.limit));
    let previous = (filter.offset > 0).then(|| {
        page_url(
            &uri,
            &headers,
            filter.offset.saturating_sub(filter.limit),
            filter.limit,
        )
    });
    Ok(Json(PersonPage {
        count,
        next,
        previous,
        results: page.results.iter().map(ListedPerson::from).collect(),
    })
    .into_response())
}

pub(super) fn csv_response(body: String) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The key's project's persons as CSV (at most 10000), filtered as the
/// listing.
#[utoipa::path(
    get,
    path = "/api/person.csv",
    operation_id = "persons_csv",
    tag = "persons",
    params(ListQuery),
    responses(
        (status = 200, description = "One row per person", content((String = "text/csv"))),
    )
)]
pub(crate) async fn list_csv(
    State(state): State<AppState>,
    key: Key,
    Q(q): Q<ListQuery>,
) -> ApiResult<Response> {
    let project = key.project("@current", "person:read")?;
    let (mut filter, cohorts) = filter_of(&q)?;
    limit_to_cohorts(&state, project, &mut filter, cohorts).await?;
    filter.limit = elide_persons::persons::MAX_LIST_LIMIT;
    let app = state.app().clone();
    let page = blocking(move || Ok(app.persons().list(project, &filter)?)).await?;
    Ok(csv_response(csv(&page.results)))
}

/// Refused: persons are made by `$identify` events (405, as PostHog).
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/",
    operation_id = "persons_create",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    responses(
        (status = 405, description = "Creating persons through the API is not allowed"),
    )
)]
pub(crate) async fn create_refused(key: Key, PathParams(p): PathParams) -> ApiResult<Response> {
    key.path_project(&p, "person:write")?;
    Err(ApiError::method_not_allowed(
        "Creating persons via this API is not allowed. Please create persons by sending an $identify event. See https://posthog.com/docs/product-analytics/identify for details.",
    ))
}

/// One person, by integer id or UUID.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/{id}/",
    operation_id = "persons_retrieve",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
    ),
    responses(
        (status = 200, description = "The person", body = RetrievedPerson),
    )
)]
pub(crate) async fn retrieve(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Json<RetrievedPerson>> {
    let (project, id) = person_target(&key, &p, "person:read")?;
    let app = state.app().clone();
    let person = blocking(move || Ok(app.persons().get(project, &id)?)).await?;
    Ok(Json(RetrievedPerson::from(&person)))
}

/// A person's property history, from its events.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/{id}/properties_timeline/",
    operation_id = "persons_properties_timeline",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
    ),
    responses(
        (status = 200, description = "The history", body = Timeline),
        (status = 504, description = "Reading the history took longer than the query timeout and was cancelled"),
    )
)]
pub(crate) async fn timeline(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
) -> ApiResult<Json<Timeline>> {
    let (project, id) = person_target(&key, &p, "person:read")?;
    let persons = state.app().persons().clone();
    // On the query runtime, under the query deadline and memory cap, as
    // every other scan: on the server's runtime it would hold the threads
    // that answer capture and the persons API.
    let t = crate::query::run_app_query(&state, move |limits| async move {
        elide_app::sql::timeline(&persons, project, &id, &limits).await
    })
    .await?;
    Ok(Json(Timeline {
        points: t.points.into_iter().map(Into::into).collect(),
        earlier_points_left_out: t.left_out,
    }))
}

/// Paging of the activity log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ActivityQuery {
    /// Entries per page, 1 to 1000 (default 10).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// Page number, from 1.
    #[param(value_type = Option<u32>)]
    page: Option<String>,
}

pub(crate) async fn activity(
    state: AppState,
    key: Key,
    p: HashMap<String, String>,
    person: Option<String>,
    q: ActivityQuery,
) -> ApiResult<Json<ActivityPage>> {
    let project = key.path_project(&p, "activity_log:read")?;
    let limit: usize = number(q.limit.as_deref(), "limit", 10)?;
    let page: usize = number(q.page.as_deref(), "page", 1)?;
    if limit == 0 || limit > 1000 || page == 0 || page > 1_000_000 {
        return Err(ApiError::invalid(
            "limit must be 1..1000 and page at least 1",
        ));
    }
    let app = state.app().clone();
    // One page and one entry more (is there a next page?), read alone.
    let start = limit * (page - 1);
    let entries = blocking(move || {
        Ok(app
            .persons()
            .activity_page(project, person.as_deref(), start, limit + 1)?)
    })
    .await?;
    let more = entries.len() > limit;
    let results: Vec<ActivityEntry> = entries
        .into_iter()
        .take(limit)
        .map(|a| ActivityEntry {
            activity: a.activity,
            created_at: elide_persons::persons::iso(a.created_at_us),
            detail: a.detail,
            item_id: a.person_uuid.map(|u| u.hyphenated().to_string()),
            scope: "Person",
            user: None,
        })
        .collect();
    Ok(Json(ActivityPage {
        next: more.then_some(page + 1),
        previous: (page > 1).then(|| page - 1),
        results,
    }))
}

/// The activity log of one person.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/{id}/activity/",
    operation_id = "persons_activity_retrieve",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ("id" = String, Path, description = "The person: its integer id or its UUID."),
        ActivityQuery,
    ),
    responses(
        (status = 200, description = "A page of entries", body = ActivityPage),
    )
)]
pub(crate) async fn person_activity(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    Q(q): Q<ActivityQuery>,
) -> ApiResult<Json<ActivityPage>> {
    let id = person_param(&p)?;
    check_person_id(&id)?;
    activity(state, key, p, Some(id), q).await
}

/// The activity log of the project's persons.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/activity/",
    operation_id = "persons_activity",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ActivityQuery,
    ),
    responses(
        (status = 200, description = "A page of entries", body = ActivityPage),
    )
)]
pub(crate) async fn project_activity(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    Q(q): Q<ActivityQuery>,
) -> ApiResult<Json<ActivityPage>> {
    activity(state, key, p, None, q).await
}

/// Most ids a batch lookup reads (PostHog ignores the rest silently).
pub(super) const BATCH_CAP: usize = 200;

/// Persons of up to 200 distinct ids.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/batch_by_distinct_ids/",
    operation_id = "persons_batch_by_distinct_ids",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    request_body(content = DistinctIdsBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The persons found, by distinct id", body = BatchPersons),
    )
)]
pub(crate) async fn batch_by_distinct_ids(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<BatchPersons>> {
    let project = key.path_project(&p, "person:read")?;
    let ids: Vec<String> = match body.get("distinct_ids") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .take(BATCH_CAP)
            .collect(),
        _ => Vec::new(),
    };
    if ids.is_empty() {
        return Ok(Json(BatchPersons {
            results: Default::default(),
        }));
    }
    let app = state.app().clone();
    let found = blocking(move || Ok(app.persons().by_distinct_ids(project, &ids)?)).await?;
    let results = found
        .iter()
        .map(|(d, person)| (d.clone(), MinimalPerson::from(person)))
        .collect();
    Ok(Json(BatchPersons { results }))
}

/// Persons of up to 200 UUIDs.
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/persons/batch_by_uuids/",
    operation_id = "persons_batch_by_uuids",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
    ),
    request_body(content = UuidsBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The persons found, by UUID", body = BatchPersons),
    )
)]
pub(crate) async fn batch_by_uuids(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<BatchPersons>> {
    let project = key.path_project(&p, "person:read")?;
    let uuids: Vec<String> = match body.get("uuids") {
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for i in items.iter().take(BATCH_CAP) {
                match i.as_str().filter(|s| uuid::Uuid::parse_str(s).is_ok()) {
                    Some(s) => out.push(s.to_string()),
                    None => return Err(ApiError::invalid("One or more UUIDs are invalid.")),
                }
            }
            out
        }
        _ => Vec::new(),
    };
    if uuids.is_empty() {
        return Ok(Json(BatchPersons {
            results: Default::default(),
        }));
    }
    let app = state.app().clone();
    let found = blocking(move || Ok(app.persons().by_uuids(project, &uuids)?)).await?;
    let results = found
        .iter()
        .map(|(u, person)| (u.hyphenated().to_string(), MinimalPerson::from(person)))
        .collect();
    Ok(Json(BatchPersons { results }))
}

/// Which property's values.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ValuesQuery {
    /// The property (required).
    key: Option<String>,
    /// Only values containing this (case-insensitive).
    value: Option<String>,
}

/// The values a person property takes, most common first.
#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/persons/values/",
    operation_id = "persons_values",
    tag = "persons",
    params(
        ("project_id" = String, Path, description = "The project: its id, or `@current` for the key's project."),
        ValuesQuery,
    ),
    responses(
        (status = 200, description = "The values", body = PropertyValues),
    )
)]
pub(crate) async fn values(
    State(state): State<AppState>,
    key: Key,
    PathParams(p): PathParams,
    Q(q): Q<ValuesQuery>,
) -> ApiResult<Json<PropertyValues>> {
    let project = key.path_project(&p, "person:read")?;
    let Some(prop) = q.key.filter(|k| !k.is_empty()) else {
        return Err(ApiError::invalid_attr("key", "required", "key is required"));
    };
    let app = state.app().clone();
    let vals = blocking(move || {
        Ok(app
            .persons()
            .property_values(project, &prop, q.value.as_deref())?)
    })
    .await?;
    Ok(Json(PropertyValues {
        refreshing: false,
        results: vals
            .into_iter()
            .map(|v| PropertyValue {
                count: v.count,
                name: v.name,
            })
            .collect(),
    }))
}
