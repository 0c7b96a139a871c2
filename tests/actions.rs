//! Actions through the api (`POST /action/trigger`, `GET /action/:id`) with the runner loops of
//! `lasso dev` running them: outputs, ActionError payloads, script failures, outputs over
//! 2 MiB, async calls and their signed `async_action` webhook, retries, the answer of a call
//! that outlasts the wait limit, how waiters are woken (LISTEN/NOTIFY, or polling), isolation
//! between environments, and Nango's Node client.

use lasso_services::EnvironmentId;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lasso_services::queue::completions::Check;
use lasso_services::queue::{NewTask, Payload, TaskKind, TaskState, tasks};
use lasso_services::{Context, environments, runner_groups};
use lasso_tests::receiver::Receiver;
use lasso_tests::*;
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

const PROVIDERS: &str = "acme:\n  display_name: Acme\n  auth_mode: API_KEY\n  proxy:\n    base_url: http://127.0.0.1:9\n    headers:\n      authorization: Bearer ${apiKey}\n";

struct Setup {
    app: TestApp,
    env_id: EnvironmentId,
}

setup_derefs_to_app!(Setup);

/// An environment with integration `acme`, connection `conn-1`, the fixture project deployed,
/// and the scheduler, dispatcher and runner loops running, with extra `settings`.
async fn setup(settings: &[(&'static str, String)]) -> Setup {
    let app = TestApp::builder()
        .providers(PROVIDERS)
        .settings(settings)
        .environment("actions")
        .workers()
        .start()
        .await;
    add_integration_and_connection(&app.api).await;
    deploy_fixture(&app.ctx, app.env.id, "actions-project").await;
    Setup {
        env_id: app.env.id,
        app,
    }
}

async fn add_integration_and_connection(api: &Api) {
    let (status, body) = api
        .post(
            "/integrations",
            json!({"provider": "acme", "unique_key": "acme"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .post(
            "/connections",
            json!({"provider_config_key": "acme", "connection_id": "conn-1",
                   "credentials": {"type": "API_KEY", "apiKey": "k"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Sends `POST /action/trigger` for `conn-1` with extra headers; the status, the headers and
/// the JSON answer.
async fn trigger(
    api: &Api,
    action: &str,
    input: Value,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = api
        .http
        .post(format!("{}/action/trigger", api.base))
        .bearer_auth(&api.key)
        .header("Connection-Id", "conn-1")
        .header("Provider-Config-Key", "acme")
        .json(&json!({"action_name": action, "input": input}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Points the environment's webhooks at a new receiver; the receiver and the signing secret.
async fn webhook_receiver(api: &Api) -> (Receiver, String) {
    let receiver = Receiver::start().await;
    let (status, settings) = api
        .patch("/environment", json!({"webhook_url": receiver.url}))
        .await;
    assert_eq!(status, 200, "{settings}");
    let secret = settings["webhook_signing_secret"]
        .as_str()
        .unwrap()
        .to_string();
    (receiver, secret)
}

/// Polls `GET <status_url>` until it is no longer 202.
async fn result_when_done(api: &Api, status_url: &str) -> (u16, Value) {
    eventually("the action to finish", Duration::from_secs(30), || async {
        let (status, body) = api.get(status_url).await;
        (status != 202).then_some((status, body))
    })
    .await
}

#[tokio::test]
async fn a_sync_action_answers_with_its_output() {
    let s = setup(&[]).await;
    let (status, _, body) = trigger(&s.api, "echo", json!({"title": "hello"}), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"echo": {"title": "hello"}, "connection": "conn-1"})
    );
    // Input is optional: absent is null.
    let (status, body) = s
        .api
        .call(
            reqwest::Method::POST,
            "/action/trigger",
            Some(json!({"action_name": "echo"})),
        )
        .await;
    assert_eq!(status, 400, "headers are required: {body}");
    assert_eq!(body["error"]["code"], "invalid_headers");

    let (status, _, body) = trigger(&s.api, "nope", json!({}), &[]).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let missing = s
        .api
        .http
        .post(format!("{}/action/trigger", s.api.base))
        .bearer_auth(&s.api.key)
        .header("Connection-Id", "conn-404")
        .header("Provider-Config-Key", "acme")
        .json(&json!({"action_name": "echo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_connection");
}

#[tokio::test]
async fn an_action_error_reaches_the_caller_with_its_payload() {
    let s = setup(&[]).await;
    let (status, _, body) = trigger(&s.api, "refuse", json!({}), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "action_script_runtime_error");
    assert_eq!(
        body["error"]["payload"],
        json!({"code": "duplicate", "message": "an issue with this title exists"})
    );
}

#[tokio::test]
async fn a_failing_script_and_an_oversized_output_are_clear_errors() {
    let s = setup(&[]).await;
    let (status, _, body) = trigger(&s.api, "crash", json!({}), &[]).await;
    assert_eq!(status, 424, "{body}");
    assert_eq!(body["error"]["code"], "action_script_failure");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the upstream answer had no id"),
        "{message}"
    );
    assert_eq!(body["error"]["payload"]["kind"], "exception");
    // No stack trace leaves the api.
    assert!(!body.to_string().contains("crash.ts"), "{body}");

    let (status, _, body) = trigger(&s.api, "huge", json!({}), &[]).await;
    assert_eq!(status, 424, "{body}");
    assert_eq!(body["error"]["code"], "action_output_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2097152"),
        "{body}"
    );
}

#[tokio::test]
async fn an_async_action_answers_at_once_then_by_id_and_by_a_signed_webhook() {
    let s = setup(&[]).await;
    let (receiver, secret) = webhook_receiver(&s.api).await;
    let (status, headers, body) =
        trigger(&s.api, "wait", json!({"ms": 1500}), &[("X-Async", "true")]).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let status_url = format!("/action/{id}");
    assert_eq!(body["statusUrl"], status_url.as_str());
    assert_eq!(headers["location"], status_url.as_str());

    // Still running: the same answer.
    let (status, pending) = s.api.get(&status_url).await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending, body);

    let (status, output) = result_when_done(&s.api, &status_url).await;
    assert_eq!((status, output), (200, json!({"waited": 1500})));

    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(got[0].signed_with(&secret), "signature of {}", got[0].body);
    assert_eq!(
        got[0].json(),
        json!({"from": "nango", "type": "async_action", "connectionId": "conn-1",
               "providerConfigKey": "acme", "payload": {"id": id, "statusUrl": status_url}})
    );

    // A failed async action answers its error by id, and tells the receiver too.
    let (_, _, body) = trigger(&s.api, "refuse", json!({}), &[("X-Async", "1")]).await;
    let (status, error) = result_when_done(&s.api, body["statusUrl"].as_str().unwrap()).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["payload"]["code"], "duplicate");
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].json()["payload"]["id"], body["id"]);

    // A synchronous action sends no webhook.
    assert_eq!(trigger(&s.api, "echo", json!(1), &[]).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 2);

    let (status, body) = s.api.get("/action/not-a-uuid").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.api.get(&format!("/action/{}", Uuid::now_v7())).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = trigger(&s.api, "echo", json!(1), &[("X-Async", "maybe")]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["errors"][0]["field"], "X-Async", "{body}");
}

#[tokio::test]
async fn x_max_retries_retries_a_failed_action_within_bounds() {
    let s = setup(&[]).await;
    // Fails twice, succeeds on the third try: two retries are enough.
    let (status, _, body) = trigger(
        &s.api,
        "flaky",
        json!({"succeed_on": 3}),
        &[("X-Max-Retries", "2")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"attempts": 3}));
    let chain: Vec<(i32, i32, String, bool)> = sqlx::query_as(
        "SELECT attempt, max_attempts, state::text, retry_of IS NOT NULL FROM queue.tasks
         WHERE kind = 'action' ORDER BY attempt",
    )
    .fetch_all(&s.ctx.db)
    .await
    .unwrap();
    assert_eq!(
        chain,
        vec![
            (1, 3, "FAILED".into(), false),
            (2, 3, "FAILED".into(), true),
            (3, 3, "SUCCEEDED".into(), true)
        ]
    );

    // Without retries the first failure is the answer (the count went on from 3).
    let (status, _, body) = trigger(&s.api, "flaky", json!({"succeed_on": 6}), &[]).await;
    assert_eq!(status, 424, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try 4 fails")
    );

    // An async action that needs its retries: its id answers for the last attempt.
    let (_, _, body) = trigger(
        &s.api,
        "flaky",
        json!({"succeed_on": 6}),
        &[("X-Async", "true"), ("X-Max-Retries", "5")],
    )
    .await;
    let (status, output) = result_when_done(&s.api, body["statusUrl"].as_str().unwrap()).await;
    assert_eq!((status, output), (200, json!({"attempts": 6})));

    for bad in ["6", "-1", "two"] {
        let (status, _, body) = trigger(&s.api, "echo", json!({}), &[("X-Max-Retries", bad)]).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(
            body["error"]["errors"][0]["field"], "X-Max-Retries",
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_sync_action_past_the_wait_limit_answers_with_its_async_id() {
    let s = setup(&[("LASSO_ACTION_WAIT_SECS", "1".into())]).await;
    let (receiver, secret) = webhook_receiver(&s.api).await;
    let started = Instant::now();
    let (status, headers, body) = trigger(&s.api, "wait", json!({"ms": 3000}), &[]).await;
    let took = started.elapsed();
    assert_eq!(status, 202, "{body}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(2500),
        "answered after {took:?}"
    );
    let status_url = body["statusUrl"].as_str().unwrap().to_string();
    assert_eq!(headers["location"], status_url.as_str());
    // It became an async action: its result by id, and the webhook when it finishes.
    let (status, output) = result_when_done(&s.api, &status_url).await;
    assert_eq!((status, output), (200, json!({"waited": 3000})));
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(got[0].signed_with(&secret));
    assert_eq!(got[0].json()["type"], "async_action");
    assert_eq!(got[0].json()["payload"]["statusUrl"], status_url.as_str());

    // A quick action within the limit still answers with its output.
    let (status, _, body) = trigger(&s.api, "wait", json!({"ms": 10}), &[]).await;
    assert_eq!((status, body), (200, json!({"waited": 10})));
}

/// An action task finished by hand after `delay`, with `Completions::wait` counting its checks.
async fn wait_for_task(ctx: &Context, env_id: EnvironmentId, delay: Duration) -> (usize, Duration) {
    let id = tasks::insert(
        &ctx.db,
        &[NewTask::new(
            env_id,
            TaskKind::Action,
            "by-hand",
            function_payload("i", "c", "by-hand", None),
        )],
    )
    .await
    .unwrap()[0];
    sqlx::query("UPDATE queue.tasks SET state = 'DISPATCHED' WHERE id = $1")
        .bind(id)
        .execute(&ctx.db)
        .await
        .unwrap();
    let checks = Arc::new(AtomicUsize::new(0));
    let waiter = {
        let (ctx, checks) = (ctx.clone(), checks.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            let state = ctx
                .completions
                .wait(id, deadline, || async {
                    checks.fetch_add(1, Ordering::SeqCst);
                    let task = tasks::get(&ctx.db, id).await?.unwrap();
                    Ok(if task.state.is_terminal() {
                        Check::Ready(task.state)
                    } else {
                        Check::Watch(id)
                    })
                })
                .await
                .unwrap();
            (state, Instant::now())
        })
    };
    tokio::time::sleep(delay).await;
    tasks::start(&ctx.db, id, runner_groups::SHARED)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tasks::succeed(&ctx.db, id, &json!(null))
            .await
            .unwrap()
            .is_some()
    );
    let finished = Instant::now();
    let (state, woke) = waiter.await.unwrap();
    assert_eq!(state, Some(TaskState::Succeeded));
    (checks.load(Ordering::SeqCst), woke - finished)
}

#[tokio::test]
async fn listen_mode_wakes_the_waiter_on_the_notification_without_polling() {
    let db = fresh_database().await;
    let ctx = Context::build(config(&db, &[("LASSO_ACTION_WAIT", "listen".into())]), None).unwrap();
    let (env, _) = environments::create(&ctx.db, "listen").await.unwrap();
    // Warm the listener's connection so the measurement is the notification's path.
    wait_for_task(&ctx, env.id, Duration::from_millis(300)).await;
    let (checks, latency) = wait_for_task(&ctx, env.id, Duration::from_millis(1500)).await;
    // One check before waiting, one after the wake-up: nothing in between for 1.5 s.
    assert_eq!(checks, 2, "the waiter checked {checks} times");
    assert!(
        latency < Duration::from_millis(100),
        "woke {latency:?} after the task finished"
    );
}

#[tokio::test]
async fn poll_mode_re_checks_with_backoff_and_runs_actions() {
    let db = fresh_database().await;
    let ctx = Context::build(config(&db, &[("LASSO_ACTION_WAIT", "poll".into())]), None).unwrap();
    let (env, _) = environments::create(&ctx.db, "poll").await.unwrap();
    let (checks, latency) = wait_for_task(&ctx, env.id, Duration::from_millis(1500)).await;
    // 5, 10, 20, ... 500 ms: a handful of checks, not one per millisecond.
    assert!((5..=12).contains(&checks), "{checks} checks");
    assert!(latency <= Duration::from_millis(600), "{latency:?}");

    let s = setup(&[("LASSO_ACTION_WAIT", "poll".into())]).await;
    let (status, _, body) = trigger(&s.api, "echo", json!("polled"), &[]).await;
    assert_eq!((status, body["echo"].clone()), (200, json!("polled")));
    let (status, _, body) = trigger(&s.api, "refuse", json!({}), &[]).await;
    assert_eq!(
        (status, body["error"]["payload"]["code"].clone()),
        (400, json!("duplicate"))
    );
}

#[tokio::test]
async fn another_environments_actions_are_not_found() {
    let s = setup(&[]).await;
    let (_, _, body) = trigger(&s.api, "wait", json!({"ms": 10}), &[("X-Async", "true")]).await;
    let status_url = body["statusUrl"].as_str().unwrap().to_string();
    assert_eq!(result_when_done(&s.api, &status_url).await.0, 200);

    let (_, other_key) = environments::create(&s.ctx.db, "other").await.unwrap();
    let other = Api::new(&s.api.base, &other_key);
    let (status, body) = other.get(&status_url).await;
    assert_eq!(status, 404, "{body}");
    // Nor can it run the first environment's actions on its connection.
    let (status, _, body) = trigger(&other, "echo", json!({}), &[]).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_provider_config");
    // Tasks of other kinds are not actions either.
    let script_task = tasks::insert(
        &s.ctx.db,
        &[NewTask::new(
            s.env_id,
            TaskKind::Script,
            "x",
            Payload::script("x.js", Value::Null),
        )],
    )
    .await
    .unwrap()[0];
    assert_eq!(s.api.get(&format!("/action/{script_task}")).await.0, 404);
}

#[tokio::test]
async fn nangos_node_client_triggers_actions() {
    let s = setup(&[]).await;
    let stdout = run_node_client(
        "actions.mjs",
        &[
            ("LASSO_HOST", &s.api.base),
            ("LASSO_SECRET_KEY", &s.api.key),
        ],
    )
    .await;
    assert!(stdout.contains("ok getAsyncActionResult"), "{stdout}");
}
