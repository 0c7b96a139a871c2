//! The SDK members beyond the basics, against a host that answers each operation from a
//! script: what the script gets back (a Map, a generator, a fetch Response, an AbortSignal)
//! and what reaches the host. Their effects on real stores are in the integration tests
//! (tests/sdk.rs).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::json;

use super::*;

/// Answers each operation with the next of its canned answers, and records every call.
#[derive(Default)]
struct ScriptedHost {
    answers: Mutex<BTreeMap<String, VecDeque<Result<Json, HostError>>>>,
    calls: Mutex<Vec<(String, Json)>>,
}

impl ScriptedHost {
    fn answer(self, op: &str, answers: impl IntoIterator<Item = Json>) -> Self {
        self.answers
            .lock()
            .unwrap()
            .entry(op.to_string())
            .or_default()
            .extend(answers.into_iter().map(Ok));
        self
    }

    fn calls(&self, op: &str) -> Vec<Json> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a.clone())
            .collect()
    }
}

#[async_trait]
impl Host for ScriptedHost {
    async fn call(&self, op: &str, args: Json) -> Result<Json, HostError> {
        self.calls.lock().unwrap().push((op.to_string(), args));
        self.answers
            .lock()
            .unwrap()
            .get_mut(op)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Ok(Json::Null))
    }

    async fn batch(&self, _: BatchOp, _: &str, _: Vec<Json>) -> Result<(), HostError> {
        Ok(())
    }

    fn log(&self, _: Level, _: &str) {}
}

fn limits(timeout: Duration) -> Limits {
    Limits {
        memory_bytes: 16 * 1024 * 1024,
        timeout,
        ..Limits::default()
    }
}

fn info() -> RunInfo {
    RunInfo {
        connection_id: Some("c1".into()),
        provider_config_key: Some("github".into()),
        provider: Some("github".into()),
        ..Default::default()
    }
}

async fn run_on(
    source: &str,
    host: Arc<ScriptedHost>,
    input: Option<Json>,
) -> Result<Json, ScriptError> {
    run(
        &single_module(source),
        input,
        info(),
        host,
        limits(Duration::from_secs(5)),
        CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn records_come_back_as_a_map_and_a_generator() {
    let host = Arc::new(
        ScriptedHost::default()
            .answer(
                "getRecordsByIds",
                [json!([{"id": "2", "t": "two"}, {"id": "7", "t": "seven"}])],
            )
            .answer(
                "listRecords",
                [
                    json!({"records": [{"id": "a"}, {"id": "b"}], "next_cursor": "k1"}),
                    json!({"records": [{"id": "c"}], "next_cursor": null}),
                ],
            ),
    );
    let out = run_on(
        "export default async (nango) => {
            const byId = await nango.getRecordsByIds([2, 'x', '7'], 'Issue');
            const listed = [];
            for await (const r of nango.listRecords('Issue', { cursor: 'k0' })) { listed.push(r.id); }
            return { keys: [...byId.keys()], two: byId.get(2).t, listed };
        }",
        host.clone(),
        None,
    )
    .await
    .unwrap();
    // Keyed by the ids as the script passed them (2 is a number), the unknown one absent.
    assert_eq!(
        out,
        json!({"keys": [2, "7"], "two": "two", "listed": ["a", "b", "c"]})
    );
    assert_eq!(
        host.calls("getRecordsByIds"),
        vec![json!({"model": "Issue", "ids": ["2", "x", "7"]})]
    );
    assert_eq!(
        host.calls("listRecords"),
        vec![
            json!({"model": "Issue", "cursor": "k0"}),
            json!({"model": "Issue", "cursor": "k1"})
        ]
    );
}

#[tokio::test]
async fn uncontrolled_fetch_answers_a_response_or_nangos_refusal() {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(r#"{"ok":1}"#);
    let host = Arc::new(ScriptedHost::default().answer(
        "uncontrolledFetch",
        [
            json!({"status": 201, "statusText": "Created", "url": "https://x.test/a", "redirected": false,
                   "headers": [["content-type", "application/json"], ["set-cookie", "a"], ["set-cookie", "b"]],
                   "body": body}),
            json!({"refused": "the outbound policy refuses `127.0.0.1`: 127.0.0.1 is a loopback address"}),
        ],
    ));
    let out = run_on(
        "export default async (nango) => {
            const r = await nango.uncontrolledFetch({ url: new URL('https://x.test/a?q=1'), method: 'post',
                headers: { 'X-Key': 'k' }, body: 'héllo' });
            const json = await r.clone().json();
            const text = await r.text();
            let again;
            try { await r.text(); } catch (e) { again = e.name; }
            let refused;
            try { await nango.uncontrolledFetch({ url: 'http://127.0.0.1/' }); } catch (e) { refused = [e.name, e.payload]; }
            return { ok: r.ok, status: r.status, statusText: r.statusText, type: r.headers.get('Content-Type'),
                     cookies: r.headers.get('set-cookie'), json, text, again, refused };
        }",
        host.clone(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(out["ok"], true);
    assert_eq!(out["status"], 201);
    assert_eq!(out["statusText"], "Created");
    assert_eq!(out["type"], "application/json");
    assert_eq!(out["cookies"], "a, b");
    assert_eq!(out["json"], json!({"ok": 1}));
    assert_eq!(out["text"], r#"{"ok":1}"#);
    assert_eq!(out["again"], "TypeError");
    assert_eq!(out["refused"][0], "ActionError");
    assert_eq!(out["refused"][1]["code"], "url_not_allowed");
    let sent = &host.calls("uncontrolledFetch")[0];
    assert_eq!(sent["url"], "https://x.test/a?q=1");
    assert_eq!(sent["method"], "POST");
    assert_eq!(sent["headers"], json!({"X-Key": "k"}));
    assert_eq!(
        sent["body"],
        base64::engine::general_purpose::STANDARD.encode("héllo")
    );
}

#[tokio::test]
async fn trigger_action_takes_both_of_nangos_forms_and_syncs_their_arguments() {
    let host = Arc::new(
        ScriptedHost::default().answer("triggerAction", [json!({"done": 1}), json!({"done": 2})]),
    );
    let out = run_on(
        "export default async (nango) => {
            const a = await nango.triggerAction('other-key', 'other-conn', 'create', { n: 1 });
            const b = await nango.triggerAction('create', { n: 2 });
            await nango.triggerSync('github', 'c1', { name: 'issues', variant: 'base' }, { reset: true });
            await nango.triggerSync('github', 'c1', 'issues', 'full_refresh');
            await nango.startSync('github', ['issues'], 'c1');
            return [a, b];
        }",
        host.clone(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(out, json!([{"done": 1}, {"done": 2}]));
    assert_eq!(
        host.calls("triggerAction"),
        vec![
            json!({"providerConfigKey": "other-key", "connectionId": "other-conn", "action": "create", "input": {"n": 1}}),
            json!({"providerConfigKey": "github", "connectionId": "c1", "action": "create", "input": {"n": 2}}),
        ]
    );
    assert_eq!(
        host.calls("triggerSync"),
        vec![
            json!({"providerConfigKey": "github", "connectionId": "c1",
                   "sync": {"name": "issues", "variant": "base"}, "opts": {"reset": true}}),
            json!({"providerConfigKey": "github", "connectionId": "c1", "sync": "issues",
                   "sync_mode": "full_refresh"}),
        ]
    );
    assert_eq!(
        host.calls("startSync"),
        vec![json!({"providerConfigKey": "github", "syncs": ["issues"], "connectionId": "c1"})]
    );
}

#[tokio::test]
async fn members_lasso_does_not_support_throw_naming_themselves() {
    let out = run_on(
        "export default async (nango) => {
            const errors = [];
            for (const m of ['getFieldMapping', 'setFieldMapping', 'getObjectsConfig', 'getFlowAttributes']) {
                try { await nango[m](); errors.push(null); } catch (e) { errors.push(e.message); }
            }
            return errors;
        }",
        Arc::new(ScriptedHost::default()),
        None,
    )
    .await
    .unwrap();
    let errors: Vec<String> = serde_json::from_value(out).unwrap();
    for (member, message) in [
        "getFieldMapping",
        "setFieldMapping",
        "getObjectsConfig",
        "getFlowAttributes",
    ]
    .iter()
    .zip(&errors)
    {
        assert!(
            message.starts_with(&format!("nango.{member} is not supported by Lasso")),
            "{message}"
        );
    }
}

/// Waits for the abort event, then reports what the script saw: the signal, and an SDK call
/// refused once aborted.
const AWAIT_ABORT: &str = "export default async (nango) => {
    const before = nango.abortSignal.aborted;
    const reason = await new Promise((resolve) => {
        nango.abortSignal.addEventListener('abort', () => resolve(nango.abortSignal.reason.message));
    });
    let refused = null;
    try { await nango.getMetadata(); } catch (e) { refused = e.message; }
    let thrown = null;
    try { nango.abortSignal.throwIfAborted(); } catch (e) { thrown = e.name; }
    return { before, after: nango.abortSignal.aborted, reason, refused, thrown };
}";

// Two workers: the canceller runs while the script waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_signal_aborts_when_the_run_is_cancelled() {
    let host = Arc::new(ScriptedHost::default());
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stopper.cancel();
    });
    // The script winds down within the grace period and answers.
    let out = run(
        &single_module(AWAIT_ABORT),
        None,
        info(),
        host.clone(),
        limits(Duration::from_secs(20)),
        cancel,
    )
    .await
    .unwrap();
    assert_eq!(out["before"], false);
    assert_eq!(out["after"], true);
    assert!(
        out["reason"].as_str().unwrap().contains("cancelled"),
        "{out}"
    );
    assert!(
        out["refused"].as_str().unwrap().contains("aborted"),
        "{out}"
    );
    assert_eq!(out["thrown"], "AbortError");
    assert!(
        host.calls("getMetadata").is_empty(),
        "nothing reached the host"
    );

    // A script that ignores the signal is stopped a grace period later.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let e = run(
        &single_module("export default () => new Promise(() => {})"),
        None,
        info(),
        Arc::new(ScriptedHost::default()),
        limits(Duration::from_secs(20)),
        cancel,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::Cancelled);
}

#[tokio::test]
async fn abort_signal_aborts_before_the_deadline() {
    let out = run(
        &single_module(AWAIT_ABORT),
        None,
        info(),
        Arc::new(ScriptedHost::default()),
        limits(Duration::from_secs(2)),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(out["after"], true);
    assert!(
        out["reason"].as_str().unwrap().contains("deadline"),
        "{out}"
    );
    assert_eq!(out["thrown"], "AbortError");
}

#[tokio::test]
async fn paginate_takes_every_option_nango_documents() {
    let page = |data: Json, headers: Json| json!({"status": 200, "headers": headers, "data": data});
    let collect = "export default async (nango, input) => {
        const seen = [];
        const pages = [];
        input.paginate.on_page = async ({ nextPageParam }) => { pages.push(nextPageParam === undefined ? null : nextPageParam); };
        for await (const items of nango.paginate(input)) { seen.push(...(items || []).map((i) => i.id)); }
        return { seen, pages };
    }";

    // POST: the pagination fields go in the body by default, dotted names nested; a numeric
    // cursor and a cursor of spaces (the end).
    let host = Arc::new(ScriptedHost::default().answer(
        "proxy",
        [
            page(
                json!({"data": {"items": [{"id": 1}]}, "meta": {"next": 20}}),
                json!({}),
            ),
            page(
                json!({"data": {"items": [{"id": 2}]}, "meta": {"next": "  "}}),
                json!({}),
            ),
        ],
    ));
    let out = run_on(
        collect,
        host.clone(),
        Some(
            json!({"endpoint": "/search", "method": "POST", "data": {"query": "x"},
            "paginate": {"type": "cursor", "cursor_path_in_response": "meta.next",
                "cursor_name_in_request": "page.cursor", "response_path": "data.items",
                "limit": 50, "limit_name_in_request": "page.size"}}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"seen": [1, 2], "pages": [20, null]}));
    let calls = host.calls("proxy");
    assert_eq!(
        calls[0]["data"],
        json!({"query": "x", "page": {"size": 50}})
    );
    assert_eq!(
        calls[1]["data"],
        json!({"query": "x", "page": {"size": 50, "cursor": 20}})
    );
    assert_eq!(calls[1].get("params"), None);

    // `in_body: false` keeps them in the query of a POST.
    let host = Arc::new(ScriptedHost::default().answer("proxy", [page(json!([]), json!({}))]));
    run_on(
        collect,
        host.clone(),
        Some(json!({"endpoint": "/search", "method": "POST",
            "paginate": {"type": "offset", "offset_name_in_request": "skip", "in_body": false}})),
    )
    .await
    .unwrap();
    assert_eq!(host.calls("proxy")[0]["params"], json!({"skip": "0"}));

    // Link: the header's rel first, else the body's path; a link seen twice ends it.
    let host = Arc::new(ScriptedHost::default().answer(
        "proxy",
        [
            page(
                json!({"results": [{"id": "a"}], "links": {"next": "/v2/items?page=2"}}),
                json!({}),
            ),
            page(
                json!({"results": [{"id": "b"}]}),
                json!({"link": "</v2/items?page=3>; rel=\"following\""}),
            ),
            page(
                json!({"results": [{"id": "c"}], "links": {"next": "/v2/items?page=3"}}),
                json!({}),
            ),
        ],
    ));
    let out = run_on(
        collect,
        host.clone(),
        Some(json!({"endpoint": "/v2/items", "paginate": {"type": "link", "response_path": "results",
            "link_rel_in_response_header": "following", "link_path_in_response_body": "links.next"}})),
    )
    .await
    .unwrap();
    assert_eq!(out["seen"], json!(["a", "b", "c"]));
    let calls = host.calls("proxy");
    assert_eq!(calls[1]["endpoint"], "/v2/items?page=2");
    assert_eq!(calls[2]["endpoint"], "/v2/items?page=3");
    assert_eq!(calls.len(), 3);

    // Offset per page from a start value, ending on a short page.
    let host = Arc::new(ScriptedHost::default().answer(
        "proxy",
        [
            page(json!([{"id": 1}, {"id": 2}]), json!({})),
            page(json!([{"id": 3}]), json!({})),
        ],
    ));
    let out = run_on(
        collect,
        host.clone(),
        Some(json!({"endpoint": "/rows", "paginate": {"type": "offset", "offset_name_in_request": "page",
            "offset_start_value": 1, "offset_calculation_method": "per-page",
            "limit": 2, "limit_name_in_request": "per_page"}})),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"seen": [1, 2, 3], "pages": [1]}));
    let calls = host.calls("proxy");
    assert_eq!(calls[0]["params"], json!({"per_page": 2, "page": "1"}));
    assert_eq!(calls[1]["params"], json!({"per_page": 2, "page": "2"}));

    // Nango's checks of the configuration.
    let e = run_on(
        collect,
        Arc::new(ScriptedHost::default()),
        Some(json!({"endpoint": "/x", "paginate": {"type": "cursor", "cursor_name_in_request": "c"}})),
    )
    .await
    .unwrap_err();
    assert!(
        e.message.contains("cursor_path_in_response is required"),
        "{e:?}"
    );
}
