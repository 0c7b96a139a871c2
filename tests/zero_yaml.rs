//! Scripts in Nango's zero-yaml form (tests/fixtures/zero-yaml-project): configuration read by
//! running the script (imported constants, spreads, template strings), zod models stored as
//! JSON Schema, deletion detection with trackDeletesStart/End across executions, zod input
//! validation, and URL / Buffer / crypto in a script.

use lasso_services::queue::{TaskKind, TaskState, tasks};
use lasso_services::records::{self, Scope};
use lasso_tests::deploy_fixture;
use lasso_tests::fakehub::{Setup, run, setup};
use serde_json::json;

async fn zero_yaml() -> Setup {
    let s = setup(&[("LASSO_SCRIPT_TIMEOUT_SECS", "60".into())]).await;
    deploy_fixture(&s.ctx, s.env_id, "zero-yaml-project").await;
    s
}

fn results(task: &tasks::Task, model: &str) -> (u64, u64, u64) {
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let r = &task.output.as_ref().unwrap()["results"][model];
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    (n("added"), n("updated"), n("deleted"))
}

#[tokio::test]
async fn a_zod_model_sync_paginates_and_detects_deletions_across_executions() {
    let s = zero_yaml().await;
    let scope = Scope::new(s.connection, "ZodTicket", None);

    let first = run(&s, TaskKind::Sync, "zod-tickets", None).await;
    assert_eq!(results(&first, "ZodTicket"), (1_000, 0, 0));
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 1_000);

    // Gone upstream: the next execution's trackDeletesEnd deletes exactly those.
    s.upstream.tickets.lock().unwrap().drain(100..107);
    let second = run(&s, TaskKind::Sync, "zod-tickets", None).await;
    assert_eq!(results(&second, "ZodTicket"), (0, 0, 7));
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 993);
    // Nothing left of the seen sets once the window closed.
    let (seen,): (i64,) = sqlx::query_as("SELECT count(*) FROM records.run_seen")
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    assert_eq!(seen, 0);
    // The script saved a checkpoint, then cleared it.
    let checkpoint = lasso_services::checkpoints::get(&s.ctx.db, s.connection, "zod-tickets")
        .await
        .unwrap();
    assert_eq!(checkpoint, None);
    s.workers.stop().await;
}

#[tokio::test]
async fn configuration_comes_from_variables_and_imported_constants() {
    let s = zero_yaml().await;
    let (status, body) = s.api.get("/integrations/fakehub/functions").await;
    assert_eq!(status, 200, "{body}");
    let functions = body["data"].as_array().unwrap();
    let sync = functions
        .iter()
        .find(|f| f["name"] == "zod-tickets")
        .unwrap();
    // `${EVERY} ${hours} hours`, `...common`, 'Tickets, ' + '...', `${ENDPOINT_BASE}/tickets`.
    assert_eq!(sync["runs"], "every 2 hours");
    assert_eq!(sync["version"], "1.2.0");
    assert_eq!(sync["auto_start"], false);
    assert_eq!(sync["description"], "Tickets, with deletions detected");
    let schema = &sync["json_schema"]["definitions"]["ZodTicket"];
    assert_eq!(schema["properties"]["id"], json!({"type": "string"}));
    assert_eq!(
        schema["properties"]["tags"],
        json!({"type": "array", "items": {"type": "string"}})
    );
    assert_eq!(schema["required"], json!(["id", "subject"]));
    let action = functions
        .iter()
        .find(|f| f["name"] == "validated-create")
        .unwrap();
    assert_eq!(action["input"], "ActionInput_fakehub_validatedcreate");
    assert!(
        action["json_schema"]["definitions"]["ActionInput_fakehub_validatedcreate"]["properties"]
            ["priority"]["enum"]
            .is_array()
    );
    s.workers.stop().await;
}

#[tokio::test]
async fn zod_validate_input_refuses_bad_input_with_the_zod_issue() {
    let s = zero_yaml().await;
    let ok = run(
        &s,
        TaskKind::Action,
        "validated-create",
        Some(json!({"title": "A good title"})),
    )
    .await;
    assert_eq!(ok.state, TaskState::Succeeded, "{:?}", ok.error);
    assert_eq!(
        ok.output,
        Some(json!({"title": "A good title", "priority": "low"}))
    );

    let bad = run(
        &s,
        TaskKind::Action,
        "validated-create",
        Some(json!({"title": "no", "priority": "urgent"})),
    )
    .await;
    assert_eq!(bad.state, TaskState::Failed);
    let error = bad.error.unwrap();
    assert_eq!(error["kind"], "action_error");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Invalid input provided: title: "),
        "{message}"
    );
    assert!(message.contains("priority: "), "{message}");
    let issues = error["payload"]["issues"].as_array().unwrap();
    assert_eq!(issues[0]["path"], json!(["title"]));
    assert_eq!(issues[0]["code"], "too_small");
    assert_eq!(issues[1]["path"], json!(["priority"]));
    s.workers.stop().await;
}

#[tokio::test]
async fn a_script_uses_url_buffer_and_crypto_create_hmac() {
    let s = zero_yaml().await;
    let signed = run(
        &s,
        TaskKind::Action,
        "sign",
        Some(json!({"secret": "Jefe", "body": "what do ya want for nothing?"})),
    )
    .await;
    assert_eq!(signed.state, TaskState::Succeeded, "{:?}", signed.error);
    let out = signed.output.unwrap();
    assert_eq!(out["url"], "https://api.fakehub.test/v2/hooks?b=2&a=x+y");
    assert_eq!(out["host"], "api.fakehub.test");
    // RFC 4231, test case 2.
    assert_eq!(
        out["signature"],
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(out["basic"], "dXNlcjpww6Rzc3dvcmQ=");
    assert_eq!(out["decoded"], "user:pässword");
    s.workers.stop().await;
}

#[tokio::test]
async fn a_checkpointed_sync_detects_deletions_across_executions() {
    let s = zero_yaml().await;
    let scope = Scope::new(s.connection, "ResumableTicket", None);
    // One full pass: four executions of a page each (1,000 tickets, 250 a page).
    let pass = || async {
        let mut outputs = Vec::new();
        for _ in 0..4 {
            let task = run(&s, TaskKind::Sync, "resumable-tickets", None).await;
            assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
            outputs.push(task.output.unwrap());
        }
        outputs
    };
    let first = pass().await;
    assert_eq!(first[3]["returned"]["done"], true);
    assert_eq!(first[3]["returned"]["deletedKeys"], json!([]));
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 1_000);

    // Gone upstream during the next pass: only the execution that closes the window deletes,
    // and it deletes what no execution of the window saw, not what earlier ones saved.
    s.upstream.tickets.lock().unwrap().drain(100..107);
    let second = pass().await;
    for early in &second[..3] {
        assert_eq!(early["returned"]["done"], false);
        assert_eq!(early["results"]["ResumableTicket"]["deleted"], 0);
    }
    assert_eq!(second[3]["results"]["ResumableTicket"]["deleted"], 7);
    let gone: Vec<String> = (100..107).map(|n| format!("t{n}")).collect();
    assert_eq!(second[3]["returned"]["deletedKeys"], json!(gone));
    assert_eq!(records::count(&s.ctx.db, &scope).await.unwrap(), 993);
    // The window closed: nothing of it is left.
    let (seen,): (i64,) = sqlx::query_as("SELECT count(*) FROM records.run_seen")
        .fetch_one(&s.ctx.db)
        .await
        .unwrap();
    assert_eq!(seen, 0);
    s.workers.stop().await;
}
