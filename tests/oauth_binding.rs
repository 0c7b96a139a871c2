//! An OAuth flow belongs to the browser that started it: `GET /oauth/connect` sets a cookie
//! (SameSite=Lax, so the provider's redirect back carries it) that the callback must present,
//! and the callback page posts its result only to the origin of the page that opened the flow.
//! Without the binding, a link to a callback URL someone else's flow produced completes that
//! flow in the victim's browser (or the attacker's, with the victim's consent): a connection
//! made of one person's account lands in another's session. Without the origin, any page that
//! opens the popup reads the result.

use lasso_tests::auth::{MockOAuthServer, browser};
use lasso_tests::*;

/// The app with the `mock` integration of the mock OAuth server.
struct Setup {
    app: TestApp,
    _mock: MockOAuthServer,
}

setup_derefs_to_app!(Setup);

async fn setup() -> Setup {
    let mock = MockOAuthServer::start(None).await;
    let catalog = format!(
        "mock-oauth:\n    display_name: Mock OAuth\n    auth_mode: OAUTH2\n    \
         authorization_url: {0}/authorize\n    token_url: {0}/token\n",
        mock.url
    );
    let app = TestApp::builder()
        .providers(&catalog)
        .integration("mock", "mock-oauth", "")
        .start()
        .await;
    Setup { app, _mock: mock }
}

/// A browser without cookies: someone other than the one who started the flow.
fn stranger() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_string()
}

impl Setup {
    /// Starts a flow in `client` (opened from `referer`, if any) and lets the provider consent:
    /// the callback URL it redirects to.
    async fn callback_url(&self, client: &reqwest::Client, referer: Option<&str>) -> String {
        let mut request = client
            .get(format!(
                "{}/oauth/connect/mock?connection_id=alice",
                self.base
            ))
            .bearer_auth(&self.key)
            .header("accept", "text/html");
        if let Some(referer) = referer {
            request = request.header("referer", referer);
        }
        let res = request.send().await.unwrap();
        assert_eq!(res.status(), 302, "{}", res.text().await.unwrap());
        let authorize = location(&res);
        let res = stranger().get(&authorize).send().await.unwrap();
        assert_eq!(res.status(), 302);
        location(&res)
    }

    async fn connections(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM connections")
            .fetch_one(&self.ctx.db)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_callback_in_another_browser_than_the_one_that_started_the_flow_is_refused() {
    let s = setup().await;
    let starter = browser();
    let callback = s.callback_url(&starter, None).await;

    let res = stranger().get(&callback).send().await.unwrap();
    let status = res.status();
    let page = res.text().await.unwrap();
    assert_eq!(status, 400, "another browser completed the flow:\n{page}");
    assert!(page.contains("another browser"), "{page}");
    assert_eq!(s.connections().await, 0);

    // The stranger's attempt did not use the flow up: its own browser still finishes it.
    let res = starter.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(s.connections().await, 1);
}

#[tokio::test]
async fn the_callback_page_posts_its_result_only_to_the_origin_that_opened_the_flow() {
    let s = setup().await;
    let starter = browser();
    let callback = s
        .callback_url(
            &starter,
            Some("http://app.example:8080/settings/integrations?tab=1"),
        )
        .await;
    let res = starter.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(
        page.contains(r#"var opener = "http://app.example:8080";"#)
            && page.contains("postMessage(message, opener)"),
        "the result is not addressed to the opener's origin:\n{page}"
    );
    assert!(!page.contains("'*'") && !page.contains("\"*\""), "{page}");

    // Opened from nowhere known (no Referer): the opener is told nothing.
    let callback = s.callback_url(&starter, None).await;
    let page = starter
        .get(&callback)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("var opener = null;"), "{page}");
}
