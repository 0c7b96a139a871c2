//! Webhooks from providers (`POST /webhook/:environmentUuid/:providerConfigKey`): routing to
//! connections by a body path, a header or metadata, webhook tasks that run the subscribed
//! syncs with the payload, forwarding as Nango's signed `forward` webhook, signature checks,
//! and the answers for unknown environments and integrations, bad bodies and big ones.

use lasso_services::EnvironmentId;
use std::time::Duration;

use lasso_services::connections;
use lasso_services::records::{self, ListQuery, Scope};
use lasso_tests::receiver::Receiver;
use lasso_tests::*;
use serde_json::{Value, json};
use uuid::Uuid;

const PROVIDERS: &str = "acme:\n  display_name: Acme\n  auth_mode: API_KEY\n  proxy:\n    base_url: http://127.0.0.1:9\n    headers:\n      authorization: Bearer ${apiKey}\n";

struct Setup {
    app: TestApp,
    env_id: EnvironmentId,
    env_uuid: Uuid,
    http: reqwest::Client,
}

setup_derefs_to_app!(Setup);

/// Integration `acme` (with `custom`), the fixture project deployed, the loops running.
async fn setup(custom: Value) -> Setup {
    let app = TestApp::builder()
        .providers(PROVIDERS)
        .environment("hooks")
        .workers()
        .start()
        .await;
    let (status, body) = app
        .api
        .post(
            "/integrations",
            json!({"provider": "acme", "unique_key": "acme", "custom": custom,
                   "credentials": {"type": "OAUTH2", "webhook_secret": "whsec_provider"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    deploy_fixture(&app.ctx, app.env.id, "actions-project").await;
    Setup {
        env_id: app.env.id,
        env_uuid: app.env.uuid,
        app,
        http: reqwest::Client::new(),
    }
}

impl Setup {
    async fn connection(&self, id: &str, config: Value, metadata: Value) {
        let (status, body) = self
            .api
            .post(
                "/connections",
                json!({"provider_config_key": "acme", "connection_id": id,
                       "credentials": {"type": "API_KEY", "apiKey": "k"},
                       "connection_config": config, "metadata": metadata}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Posts a webhook (no secret key); the status and the body as text.
    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.api.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    }

    fn hook_path(&self) -> String {
        format!("/webhook/{}/acme", self.env_uuid)
    }

    /// The records the fixture's webhook syncs saved for a connection, as (id, sync) pairs,
    /// sorted.
    async fn events(&self, connection: &str) -> Vec<(String, String)> {
        let row = connections::row_id(&self.ctx.db, self.env_id, "acme", connection)
            .await
            .unwrap();
        let mut events = Vec::new();
        for model in ["IssueEvent", "PullRequestEvent", "AuditEntry"] {
            let page = records::list(
                &self.ctx.db,
                &Scope::new(row, model, None),
                &ListQuery {
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            events.extend(page.records.iter().map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["sync"].as_str().unwrap().to_string(),
                )
            }));
        }
        events.sort();
        events
    }
}

fn github_routing() -> Value {
    json!({"webhook_routing": {
        "connection_config": {"body_path": "installation.id", "key": "installation_id"},
        "event": {"header": "X-GitHub-Event"}
    }})
}

#[tokio::test]
async fn webhooks_reach_the_matching_connections_subscribed_syncs() {
    let s = setup(github_routing()).await;
    // The installation id as a string and as a number both match; another one does not.
    s.connection("team-a", json!({"installation_id": "42"}), Value::Null)
        .await;
    s.connection("team-b", json!({"installation_id": 42}), Value::Null)
        .await;
    s.connection("team-c", json!({"installation_id": 7}), Value::Null)
        .await;

    let payload = json!({"action": "opened", "delivery": "d1", "issue": {"id": 1001},
                         "installation": {"id": 42}});
    let (status, body) = s
        .post(
            &s.hook_path(),
            &[("X-GitHub-Event", "issues")],
            payload.to_string().as_bytes(),
        )
        .await;
    assert_eq!(
        (status, body.as_str()),
        (200, ""),
        "Nango answers 200 with no body"
    );

    // `issue-events` (subscribed to `issues`) and `audit` (`*`) ran for both matching
    // connections with the payload; `pull-requests` did not.
    let expected = vec![
        ("1001".to_string(), "issue-events".to_string()),
        ("audit-d1".to_string(), "audit".to_string()),
    ];
    for connection in ["team-a", "team-b"] {
        let events = eventually(
            &format!("the webhook's records of {connection}"),
            Duration::from_secs(60),
            || async {
                let events = s.events(connection).await;
                (events.len() >= 2).then_some(events)
            },
        )
        .await;
        assert_eq!(events, expected, "{connection}");
    }
    assert!(s.events("team-c").await.is_empty());
    // (The syncs' own scheduled runs are sync tasks.)
    let kinds: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, state::text FROM queue.tasks WHERE kind = 'webhook' ORDER BY name, id",
    )
    .fetch_all(&s.ctx.db)
    .await
    .unwrap();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(
        kinds
            .iter()
            .all(|(name, _)| name == "issue-events" || name == "audit")
    );

    // The webhook is an operation of its own (each task it queued is another one).
    let receipts = webhook_receipts(&s).await;
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert_eq!(receipts[0]["state"], "success");
    assert_eq!(receipts[0]["integration"], "acme");
    assert_eq!(receipts[0]["meta"]["event"], "issues");
    assert_eq!(
        receipts[0]["meta"]["connections"],
        json!(["team-a", "team-b"])
    );
    assert_eq!(receipts[0]["meta"]["task_ids"].as_array().unwrap().len(), 4);

    // A `pull_request` event runs `pull-requests` and `audit`.
    let pr =
        json!({"action": "closed", "delivery": "d2", "number": 5, "installation": {"id": "42"}});
    let (status, _) = s
        .post(
            &s.hook_path(),
            &[("X-GitHub-Event", "pull_request")],
            pr.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    eventually(
        "the pull request's records",
        Duration::from_secs(60),
        || async {
            let events = s.events("team-a").await;
            (events.contains(&("pr-5".into(), "pull-requests".into()))
                && events.contains(&("audit-d2".into(), "audit".into())))
            .then_some(())
        },
    )
    .await;

    // No installation in the payload, or an unknown one: no connection, no task.
    let before = count_tasks(&s).await;
    for body in [json!({"zen": "hi"}), json!({"installation": {"id": 999}})] {
        let (status, _) = s
            .post(
                &s.hook_path(),
                &[("X-GitHub-Event", "ping")],
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(status, 200);
    }
    assert_eq!(count_tasks(&s).await, before);
}

/// The operations of received webhooks (not of the tasks they queued), newest first.
async fn webhook_receipts(s: &Setup) -> Vec<Value> {
    let (status, body) = s.api.get("/logs/operations?kind=webhook").await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| op["script"].is_null())
        .cloned()
        .collect()
}

async fn count_tasks(s: &Setup) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM queue.tasks")
        .fetch_one(&s.ctx.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn metadata_and_header_rules_route_too() {
    let s = setup(json!({"webhook_routing": {
        "metadata": {"header": "X-Account", "key": "account.id"},
        "event": {"body_path": "type"}
    }}))
    .await;
    s.connection("one", Value::Null, json!({"account": {"id": "acct_1"}}))
        .await;
    s.connection("two", Value::Null, json!({"account": {"id": "acct_2"}}))
        .await;
    let payload =
        json!({"type": "issues", "action": "edited", "issue": {"id": 7}, "delivery": "m1"});
    let (status, _) = s
        .post(
            &s.hook_path(),
            &[("X-Account", "acct_2")],
            payload.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    let events = eventually("the webhook's records", Duration::from_secs(60), || async {
        let events = s.events("two").await;
        (events.len() >= 2).then_some(events)
    })
    .await;
    assert_eq!(events[0], ("7".to_string(), "issue-events".to_string()));
    assert!(s.events("one").await.is_empty());

    // Routed by the connection id itself.
    let (status, body) = s
        .api
        .patch(
            "/integrations/acme",
            json!({"custom": {"webhook_routing": {
                "connection_id": {"header": "X-Connection"},
                "event": {"body_path": "type"}
            }}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let payload = json!({"type": "issues", "issue": {"id": 8}, "delivery": "m2"});
    let (status, _) = s
        .post(
            &s.hook_path(),
            &[("X-Connection", "one")],
            payload.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    let events = eventually("the webhook's records", Duration::from_secs(60), || async {
        let events = s.events("one").await;
        (events.len() >= 2).then_some(events)
    })
    .await;
    assert_eq!(events[0], ("8".to_string(), "issue-events".to_string()));

    // The rules are checked when the integration is written.
    let (status, body) = s
        .api
        .patch(
            "/integrations/acme",
            json!({"custom": {"webhook_routing": {"metadata": {"header": "X-Account"}}}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["errors"][0]["field"], "custom.webhook_routing.metadata",
        "{body}"
    );
}

#[tokio::test]
async fn webhooks_are_forwarded_signed_when_the_integration_asks() {
    let s = setup(github_routing()).await;
    let receiver = Receiver::start().await;
    let (_, settings) = s
        .api
        .patch("/environment", json!({"webhook_url": receiver.url}))
        .await;
    let secret = settings["webhook_signing_secret"]
        .as_str()
        .unwrap()
        .to_string();
    s.connection("team-a", json!({"installation_id": 42}), Value::Null)
        .await;
    s.connection("team-b", json!({"installation_id": 42}), Value::Null)
        .await;

    let payload = json!({"action": "opened", "issue": {"id": 1}, "delivery": "f1",
                         "installation": {"id": 42}});
    assert_eq!(
        s.post(
            &s.hook_path(),
            &[("X-GitHub-Event", "issues")],
            payload.to_string().as_bytes()
        )
        .await
        .0,
        200
    );
    // One forward per matched connection, signed with the environment's secret.
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let mut bodies: Vec<Value> = got.iter().map(|r| r.json()).collect();
    bodies.sort_by_key(|b| b["connectionId"].as_str().unwrap().to_string());
    assert!(got.iter().all(|r| r.signed_with(&secret)));
    assert_eq!(
        bodies[0],
        json!({"from": "acme", "type": "forward", "connectionId": "team-a",
               "providerConfigKey": "acme", "payload": payload, "signatureVerified": false})
    );
    assert_eq!(bodies[1]["connectionId"], "team-b");

    // No matching connection: one forward without a connection id.
    let ping = json!({"zen": "hello"});
    s.post(
        &s.hook_path(),
        &[("X-GitHub-Event", "ping")],
        ping.to_string().as_bytes(),
    )
    .await;
    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(
        got[2].json(),
        json!({"from": "acme", "type": "forward", "providerConfigKey": "acme", "payload": ping,
               "signatureVerified": false})
    );

    // Forwarding off: nothing more arrives.
    let (status, body) = s
        .api
        .patch("/integrations/acme", json!({"forward_webhooks": false}))
        .await;
    assert_eq!(status, 200, "{body}");
    s.post(
        &s.hook_path(),
        &[("X-GitHub-Event", "ping")],
        ping.to_string().as_bytes(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test]
async fn unknown_urls_bad_bodies_and_bad_signatures_are_refused() {
    let mut custom = github_routing();
    custom["webhook_routing"]["signature"] =
        json!({"header": "X-Hub-Signature-256", "prefix": "sha256="});
    let s = setup(custom).await;
    let body = br#"{"installation": {"id": 1}}"#;
    let sign = |secret: &str, body: &[u8]| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let good = sign("whsec_provider", body);

    let (status, answer) = s
        .post(&format!("/webhook/{}/acme", Uuid::new_v4()), &[], body)
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["error"]["code"],
        "unknown_environment"
    );
    assert_eq!(s.post("/webhook/not-a-uuid/acme", &[], body).await.0, 404);
    let (status, answer) = s
        .post(&format!("/webhook/{}/nope", s.env_uuid), &[], body)
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["error"]["code"],
        "unknown_provider_config"
    );

    // Signed by the provider with the integration's webhook secret, or refused.
    let (status, answer) = s.post(&s.hook_path(), &[], body).await;
    assert_eq!(status, 401, "{answer}");
    let forged = sign("guess", body);
    let (status, _) = s
        .post(&s.hook_path(), &[("X-Hub-Signature-256", &forged)], body)
        .await;
    assert_eq!(status, 401);
    let (status, answer) = s
        .post(&s.hook_path(), &[("X-Hub-Signature-256", &good)], body)
        .await;
    assert_eq!(status, 200, "{answer}");
    // Refusals are in the environment's logs too.
    let receipts = webhook_receipts(&s).await;
    let states: Vec<&str> = receipts
        .iter()
        .map(|op| op["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["success", "failed", "failed", "failed"],
        "{receipts:?}"
    );
    assert!(
        receipts[1]["error"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{receipts:?}"
    );

    // Not JSON (checked after the signature, which covers the raw bytes).
    let text = b"installation=1";
    let (status, answer) = s
        .post(
            &s.hook_path(),
            &[("X-Hub-Signature-256", &sign("whsec_provider", text))],
            text,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["error"]["code"],
        "invalid_request"
    );

    let big = vec![b' '; lasso_services::incoming_webhooks::MAX_BODY_BYTES + 1];
    let (status, answer) = s.post(&s.hook_path(), &[], &big).await;
    assert_eq!(status, 413, "{answer}");
}
