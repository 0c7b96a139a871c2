//! The records store and read API: dedupe, merge, soft deletes, full-sync deletion detection,
//! paging that never skips a record (even with a writer committing late), and bad batches.

use std::collections::HashSet;

use lasso_services::records::{self, ListQuery, Scope};
use lasso_services::{ConnectionRowId, Error};
use lasso_tests::auth::create_integration;
use lasso_tests::*;
use serde_json::{Value, json};
use uuid::Uuid;

/// Readers only see rows below the cluster-wide xmin, so one test's open write transaction
/// would hold back what another test reads. These tests take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Setup {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    db: TestDb,
    api: Api,
    other: Api,
    scope: Scope,
}

async fn setup() -> Setup {
    let turn = SERIAL.lock().await;
    let app = TestApp::builder()
        .environment("records")
        .integration("github", "github", "")
        .start()
        .await;
    let (other_env, other) = app.add_environment("other").await;
    create_integration(&app.ctx, other_env.id, "github", "github", "").await;
    for a in [&app.api, &other] {
        let (status, _) = a
            .post(
                "/connections",
                json!({"provider_config_key": "github", "connection_id": "c1",
                       "credentials": {"type": "OAUTH2", "access_token": "t"}}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (id,): (ConnectionRowId,) = sqlx::query_as(
        "SELECT c.id FROM connections c JOIN environments e ON e.id = c.environment_id WHERE e.name = 'records'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    Setup {
        _turn: turn,
        api: app.api,
        other,
        scope: Scope::new(id, "Issue", None),
        db: app.db,
    }
}

fn issue(i: usize, title: &str) -> Value {
    json!({"id": format!("issue-{i}"), "title": title, "number": i, "labels": ["a", "b"]})
}

async fn all_records(s: &Setup, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = get_records(&s.api, &format!("{query}&cursor={cursor}")).await;
        assert_eq!(status, 200, "{page}");
        out.extend(page["records"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return out,
        }
    }
}

async fn get_records(api: &Api, query: &str) -> (u16, Value) {
    let response = api
        .http
        .get(format!("{}/records?{query}", api.base))
        .bearer_auth(&api.key)
        .header("Connection-Id", "c1")
        .header("Provider-Config-Key", "github")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn max_updated_at(s: &Setup) -> (chrono::DateTime<chrono::Utc>, String) {
    sqlx::query_as("SELECT max(updated_at), max(xid::text) FROM records.records")
        .fetch_one(&s.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn ten_thousand_records_dedupe_update_and_full_sync_deletes() {
    let s = setup().await;
    let all: Vec<Value> = (0..10_000).map(|i| issue(i, "original")).collect();
    let run = Uuid::now_v7();
    records::begin_run(&s.db.pool, run, run).await.unwrap();
    let mut added = 0;
    for batch in all.chunks(1000) {
        let summary = records::save(&s.db.pool, &s.scope, batch, Some(run))
            .await
            .unwrap();
        added += summary.added;
    }
    assert_eq!(added, 10_000);
    assert_eq!(
        records::delete_unseen(&s.db.pool, &s.scope, run)
            .await
            .unwrap(),
        Some(0)
    );
    records::forget_run(&s.db.pool, run).await.unwrap();
    let before = max_updated_at(&s).await;

    // Saving the same data again changes nothing, not even updated_at.
    let run = Uuid::now_v7();
    records::begin_run(&s.db.pool, run, run).await.unwrap();
    for batch in all.chunks(1000) {
        let summary = records::save(&s.db.pool, &s.scope, batch, Some(run))
            .await
            .unwrap();
        assert_eq!(
            (summary.added, summary.updated, summary.unchanged),
            (0, 0, 1000)
        );
    }
    assert_eq!(max_updated_at(&s).await, before);
    records::forget_run(&s.db.pool, run).await.unwrap();

    // Ten changed upstream: exactly ten updated. Five gone in a full run: exactly five deleted.
    let mut next: Vec<Value> = all.clone();
    for i in (0..100).step_by(10) {
        next[i] = issue(i, "changed");
    }
    let removed: Vec<Value> = next.drain(9990..9995).collect();
    let run = Uuid::now_v7();
    records::begin_run(&s.db.pool, run, run).await.unwrap();
    let mut updated = 0;
    for batch in next.chunks(1000) {
        let summary = records::save(&s.db.pool, &s.scope, batch, Some(run))
            .await
            .unwrap();
        assert_eq!(summary.added, 0);
        updated += summary.updated;
    }
    assert_eq!(updated, 10);
    assert_eq!(
        records::delete_unseen(&s.db.pool, &s.scope, run)
            .await
            .unwrap(),
        Some(5)
    );
    records::forget_run(&s.db.pool, run).await.unwrap();
    assert_eq!(records::count(&s.db.pool, &s.scope).await.unwrap(), 9_995);

    let deleted = all_records(&s, "model=Issue&filter=deleted&limit=1000").await;
    let deleted_ids: HashSet<&str> = deleted.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let removed_ids: HashSet<&str> = removed.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(deleted_ids, removed_ids);
    assert!(
        deleted
            .iter()
            .all(|r| r["_nango_metadata"]["last_action"] == "DELETED"
                && r["_nango_metadata"]["deleted_at"].is_string())
    );
    let updated = all_records(&s, "model=Issue&filter=updated&limit=1000").await;
    assert_eq!(updated.len(), 10);
    assert!(updated.iter().all(|r| r["title"] == "changed"));

    // A deleted record that comes back is added again.
    let summary = records::save(&s.db.pool, &s.scope, &removed[..1], None)
        .await
        .unwrap();
    assert_eq!(summary.added, 1);
}

#[tokio::test]
async fn paging_returns_every_record_exactly_once() {
    let s = setup().await;
    let all: Vec<Value> = (0..2_500).map(|i| issue(i, "x")).collect();
    for batch in all.chunks(500) {
        records::save(&s.db.pool, &s.scope, batch, None)
            .await
            .unwrap();
    }
    let seen = all_records(&s, "model=Issue&limit=333").await;
    assert_eq!(seen.len(), 2_500);
    let ids: HashSet<&str> = seen.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2_500);
    let first = &seen[0]["_nango_metadata"];
    for key in ["first_seen_at", "last_modified_at", "last_action", "cursor"] {
        assert!(
            first.get(key).is_some_and(|v| !v.is_null()),
            "{key}: {first}"
        );
    }
    assert_eq!(first["last_action"], "ADDED");
}

/// Pages follow transaction ids as numbers: a writer whose xid has more digits (9 → 10 → 100)
/// comes after, not before, as it would in text order, where the cursor's numeric comparison
/// then skips the records of the shorter xid.
#[tokio::test]
async fn paging_orders_transaction_ids_as_numbers() {
    let s = setup().await;
    let all: Vec<Value> = (0..3).map(|i| issue(i, "x")).collect();
    records::save(&s.db.pool, &s.scope, &all, None)
        .await
        .unwrap();
    for (i, xid) in [(0, "9"), (1, "10"), (2, "100")] {
        sqlx::query("UPDATE records.records SET xid = $1::text::xid8 WHERE external_id = $2")
            .bind(xid)
            .bind(format!("issue-{i}"))
            .execute(&s.db.pool)
            .await
            .unwrap();
    }
    let seen = all_records(&s, "model=Issue&limit=1").await;
    let ids: Vec<&str> = seen.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["issue-0", "issue-1", "issue-2"]);
}

#[tokio::test]
async fn a_late_committing_writer_is_never_skipped() {
    let s = setup().await;
    let base: Vec<Value> = (0..50).map(|i| issue(i, "x")).collect();
    records::save(&s.db.pool, &s.scope, &base, None)
        .await
        .unwrap();

    // Writer A starts first and writes, but commits last.
    let mut slow = s.db.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO records.records (connection_id, model, variant, external_id, data, data_hash)
         VALUES ($1, 'Issue', 'base', 'late', '{\"id\": \"late\"}', gen_random_uuid())",
    )
    .bind(s.scope.connection)
    .execute(&mut *slow)
    .await
    .unwrap();
    // Writer B starts later and commits at once.
    records::save(&s.db.pool, &s.scope, &[json!({"id": "early"})], None)
        .await
        .unwrap();
    // Meanwhile a reader pages through everything it is given, and an already read record is
    // updated.
    let first_pass = all_records(&s, "model=Issue&limit=20").await;
    let ids: Vec<&str> = first_pass
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&"late"), "uncommitted");
    let resume = first_pass.last().unwrap()["_nango_metadata"]["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    records::save(
        &s.db.pool,
        &s.scope,
        &[issue(3, "edited while paging")],
        None,
    )
    .await
    .unwrap();
    slow.commit().await.unwrap();

    // Resuming from the last record's cursor yields everything committed since, late or not.
    let second_pass = all_records(&s, &format!("model=Issue&limit=20&cursor={resume}")).await;
    let later: HashSet<&str> = second_pass
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let mut everything: HashSet<&str> = ids.iter().copied().collect();
    everything.extend(later.iter().copied());
    for id in ["late", "early", "issue-3"] {
        assert!(everything.contains(id), "{id} was skipped");
    }
    assert!(
        later.contains("late"),
        "the late writer lands after the cursor"
    );
    assert!(
        later.contains("issue-3"),
        "an update made while paging appears again"
    );
    assert_eq!(everything.len(), 52);
}

#[tokio::test]
async fn update_merges_delete_soft_deletes_and_bad_batches_write_nothing() {
    let s = setup().await;
    records::save(
        &s.db.pool,
        &s.scope,
        &[issue(1, "one"), issue(2, "two")],
        None,
    )
    .await
    .unwrap();
    let n = records::update(
        &s.db.pool,
        &s.scope,
        &[json!({"id": "issue-1", "state": "closed"})],
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    let got = all_records(&s, "model=Issue&ids=issue-1").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["title"], "one", "merged, not replaced");
    assert_eq!(got[0]["state"], "closed");
    assert_eq!(got[0]["_nango_metadata"]["last_action"], "UPDATED");
    // Saving the merged content again is a no-op (one hashing scheme).
    let mut same = issue(1, "one");
    same["state"] = json!("closed");
    assert_eq!(
        records::save(&s.db.pool, &s.scope, &[same], None)
            .await
            .unwrap()
            .unchanged,
        1
    );

    let e = records::update(
        &s.db.pool,
        &s.scope,
        &[
            json!({"id": "issue-2", "state": "x"}),
            json!({"id": "ghost"}),
        ],
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("ghost"), "{e}");
    assert!(
        all_records(&s, "model=Issue&ids=issue-2").await[0]
            .get("state")
            .is_none()
    );

    assert_eq!(
        records::delete(
            &s.db.pool,
            &s.scope,
            &[json!({"id": "issue-2"}), json!({"id": "nope"})]
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(records::count(&s.db.pool, &s.scope).await.unwrap(), 1);

    let bad = [
        vec![issue(5, "a"), json!({"title": "no id"})],
        vec![issue(6, "a"), issue(6, "b")],
        (0..10_001).map(|i| issue(i, "too many")).collect(),
        vec![
            issue(7, "a"),
            json!({"id": "big", "blob": "x".repeat(2 * 1024 * 1024)}),
        ],
    ];
    for batch in bad {
        let e = records::save(&s.db.pool, &s.scope, &batch, None)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e}");
    }
    assert_eq!(
        records::count(&s.db.pool, &s.scope).await.unwrap(),
        1,
        "nothing half-written"
    );
}

#[tokio::test]
async fn records_api_filters_and_errors() {
    let s = setup().await;
    records::save(
        &s.db.pool,
        &s.scope,
        &(0..30).map(|i| issue(i, "x")).collect::<Vec<_>>(),
        None,
    )
    .await
    .unwrap();
    let checkpoint = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    records::save(&s.db.pool, &s.scope, &[issue(1, "later")], None)
        .await
        .unwrap();

    let after = all_records(
        &s,
        &format!(
            "model=Issue&modified_after={}",
            checkpoint.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
    )
    .await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["title"], "later");
    let some = all_records(&s, "model=Issue&ids=issue-1&ids=issue-2").await;
    assert_eq!(some.len(), 2);
    let added_or_updated = all_records(&s, "model=Issue&filter=added,updated").await;
    assert_eq!(added_or_updated.len(), 30);
    assert_eq!(all_records(&s, "model=Other").await.len(), 0);
    assert_eq!(all_records(&s, "model=Issue&variant=v2").await.len(), 0);

    for (query, field) in [
        ("limit=5", "model"),
        ("model=Issue&limit=0", "limit"),
        ("model=Issue&filter=gone", "filter"),
        ("model=Issue&cursor=garbage", "cursor"),
        ("model=Issue&modified_after=yesterday", "modified_after"),
    ] {
        let (status, body) = get_records(&s.api, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["errors"][0]["field"], field, "{query}");
    }
    let (status, body) = s
        .api
        .http
        .get(format!("{}/records?model=Issue", s.api.base))
        .bearer_auth(&s.api.key)
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(status, 400);
    let body = body.json::<Value>().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_headers");
    assert_eq!(
        body["error"]["errors"],
        json!([{"field": "Connection-Id", "message": "is required"},
               {"field": "Provider-Config-Key", "message": "is required"}])
    );

    // The other environment's connection c1 has no records, and cannot read ours.
    let (status, page) = get_records(&s.other, "model=Issue").await;
    assert_eq!(status, 200);
    assert_eq!(page["records"], json!([]));
}

#[tokio::test]
async fn prune_empties_payloads_up_to_a_cursor() {
    let s = setup().await;
    records::save(
        &s.db.pool,
        &s.scope,
        &(0..10).map(|i| issue(i, "x")).collect::<Vec<_>>(),
        None,
    )
    .await
    .unwrap();
    let page = records::list(
        &s.db.pool,
        &s.scope,
        &ListQuery {
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let until = page.records[5]["_nango_metadata"]["cursor"]
        .as_str()
        .unwrap();
    let response = s
        .api
        .http
        .patch(format!("{}/records/prune", s.api.base))
        .bearer_auth(&s.api.key)
        .header("Connection-Id", "c1")
        .header("Provider-Config-Key", "github")
        .json(&json!({"model": "Issue", "until_cursor": until, "limit": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"count": 4, "has_more": true})
    );
    let all = all_records(&s, "model=Issue").await;
    let pruned: Vec<&Value> = all
        .iter()
        .filter(|r| !r["_nango_metadata"]["pruned_at"].is_null())
        .collect();
    assert_eq!(pruned.len(), 4);
    assert!(
        pruned
            .iter()
            .all(|r| r.get("title").is_none() && r["id"].is_string())
    );
    // Saving a pruned record again restores it.
    assert_eq!(
        records::save(&s.db.pool, &s.scope, &[issue(0, "x")], None)
            .await
            .unwrap()
            .updated,
        1
    );
}

/// Pages are counted in records, but a record may be up to 1 MiB: 100 of them would be an
/// answer of 100 MiB, held in memory and far past what a Lambda may return (6 MB). A page also
/// stops at a byte budget: fewer records, and the cursor to the rest.
#[tokio::test]
async fn a_records_page_stops_at_a_byte_budget_and_hands_out_the_rest_by_cursor() {
    let s = setup().await;
    let body = "x".repeat(900 * 1024);
    let big: Vec<Value> = (0..12)
        .map(|i| json!({"id": format!("big-{i}"), "body": body}))
        .collect();
    records::save(&s.db.pool, &s.scope, &big, None)
        .await
        .unwrap();

    let response = s
        .api
        .http
        .get(format!("{}/records?model=Issue&limit=100", s.api.base))
        .bearer_auth(&s.api.key)
        .header("Connection-Id", "c1")
        .header("Provider-Config-Key", "github")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.len() < 5_000_000,
        "a records page of {} bytes",
        text.len()
    );
    let page: Value = serde_json::from_str(&text).unwrap();
    let first = page["records"].as_array().unwrap();
    assert!(
        !first.is_empty() && first.len() < 12,
        "{} records",
        first.len()
    );
    assert!(page["next_cursor"].is_string(), "no cursor to the rest");

    let all = all_records(&s, "model=Issue&limit=100").await;
    let ids: HashSet<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!((all.len(), ids.len()), (12, 12));
    assert!(
        all.iter()
            .all(|r| r["body"].as_str() == Some(body.as_str()))
    );
}
