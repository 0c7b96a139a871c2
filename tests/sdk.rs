//! The rest of Nango's script SDK in deployed scripts (tests/fixtures/sdk-project), each call
//! checked by its effect: records read back with listRecords / getRecordsByIds, the token and
//! the integration (never its client secret), uncontrolledFetch under the outbound policy,
//! locks, actions calling actions, scripts triggering and starting syncs, merging strategies,
//! and the abort signal of a paused sync's run.

use std::time::Duration;

use lasso_services::queue::{NewTask, TaskKind, TaskState, tasks};
use lasso_services::records::{self, Scope};
use lasso_tests::fakehub::{Setup, run, setup};
use lasso_tests::{deploy_fixture, eventually, function_payload, task_ended};
use serde_json::{Value, json};
use uuid::Uuid;

async fn sdk(settings: &[(&'static str, String)]) -> Setup {
    let mut all = vec![("LASSO_SCRIPT_TIMEOUT_SECS", "60".to_string())];
    all.extend(settings.iter().cloned());
    let s = setup(&all).await;
    deploy_fixture(&s.ctx, s.env_id, "sdk-project").await;
    s
}

fn output(task: &tasks::Task) -> Value {
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    task.output.clone().unwrap()
}

/// The fake provider's base URL (loopback), from the catalog the setup wrote.
fn provider_base(s: &Setup) -> String {
    let fakehub = s.ctx.providers.get("fakehub").unwrap();
    fakehub.proxy.as_ref().unwrap().base_url.clone()
}

fn note(id: &str, text: &str) -> Value {
    json!({"id": id, "text": text})
}

#[tokio::test]
async fn list_records_pages_with_a_cursor_and_get_records_by_ids_reads_saved_records() {
    let s = sdk(&[]).await;
    let scope = Scope::new(s.connection, "Note", None);
    let notes: Vec<Value> = (0..250)
        .map(|n| note(&format!("n{n}"), &format!("note {n}")))
        .collect();
    records::save(&s.ctx.db, &scope, &notes, None)
        .await
        .unwrap();
    // Readers see a record once every transaction running when it was written has ended
    // (other tests' too): wait until all are readable.
    eventually(
        "the notes to be readable",
        Duration::from_secs(60),
        || async {
            let query = records::ListQuery {
                limit: 1_000,
                ..Default::default()
            };
            let page = records::list(&s.ctx.db, &scope, &query).await.unwrap();
            (page.records.len() == 250).then_some(())
        },
    )
    .await;
    let out = output(&run(&s, TaskKind::Action, "read-notes", None).await);
    // 250 records in pages of 100, each once; from the 100th's cursor on, the other 150.
    assert_eq!(out["listed"], 250);
    assert_eq!(out["distinct"], 250);
    assert_eq!(out["after"], 150);
    // The Map is keyed by the ids asked for; an unknown id is absent.
    assert_eq!(out["found"], json!(["n42", "n7"]));
    assert_eq!(out["n7"], "note 7");
    assert_eq!(out["has_metadata"], "ADDED");
    s.workers.stop().await;
}

#[tokio::test]
async fn get_token_and_get_integration_never_hand_out_the_client_secret() {
    let s = sdk(&[]).await;
    let (status, body) = s
        .api
        .patch(
            "/integrations/fakehub",
            json!({"credentials": {"type": "OAUTH2", "client_id": "fk_client",
                   "client_secret": "cs_top_secret", "scopes": "read,write",
                   "webhook_secret": "whs_top_secret"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let out = output(&run(&s, TaskKind::Action, "credentials", None).await);
    // An API key connection's token is its credentials object.
    assert_eq!(
        out["token"],
        json!({"type": "API_KEY", "apiKey": "fk_live_secret"})
    );
    let integration = &out["integration"];
    assert_eq!(integration["unique_key"], "fakehub");
    assert_eq!(integration["provider"], "fakehub");
    assert_eq!(integration["credentials"]["client_id"], "fk_client");
    assert_eq!(integration["credentials"]["scopes"], "read,write");
    let env = lasso_services::environments::find_by_id(&s.ctx.db, s.env_id)
        .await
        .unwrap()
        .unwrap();
    let webhook_url = format!("{}/webhook/{}/fakehub", s.ctx.config.public_url, env.uuid);
    assert_eq!(integration["webhook_url"], webhook_url);
    assert_eq!(out["webhook_url"], webhook_url);
    assert!(out["plain"].get("credentials").is_none());
    let text = out.to_string();
    assert!(!text.contains("cs_top_secret"), "{text}");
    assert!(!text.contains("whs_top_secret"), "{text}");

    // An OAuth2 connection's token is the access token.
    let (status, body) = s
        .api
        .post(
            "/connections",
            json!({"provider_config_key": "fakehub", "connection_id": "oauth-acme",
                   "credentials": {"type": "OAUTH2", "access_token": "at_fresh_token"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let payload = function_payload("fakehub", "oauth-acme", "credentials", None);
    let id = tasks::insert(
        &s.ctx.db,
        &[NewTask::new(
            s.env_id,
            TaskKind::Action,
            "credentials",
            payload,
        )],
    )
    .await
    .unwrap()[0];
    let task = finished(&s, id).await;
    assert_eq!(output(&task)["token"], "at_fresh_token");
    s.workers.stop().await;
}

#[tokio::test]
async fn uncontrolled_fetch_reaches_loopback_when_the_policy_allows_it() {
    let s = sdk(&[]).await;
    let before = s.upstream.issues.lock().unwrap().len();
    let url = format!("{}/issues", provider_base(&s));
    let out = output(&run(&s, TaskKind::Action, "fetch", Some(json!({ "url": url }))).await);
    assert_eq!(out["ok"], true);
    assert_eq!(out["status"], 200);
    assert_eq!(out["content_type"], "application/json");
    // The fake provider created the issue from the script's own body.
    assert_eq!(out["json"]["title"], "fetched");
    assert_eq!(out["used"], true);
    assert!(out["text_length"].as_u64().unwrap() > 10);
    assert_eq!(s.upstream.issues.lock().unwrap().len(), before + 1);
    s.workers.stop().await;
}

#[tokio::test]
async fn uncontrolled_fetch_is_refused_by_the_production_policy() {
    // The production policy: no exceptions, so loopback is refused.
    let s = sdk(&[("LASSO_OUTBOUND_ALLOW", String::new())]).await;
    let before = s.upstream.issues.lock().unwrap().len();
    let url = format!("{}/issues", provider_base(&s));
    let task = run(&s, TaskKind::Action, "fetch", Some(json!({ "url": url }))).await;
    assert_eq!(task.state, TaskState::Failed);
    let error = task.error.unwrap();
    // Nango's refusal: an ActionError with code `url_not_allowed`.
    assert_eq!(error["kind"], "action_error", "{error}");
    assert_eq!(error["payload"]["code"], "url_not_allowed");
    let message = error["payload"]["message"].as_str().unwrap();
    assert!(message.contains("loopback"), "{message}");
    assert_eq!(
        s.upstream.issues.lock().unwrap().len(),
        before,
        "nothing reached the server"
    );
    s.workers.stop().await;
}

#[tokio::test]
async fn try_acquire_lock_refuses_a_second_holder_until_release_or_expiry() {
    let s = sdk(&[]).await;
    let lock = |key: &str, ttl: u64, release: bool| {
        Some(json!({"key": key, "ttlMs": ttl, "release": release}))
    };
    // A holder may take its own lock again; releasing frees it for the next run.
    let first = output(&run(&s, TaskKind::Action, "lock", lock("report", 600_000, true)).await);
    assert_eq!(
        first,
        json!({"acquired": true, "again": true, "released": true})
    );
    // Held by a run that is still going (a lock row of another task): refused.
    let holder = Uuid::now_v7();
    assert!(
        lasso_services::script_locks::try_acquire(&s.ctx.db, s.env_id, "report", holder, 600_000)
            .await
            .unwrap()
    );
    let refused = output(&run(&s, TaskKind::Action, "lock", lock("report", 600_000, false)).await);
    assert_eq!(refused["acquired"], false);
    // Released by its holder: free again.
    assert!(
        lasso_services::script_locks::release(&s.ctx.db, s.env_id, "report", holder)
            .await
            .unwrap()
    );
    let taken = output(&run(&s, TaskKind::Action, "lock", lock("report", 600_000, false)).await);
    assert_eq!(taken["acquired"], true);
    // That run ended without releasing: the runner released it when the run ended.
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM script_locks")
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    assert_eq!(left, 0);
    // An expired lock is free for anyone.
    assert!(
        lasso_services::script_locks::try_acquire(&s.ctx.db, s.env_id, "nightly", holder, 1)
            .await
            .unwrap()
    );
    sqlx::query("UPDATE script_locks SET expires_at = now() - interval '1 second'")
        .execute(&s.ctx.db)
        .await
        .unwrap();
    let expired = output(
        &run(
            &s,
            TaskKind::Action,
            "lock",
            lock("nightly", 600_000, false),
        )
        .await,
    );
    assert_eq!(expired["acquired"], true);
    s.workers.stop().await;
}

#[tokio::test]
async fn trigger_action_runs_another_action_and_returns_its_output() {
    let s = sdk(&[]).await;
    let out = output(&run(&s, TaskKind::Action, "relay", None).await);
    assert_eq!(out["full"], json!({"echoed": {"n": 1}, "by": "acme"}));
    assert_eq!(out["short"], json!({"echoed": {"n": 2}, "by": "acme"}));
    // A failing action's ActionError reaches the caller as Nango's client throws it.
    assert_eq!(out["failure"]["code"], "action_script_runtime_error");
    assert_eq!(
        out["failure"]["payload"],
        json!({"message": "asked to fail", "code": "asked"})
    );
    // Each ran as an action task of its own.
    let (echoes,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM queue.tasks WHERE kind = 'action' AND name = 'echo'")
            .fetch_one(&s.ctx.db)
            .await
            .unwrap();
    assert_eq!(echoes, 3);
    s.workers.stop().await;
}

async fn schedule_state(s: &Setup) -> String {
    let (state,): (String,) = sqlx::query_as(
        "SELECT state::text FROM queue.schedules WHERE connection_id = $1 AND function_name = 'notes'",
    )
    .bind(s.connection)
    .fetch_one(&s.ctx.db)
    .await
    .unwrap();
    state
}

/// How many runs of the `notes` sync have succeeded.
async fn succeeded_runs(s: &Setup) -> i64 {
    let (done,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM queue.tasks WHERE kind = 'sync' AND name = 'notes' AND state = 'SUCCEEDED'",
    )
    .fetch_one(&s.ctx.db)
    .await
    .unwrap();
    done
}

#[tokio::test]
async fn trigger_sync_runs_the_sync_now_and_start_sync_resumes_its_schedule() {
    let s = sdk(&[]).await;
    let scope = Scope::new(s.connection, "Note", None);
    assert_eq!(schedule_state(&s).await, "PAUSED");

    output(
        &run(
            &s,
            TaskKind::Action,
            "sync-control",
            Some(json!({"op": "trigger"})),
        )
        .await,
    );
    // A run of the paused schedule: its task ran and saved; the schedule stays paused.
    eventually("the triggered run", Duration::from_secs(60), || async {
        (succeeded_runs(&s).await == 1).then_some(())
    })
    .await;
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 1);
    assert_eq!(schedule_state(&s).await, "PAUSED");

    output(
        &run(
            &s,
            TaskKind::Action,
            "sync-control",
            Some(json!({"op": "start"})),
        )
        .await,
    );
    assert_eq!(schedule_state(&s).await, "STARTED");
    // Due now: the scheduler runs it.
    eventually(
        "the started schedule's run",
        Duration::from_secs(60),
        || async { (succeeded_runs(&s).await >= 2).then_some(()) },
    )
    .await;
    s.workers.stop().await;
}

async fn finished(s: &Setup, id: Uuid) -> tasks::Task {
    task_ended(
        &s.ctx.db,
        id,
        "the task to finish",
        Duration::from_secs(120),
    )
    .await
}

/// Runs `merged-notes` with `strategy` while another writer changes `n1` after the strategy
/// was set; answers the texts of n1 and n2.
async fn merge_with(s: &Setup, strategy: &str) -> (String, String) {
    let scope = Scope::new(s.connection, "MergedNote", None);
    records::save(
        &s.ctx.db,
        &scope,
        &[note("n1", "stored"), note("n2", "stored")],
        None,
    )
    .await
    .unwrap();
    let metadata = |m: Value| json!({"connection_id": "acme", "provider_config_key": "fakehub", "metadata": m});
    let (status, body) = s
        .api
        .post(
            "/connections/metadata",
            metadata(json!({"strategy": strategy})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let payload = function_payload("fakehub", "acme", "merged-notes", None);
    let id = tasks::insert(
        &s.ctx.db,
        &[NewTask::new(
            s.env_id,
            TaskKind::Sync,
            "merged-notes",
            payload,
        )],
    )
    .await
    .unwrap()[0];
    // Once the sync set its strategy, a webhook's write changes n1.
    eventually(
        "the strategy to be set",
        Duration::from_secs(60),
        || async {
            let (_, body) = s
                .api
                .get("/connections/acme?provider_config_key=fakehub")
                .await;
            (body["metadata"]["ready"] == true).then_some(())
        },
    )
    .await;
    records::save(&s.ctx.db, &scope, &[note("n1", "from a webhook")], None)
        .await
        .unwrap();
    let (status, body) = s
        .api
        .patch("/connections/metadata", metadata(json!({"written": true})))
        .await;
    assert_eq!(status, 200, "{body}");
    let task = finished(s, id).await;
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let text = |id: &'static str| async move {
        let (text,): (String,) = sqlx::query_as(
            "SELECT data->>'text' FROM records.records WHERE connection_id = $1 AND model = 'MergedNote' AND external_id = $2",
        )
        .bind(s.connection)
        .bind(id)
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
        text
    };
    (text("n1").await, text("n2").await)
}

#[tokio::test]
async fn set_merging_strategy_decides_whether_a_save_overrides_a_newer_write() {
    let s = sdk(&[]).await;
    // Nango's default: the sync's save wins.
    let (n1, n2) = merge_with(&s, "override").await;
    assert_eq!(n1, "from the sync");
    assert_eq!(n2, "from the sync, again");
    // Modified after the strategy's cursor by another writer: left as that writer left it;
    // the sync's own writes do not hold its next one back.
    let (n1, n2) = merge_with(&s, "ignore_if_modified_after").await;
    assert_eq!(n1, "from a webhook");
    assert_eq!(n2, "from the sync, again");
    s.workers.stop().await;
}

#[tokio::test]
async fn abort_signal_aborts_when_the_sync_is_paused() {
    // A short heartbeat: the runner learns of the pause within a second.
    let s = sdk(&[("LASSO_HEARTBEAT_SECS", "1".to_string())]).await;
    let select = json!({"provider_config_key": "fakehub", "connection_id": "acme", "syncs": ["wait-for-abort"]});
    let (status, body) = s.api.post("/sync/trigger", select.clone()).await;
    assert_eq!(status, 200, "{body}");
    eventually("the sync to wait", Duration::from_secs(60), || async {
        let (_, body) = s
            .api
            .get("/connections/acme?provider_config_key=fakehub")
            .await;
        (body["metadata"]["waiting"] == true).then_some(())
    })
    .await;
    let (status, body) = s.api.post("/sync/pause", select).await;
    assert_eq!(status, 200, "{body}");
    // The script saw the signal abort, and its SDK calls refused from then on; its log is
    // stored with the cancelled run.
    let line: String = eventually("the script's log", Duration::from_secs(60), || async {
        sqlx::query_as::<_, (String,)>(
            "SELECT message FROM logs.messages WHERE message LIKE 'abort seen:%'",
        )
        .fetch_optional(&s.ctx.db)
        .await
        .unwrap()
        .map(|(m,)| m)
    })
    .await;
    let seen: Value = serde_json::from_str(line.trim_start_matches("abort seen: ")).unwrap();
    assert_eq!(seen["aborted"], true);
    assert!(
        seen["reason"].as_str().unwrap().contains("cancelled"),
        "{seen}"
    );
    assert!(
        seen["refused"].as_str().unwrap().contains("aborted"),
        "{seen}"
    );
    let (state,): (String,) = sqlx::query_as(
        "SELECT state::text FROM queue.tasks WHERE kind = 'sync' AND name = 'wait-for-abort'",
    )
    .fetch_one(&s.ctx.db)
    .await
    .unwrap();
    assert_eq!(state, "CANCELLED");
    s.workers.stop().await;
}
