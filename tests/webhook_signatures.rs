//! Incoming webhooks are verified for the providers that sign them, as the provider's catalog
//! entry declares (`lasso: {webhook_signature: github | stripe | slack | shopify}`): a forged
//! or tampered webhook is refused, and so is a replayed one where the provider signs a
//! timestamp (Stripe, Slack: five minutes). An integration can require signatures
//! (`custom.require_webhook_signatures`), and a forwarded webhook says whether its signature
//! was verified (`signatureVerified`).

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use lasso_tests::receiver::Receiver;
use lasso_tests::*;
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec_provider_secret";

const CATALOG: &str = "\
hubgit:
  display_name: Hubgit
  auth_mode: API_KEY
  lasso:
    webhook_signature: github
stripy:
  display_name: Stripy
  auth_mode: API_KEY
  lasso:
    webhook_signature: stripe
slacky:
  display_name: Slacky
  auth_mode: API_KEY
  lasso:
    webhook_signature: slack
shopy:
  display_name: Shopy
  auth_mode: API_KEY
  lasso:
    webhook_signature: shopify
plain:
  display_name: Plain
  auth_mode: API_KEY
";

fn hmac(data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

struct Setup {
    api: Api,
    env_uuid: uuid::Uuid,
    receiver: Receiver,
    http: reqwest::Client,
}

async fn setup() -> Setup {
    let receiver = Receiver::start().await;
    let app = TestApp::builder()
        .providers(CATALOG)
        .environment("signed")
        .webhook_url(&receiver.url)
        .start()
        .await;
    Setup {
        env_uuid: app.env.uuid,
        api: app.api,
        receiver,
        http: reqwest::Client::new(),
    }
}

impl Setup {
    async fn integration(&self, provider: &str, key: &str, secret: bool, custom: Value) {
        let mut body = json!({"provider": provider, "unique_key": key, "custom": custom});
        if secret {
            body["credentials"] = json!({"type": "OAUTH2", "webhook_secret": SECRET});
        }
        let (status, body) = self.api.post("/integrations", body).await;
        assert_eq!(status, 200, "{body}");
    }

    async fn hook(&self, key: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/webhook/{}/{key}", self.api.base, self.env_uuid))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The forwards received so far, by their payload's `n`.
    async fn forwards(&self, count: usize) -> Vec<Value> {
        let mut got: Vec<Value> = self
            .receiver
            .wait_for(count, Duration::from_secs(20))
            .await
            .iter()
            .map(|r| r.json())
            .collect();
        got.sort_by_key(|b| b["payload"]["n"].as_i64());
        got
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn webhooks_are_verified_by_the_providers_scheme_with_a_replay_window() {
    let s = setup().await;
    for (provider, key) in [
        ("hubgit", "gh"),
        ("stripy", "st"),
        ("slacky", "sl"),
        ("shopy", "sh"),
    ] {
        s.integration(provider, key, true, json!({})).await;
    }
    let hex = |data: &[u8]| hex::encode(hmac(data));
    let b64 = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(hmac(data));
    let body = |n: i64| json!({"n": n}).to_string();

    // GitHub: X-Hub-Signature-256 = sha256=hex(HMAC(body)).
    let b = body(1);
    let good = vec![(
        "X-Hub-Signature-256",
        format!("sha256={}", hex(b.as_bytes())),
    )];
    assert_eq!(s.hook("gh", &good, &b).await.0, 200);
    assert_eq!(s.hook("gh", &good, &body(99)).await.0, 401, "tampered");
    assert_eq!(s.hook("gh", &[], &b).await.0, 401, "unsigned");

    // Stripe: Stripe-Signature: t=<ts>,v1=hex(HMAC("<ts>.<body>")).
    let b = body(2);
    let stripe = |t: i64, body: &str| {
        vec![(
            "Stripe-Signature",
            format!("t={t},v1={}", hex(format!("{t}.{body}").as_bytes())),
        )]
    };
    assert_eq!(s.hook("st", &stripe(now(), &b), &b).await.0, 200);
    assert_eq!(
        s.hook("st", &stripe(now(), &b), &body(98)).await.0,
        401,
        "tampered"
    );
    assert_eq!(
        s.hook("st", &stripe(now() - 600, &b), &b).await.0,
        401,
        "replayed ten minutes later"
    );

    // Slack: X-Slack-Signature = v0=hex(HMAC("v0:<ts>:<body>")), X-Slack-Request-Timestamp.
    let b = body(3);
    let slack = |t: i64, body: &str| {
        vec![
            (
                "X-Slack-Signature",
                format!("v0={}", hex(format!("v0:{t}:{body}").as_bytes())),
            ),
            ("X-Slack-Request-Timestamp", t.to_string()),
        ]
    };
    assert_eq!(s.hook("sl", &slack(now(), &b), &b).await.0, 200);
    assert_eq!(
        s.hook("sl", &slack(now() - 600, &b), &b).await.0,
        401,
        "replayed ten minutes later"
    );
    let mut forged = slack(now(), &b);
    forged[1].1 = (now() - 1).to_string();
    assert_eq!(
        s.hook("sl", &forged, &b).await.0,
        401,
        "timestamp not the signed one"
    );

    // Shopify: X-Shopify-Hmac-Sha256 = base64(HMAC(body)).
    let b = body(4);
    let good = vec![("X-Shopify-Hmac-Sha256", b64(b.as_bytes()))];
    assert_eq!(s.hook("sh", &good, &b).await.0, 200);
    assert_eq!(s.hook("sh", &good, &body(97)).await.0, 401, "tampered");

    // Only the four genuine ones were forwarded, each saying it was verified.
    let got = s.forwards(4).await;
    let ns: Vec<i64> = got
        .iter()
        .map(|b| b["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, vec![1, 2, 3, 4], "{got:?}");
    assert!(
        got.iter().all(|b| b["signatureVerified"] == true),
        "{got:?}"
    );
}

#[tokio::test]
async fn an_integration_can_require_signatures_and_forwards_say_when_none_was_checked() {
    let s = setup().await;
    let require = json!({"require_webhook_signatures": true});
    // A provider that signs nothing Lasso knows, and one that signs but no secret is set.
    s.integration("plain", "plain-required", true, require.clone())
        .await;
    s.integration("hubgit", "gh-no-secret-required", false, require)
        .await;
    s.integration("plain", "plain", true, json!({})).await;

    let (status, body) = s.hook("plain-required", &[], r#"{"n": 1}"#).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("require_webhook_signatures"),
        "the refusal names the setting: {body}"
    );
    assert_eq!(
        s.hook("gh-no-secret-required", &[], r#"{"n": 2}"#).await.0,
        401
    );

    // Not required: accepted, and the forward says nothing was verified.
    assert_eq!(s.hook("plain", &[], r#"{"n": 3}"#).await.0, 200);
    let got = s.forwards(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["payload"]["n"], 3);
    assert_eq!(got[0]["signatureVerified"], false, "{got:?}");
}
