use datafusion::prelude::SessionContext;

use super::*;

async fn session() -> SessionContext {
    let mut ctx = SessionContext::new();
    crate::register_functions(&mut ctx).expect("functions");
    // Twice: still one pass, one guard per pattern.
    crate::register_functions(&mut ctx).expect("functions");
    ctx
}

async fn text(ctx: &SessionContext, sql: &str) -> Result<String> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
}

/// Rows of text, patterns, flags and LIKE patterns, one row each.
const ROWS: &str = "(VALUES \
    ('Hello world', 'o', 'i', 'h%', 'o.*d'), \
    ('abc', 'B', 'i', '_b_', 'a%'), \
    ('a b', 'a b # c', 'x', '%b', '%a b%'), \
    ('x.y', '\\.', NULL, 'x\\_y', 'x_y'), \
    (NULL, 'a', 'i', NULL, NULL), \
    ('zz', '', 's', '', '')) t(s, p, f, l, l2)";

/// Every form that compiles a pattern gives what DataFusion alone gives,
/// with patterns that change from row to row: the guard only refuses.
#[tokio::test]
async fn guarded_patterns_give_the_same_results() {
    let plain = SessionContext::new();
    let ours = session().await;
    let sql = format!(
        "SELECT s ~ p AS a, s ~* p AS b, s !~ p AS c, s !~* p AS d, \
         regexp_like(s, p) AS e, regexp_like(s, p, f) AS f1, \
         regexp_count(s, p, 1, f) AS g, regexp_replace(s, p, 'X', 'g') AS h, \
         regexp_replace(s, p, 'Y', f) AS h2, regexp_match(s, p, f) AS i, \
         regexp_instr(s, p) AS j, s LIKE l AS k, s ILIKE l AS m, s NOT LIKE l2 AS n, \
         s NOT ILIKE l2 AS n2, s SIMILAR TO p AS o, s LIKE concat(l, '%') AS q, \
         s ~~ l AS r, s ~~* l AS r2, s !~~ l2 AS r3, s !~~* l2 AS r4, \
         regexp_like(s, 'o', f) AS t, regexp_replace(s, '[a-z]', '-', concat(f, 'g')) AS u \
         FROM {ROWS}"
    );
    let want = text(&plain, &sql).await.expect("plain");
    let got = text(&ours, &sql).await.expect("guarded");
    assert_eq!(got, want);
    // The names of the output's columns do not change either.
    let sql = format!("SELECT s ~ p, regexp_like(s, p, f), s LIKE l FROM {ROWS}");
    assert_eq!(
        text(&ours, &sql).await.expect("guarded"),
        text(&plain, &sql).await.expect("plain")
    );
    // Every pattern that is not a literal is guarded, once; literal ones
    // (also those constant folding makes) are not.
    let plan = text(
        &ours,
        &format!(
            "EXPLAIN SELECT s ~ p, s ~ 'a', regexp_like(s, concat('a', 'b')), s LIKE l FROM {ROWS}"
        ),
    )
    .await
    .expect("explain");
    let physical = plan
        .lines()
        .skip_while(|l| !l.contains("physical_plan"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(physical.matches(PATTERN_GUARD).count(), 2, "{physical}");
}

async fn refused(ctx: &SessionContext, sql: &str) -> String {
    match text(ctx, sql).await {
        Ok(t) => panic!("{sql} ran: {t}"),
        Err(e) => e.to_string(),
    }
}

/// The patterns that took ~50 ms each to compile (minutes for a batch)
/// are refused at the first row; what arrow does not compile is not.
#[tokio::test]
async fn large_patterns_that_change_by_row_are_refused() {
    let ctx = session().await;
    let rows = "(SELECT CAST(v AS VARCHAR) AS s FROM generate_series(1, 3) g(v))";
    for sql in [
        format!("SELECT count(*) FROM {rows} WHERE regexp_like(s, concat(s, '\\w{{1,200}}'))"),
        format!("SELECT count(*) FROM {rows} WHERE s ~ concat(s, '(a|\\w){{1,200}}')"),
        format!("SELECT count(*) FROM {rows} WHERE s !~* concat(s, '\\w{{1,200}}')"),
        format!("SELECT count(*) FROM {rows} WHERE s SIMILAR TO concat(s, '.{{1,300}}')"),
        format!("SELECT max(regexp_replace(s, concat(s, '\\w{{1,100}}'), 'x', 'g')) FROM {rows}"),
        format!("SELECT max(regexp_count(s, concat(s, '\\w{{1,30}}x'), 1, 'i')) FROM {rows}"),
        format!("SELECT count(*) FROM {rows} WHERE s LIKE concat(s, repeat('_', 3000))"),
        format!("SELECT count(*) FROM {rows} WHERE s ILIKE concat('%', repeat(s, 100000), '%')"),
        format!("SELECT count(*) FROM {rows} WHERE s ~~ concat(s, repeat('_', 3000))"),
        // regexp_count compiles the pattern of a row whose text is NULL.
        format!("SELECT max(regexp_count(CAST(NULL AS VARCHAR), concat(s, '\\w{{1,200}}'))) FROM {rows}"),
        format!("SELECT max(regexp_count(NULLIF(s, s), concat(s, '\\w{{1,200}}'))) FROM {rows}"),
        format!("SELECT count(*) FROM {rows} WHERE s !~~* concat(s, repeat('_', 3000))"),
        // A literal pattern whose flags change from row to row is compiled
        // for each flags.
        format!("SELECT count(*) FROM {rows} WHERE regexp_like(s, '\\w{{1,200}}', CASE WHEN s = '1' THEN 'i' ELSE 'm' END)"),
        // The guard written in the query, as another caller, is no guard.
        format!("SELECT count(*) FROM {rows} WHERE s ~ elide_pattern_guard(concat(s, '\\w{{1,200}}'), NULL, 'ILIKE', s)"),
    ] {
        let e = refused(&ctx, &sql).await;
        assert!(e.contains("compiles to at most 256 KiB"), "{sql}: {e}");
    }
    let e = refused(
        &ctx,
        &format!("SELECT count(*) FROM {rows} WHERE regexp_like(s, repeat(s, 3000))"),
    )
    .await;
    assert!(e.contains("holds at most 2048 bytes"), "{e}");
    let e = refused(
        &ctx,
        &format!("SELECT count(*) FROM {rows} WHERE regexp_like(s, concat(s, '('))"),
    )
    .await;
    assert!(
        e.contains("invalid regular expression") && e.contains("unclosed group"),
        "{e}"
    );
    // Rows whose text is NULL compile nothing in DataFusion (but in
    // regexp_count): their patterns are not checked.
    let t = text(
        &ctx,
        "SELECT count(*) FROM (VALUES (CAST(NULL AS VARCHAR), concat('(', 'x')), ('a', 'a')) t(s, p) WHERE s ~ p OR s IS NULL",
    )
    .await
    .expect("NULL text");
    assert!(t.contains("| 2 "), "{t}");
    // Flags are applied as the function applies them: `x` ignores the
    // blanks and the comment; `g` is not a regex flag.
    let t = text(
        &ctx,
        &format!(
            "SELECT count(*) FROM {rows} WHERE regexp_like(concat(s, 'ab'), concat(s, 'a b # (unclosed'), 'x') \
             AND regexp_replace(s, concat('^', s), 'x', 'g') = 'x'"
        ),
    )
    .await
    .expect("flags");
    assert!(t.contains("| 3 "), "{t}");
    // LIKE patterns arrow matches without a regex are not compiled, so
    // not bounded: a long needle of `%…%`, a long prefix.
    let t = text(
        &ctx,
        &format!(
            "SELECT count(*) FROM {rows} WHERE concat(repeat(s, 100000), 'z') LIKE concat('%', repeat(s, 100000), '%') \
             AND repeat(s, 50000) LIKE concat(repeat(s, 50000), '%')"
        ),
    )
    .await
    .expect("like without a regex");
    assert!(t.contains("| 3 "), "{t}");
}

/// LIKE compiles again at each change of pattern (arrow keeps only the
/// previous row's), a regex function once per distinct pattern: two
/// patterns alternating row by row are many compiles for LIKE, two for
/// `~`.
#[tokio::test]
async fn like_counts_each_change_of_pattern() {
    let ctx = session().await;
    let from = "(SELECT v, CAST(v AS VARCHAR) AS s FROM generate_series(1, 8192) g(v))";
    let like = format!(
        "SELECT count(*) FROM {from} WHERE s LIKE concat(CAST(v % 2 AS VARCHAR), repeat('_', 250))"
    );
    let e = refused(&ctx, &like).await;
    assert!(e.contains("compile to more than 64 MiB together"), "{e}");
    let regex = format!(
        "SELECT count(*) FROM {from} WHERE s ~ concat(CAST(v % 2 AS VARCHAR), repeat('.', 250))"
    );
    text(&ctx, &regex).await.expect("two patterns");
    // The same LIKE pattern on every row is one compile.
    let same = format!(
        "SELECT count(*) FROM {from} WHERE s LIKE concat(CAST(v % 1 AS VARCHAR), repeat('_', 250))"
    );
    text(&ctx, &same).await.expect("one pattern");
}

/// Many distinct patterns in one batch, each within the limit, are
/// refused together past [`MAX_BATCH_BYTES`].
#[tokio::test]
async fn a_batch_of_many_distinct_patterns_is_bounded() {
    let one = compiled_size("\\w+@\\w+\\.0", None, Kind::Regex, "t").expect("compiles");
    assert!(one > 0 && one <= 2 * REGEX_SIZE_LIMIT, "{one}");
    let n = MAX_BATCH_BYTES / one + 2;
    let ctx = session().await;
    let sql = format!(
        "SELECT count(*) FROM (SELECT CAST(v AS VARCHAR) AS s FROM generate_series(1, {n}) g(v)) \
         WHERE regexp_like(s, concat('\\w+@\\w+\\.', s))"
    );
    let e = refused(&ctx, &sql).await;
    assert!(e.contains("compile to more than 64 MiB together"), "{e}");
    // Three patterns over and over are three.
    let sql = format!(
        "SELECT count(*) FROM (SELECT v, CAST(v AS VARCHAR) AS s FROM generate_series(1, {n}) g(v)) \
         WHERE regexp_like(s, concat('\\w+@\\w+\\.', CAST(v % 3 AS VARCHAR)))"
    );
    text(&ctx, &sql).await.expect("three patterns");
}

#[test]
fn like_patterns_compile_as_arrow_compiles_them() {
    for (p, compiles) in [
        ("abc", false),
        ("abc%", false),
        ("%abc", false),
        ("%abc%", false),
        ("%", false),
        ("a_c", true),
        ("a%c", true),
        ("%a%c", true),
        ("a\\%", true),
        ("_", true),
    ] {
        assert_eq!(like_compiles(p), compiles, "{p}");
    }
    assert_eq!(like_regex("a_c%"), "^a.c");
    assert_eq!(like_regex("%a.c"), "a\\.c$");
    assert_eq!(like_regex("a\\%b\\"), "^a%b\\\\$");
}
