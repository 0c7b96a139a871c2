use std::sync::Mutex;

use serde_json::json;

use super::*;

/// A host that answers from a script of canned proxy pages and records everything.
#[derive(Default)]
struct FakeHost {
    calls: Mutex<Vec<(String, Json)>>,
    batches: Mutex<Vec<(BatchOp, String, Vec<Json>)>>,
    logs: Mutex<Vec<(Level, String)>>,
    /// Answers for successive proxy calls.
    pages: Mutex<Vec<Result<Json, HostError>>>,
}

#[async_trait]
impl Host for FakeHost {
    async fn call(&self, op: &str, args: Json) -> Result<Json, HostError> {
        self.calls
            .lock()
            .unwrap()
            .push((op.to_string(), args.clone()));
        match op {
            "proxy" => {
                let mut pages = self.pages.lock().unwrap();
                if pages.is_empty() {
                    Ok(json!({"status": 200, "headers": {}, "data": []}))
                } else {
                    pages.remove(0)
                }
            }
            "getMetadata" => Ok(json!({"team": "red"})),
            _ => Ok(Json::Null),
        }
    }

    async fn batch(&self, op: BatchOp, model: &str, records: Vec<Json>) -> Result<(), HostError> {
        if model == "Unknown" {
            return Err(HostError::new("model `Unknown` is not declared"));
        }
        self.batches
            .lock()
            .unwrap()
            .push((op, model.to_string(), records));
        Ok(())
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.lock().unwrap().push((level, message.to_string()));
    }
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 16 * 1024 * 1024,
        timeout: Duration::from_secs(5),
        ..Limits::default()
    }
}

async fn run_with(
    source: &str,
    input: Option<Json>,
    host: Arc<FakeHost>,
    limits: Limits,
) -> Result<Json, ScriptError> {
    run(
        &single_module(source),
        input,
        RunInfo {
            connection_id: Some("c1".into()),
            provider_config_key: Some("github".into()),
            provider: Some("github".into()),
            ..Default::default()
        },
        host,
        limits,
        CancellationToken::new(),
    )
    .await
}

async fn run_src(source: &str) -> Result<Json, ScriptError> {
    run_with(source, None, Arc::new(FakeHost::default()), limits()).await
}

#[tokio::test]
async fn runs_functions_and_object_forms() {
    let out = run_with(
        "export default async function (nango, input) { return { doubled: input.n * 2, conn: nango.connectionId }; }",
        Some(json!({"n": 21})),
        Arc::new(FakeHost::default()),
        limits(),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"doubled": 42, "conn": "c1"}));

    let out = run_src(
        "import { createSync } from 'nango';
         export default createSync({ frequency: 'every hour', exec: async (nango) => 'synced' });",
    )
    .await
    .unwrap();
    assert_eq!(out, json!("synced"));
}

#[tokio::test]
async fn modules_load_only_from_the_bundle() {
    let mut bundle =
        single_module("import { twice } from 'lib/helpers.js'; export default () => twice(4);");
    bundle.modules.insert(
        "lib/helpers.js".into(),
        "export const twice = (n) => n * 2;".into(),
    );
    let out = run(
        &bundle,
        None,
        RunInfo::default(),
        Arc::new(FakeHost::default()),
        limits(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(out, json!(8));

    for source in [
        "import fs from 'fs'; export default () => 1;",
        "import x from '../../etc/passwd'; export default () => 1;",
    ] {
        let e = run_src(source).await.unwrap_err();
        assert!(e.message.contains("can be imported"), "{e:?}");
    }
    let out = run_src(
        "export default () => [typeof require, typeof process, typeof __lasso, typeof __lassoMakeNango, typeof fetch]",
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!([
            "undefined",
            "undefined",
            "undefined",
            "undefined",
            "undefined"
        ])
    );
}

#[tokio::test]
async fn errors_carry_message_and_stack_and_action_payloads() {
    let e = run_src("export default async function () {\n  throw new TypeError('boom');\n}")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::Exception);
    assert_eq!(e.message, "TypeError: boom");
    assert!(e.stack.unwrap().contains("script.js:2"));

    let e = run_src(
        "import { ActionError } from 'nango';
         export default async (nango) => { throw new ActionError({ code: 'not_found', message: 'no such issue' }); }",
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::ActionError);
    assert_eq!(
        e.payload,
        Some(json!({"code": "not_found", "message": "no such issue"}))
    );
    // The same class is reachable as nango.ActionError.
    let e = run_src("export default async (nango) => { throw new nango.ActionError({ n: 1 }); }")
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.payload),
        (ScriptErrorKind::ActionError, Some(json!({"n": 1})))
    );

    let e = run_src("export default function (").await.unwrap_err();
    assert!(
        e.message.contains("SyntaxError") || e.kind == ScriptErrorKind::InvalidScript,
        "{e:?}"
    );
    let e = run_src("export const x = 1;").await.unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::InvalidScript);
    let e = run_src("export default () => ({ f() {} })")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::InvalidOutput);
    assert!(
        e.message.contains("the returned value.f is a function"),
        "{e:?}"
    );
}

#[tokio::test]
async fn hostile_scripts_are_contained() {
    let quick = Limits {
        timeout: Duration::from_millis(300),
        ..limits()
    };
    let host = || Arc::new(FakeHost::default());
    let e = run_with(
        "export default function () { while (true) {} }",
        None,
        host(),
        quick,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::Timeout);
    let e = run_with(
        "export default async function () { for (;;) { await Promise.resolve(); } }",
        None,
        host(),
        quick,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::Timeout);
    let e = run_with(
        "export default () => new Promise(() => {})",
        None,
        host(),
        quick,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::Timeout);
    let e = run_src(
        "export default function () { const a = []; while (true) { a.push('x'.repeat(1024) + a.length); } }",
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::OutOfMemory, "{e:?}");
    // Catching the out-of-memory error does not save the run.
    let e = run_src(
        "export default function () { try { const a = []; for (;;) a.push(new Array(1e5).fill(1)); } catch (e) {} return 'survived'; }",
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::OutOfMemory, "{e:?}");
    let e = run_src("const f = (n) => f(n + 1) + 1; export default () => f(0);")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::Exception);
    assert!(e.message.contains("RangeError"), "{e:?}");

    let h = host();
    run_with(
        "export default (nango) => { nango.log('x'.repeat(2 * 1024 * 1024)); }",
        None,
        h.clone(),
        limits(),
    )
    .await
    .unwrap();
    assert_eq!(h.logs.lock().unwrap()[0].1.len(), MAX_LOG_LINE);
}

// Two workers: a spinning script holds its thread until the interrupt handler fires, and the
// canceller must run meanwhile (the runner's runtime has several workers too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_a_run() {
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stopper.cancel();
    });
    for source in [
        "export default function () { while (true) {} }",
        "export default () => new Promise(() => {})",
    ] {
        let e = run(
            &single_module(source),
            None,
            RunInfo::default(),
            Arc::new(FakeHost::default()),
            limits(),
            cancel.clone(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::Cancelled);
    }
}

#[tokio::test]
async fn nango_calls_reach_the_host() {
    let host = Arc::new(FakeHost::default());
    host.pages.lock().unwrap().push(Err(HostError {
        message: "the provider answered 404".into(),
        response: Some(json!({"status": 404, "headers": {}, "data": {"message": "Not Found"}})),
    }));
    let out = run_with(
        "export default async (nango) => {
            let status;
            try { await nango.get({ endpoint: '/missing' }); } catch (e) { status = e.response.status; }
            await nango.post({ endpoint: '/items', data: { a: 1 }, headers: { 'X-A': 'b' } });
            await nango.batchSave([{ id: 1, at: new Date(0) }, { id: 2, skip: undefined }], 'Issue');
            await nango.batchDelete([{ id: 3 }], 'Issue');
            const meta = await nango.getMetadata();
            console.log('hello', { n: 1 });
            nango.log('careful', { level: 'warn' });
            await new Promise((r) => setTimeout(r, 5));
            return { status, meta };
        }",
        None,
        host.clone(),
        limits(),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"status": 404, "meta": {"team": "red"}}));
    let calls = host.calls.lock().unwrap().clone();
    assert_eq!(calls[0].1["method"], "GET");
    assert_eq!(
        calls[1].1,
        json!({"endpoint": "/items", "data": {"a": 1}, "headers": {"X-A": "b"}, "method": "POST"})
    );
    let batches = host.batches.lock().unwrap().clone();
    assert_eq!(batches[0].0, BatchOp::Save);
    assert_eq!(
        batches[0].2,
        vec![
            json!({"id": 1, "at": "1970-01-01T00:00:00.000Z"}),
            json!({"id": 2})
        ]
    );
    assert_eq!(batches[1].0, BatchOp::Delete);
    let logs = host.logs.lock().unwrap().clone();
    assert_eq!(logs[0], (Level::Info, r#"hello {"n":1}"#.to_string()));
    assert_eq!(logs[1], (Level::Warn, "careful".to_string()));
}

#[tokio::test]
async fn input_arrives_as_json_parse_would_make_it() {
    let input = json!({
        "items": [{"id": 1, "n": 1.5, "tags": ["a"]}, {"id": 2, "n": -3, "tags": []}],
        "__proto__": {"polluted": true},
        "big": 9_007_199_254_740_993_i64,
        "nothing": null,
    });
    let out = run_with(
        "export default async (nango, input) => ({
            echo: input,
            ownProto: Object.prototype.hasOwnProperty.call(input, '__proto__'),
            protoIntact: Object.getPrototypeOf(input) === Object.prototype,
            polluted: ({}).polluted === undefined ? 'no' : 'yes',
        })",
        Some(input.clone()),
        Arc::new(FakeHost::default()),
        limits(),
    )
    .await
    .unwrap();
    assert_eq!(out["ownProto"], json!(true));
    assert_eq!(out["protoIntact"], json!(true));
    assert_eq!(out["polluted"], json!("no"));
    assert_eq!(out["echo"]["items"], input["items"]);
    assert_eq!(out["echo"]["__proto__"], json!({"polluted": true}));
    assert_eq!(out["echo"]["nothing"], json!(null));
    // Beyond 2^53 a JavaScript number rounds, as it would from JSON.parse.
    assert_eq!(out["echo"]["big"], json!(9_007_199_254_740_992_i64));
}

#[tokio::test]
async fn bad_records_name_their_index() {
    for (records, says) in [
        (
            "[{ id: 1 }, { id: 2, f: () => 1 }]",
            "records[1].f is a function",
        ),
        ("[{ id: 1, n: 10n }]", "records[0].n is a BigInt"),
        ("[{ id: 1, n: NaN }]", "records[0].n is NaN"),
        (
            "[{ id: 1, a: { b: [1, 2, Symbol('s')] } }, { id: 2 }]",
            "records[0].a.b[2] is a symbol",
        ),
        (
            "[{ id: 1, at: { toJSON() { throw new Error('no'); } } }]",
            "records[0].at.toJSON() failed",
        ),
        (
            "(() => { const a = { id: 1 }; a.self = a; return [a]; })()",
            "records[0]",
        ),
        ("'nope'", "records must be an array"),
    ] {
        let e = run_src(&format!(
            "export default async (nango) => {{ await nango.batchSave({records}, 'Issue'); }}"
        ))
        .await
        .unwrap_err();
        assert!(e.message.contains(says), "{records}: {e:?}");
    }
    let e = run_src(
        "export default async (nango) => { await nango.batchSave([{ id: 1 }], 'Unknown'); }",
    )
    .await
    .unwrap_err();
    assert!(e.message.contains("not declared"), "{e:?}");
}

fn page(items: Json, headers: Json) -> Result<Json, HostError> {
    Ok(json!({"status": 200, "headers": headers, "data": items}))
}

#[tokio::test]
async fn paginate_follows_cursors_links_and_offsets() {
    let collect = "export default async (nango, input) => {
        const seen = [];
        for await (const items of nango.paginate(input)) { seen.push(...items.map((i) => i.id)); }
        return seen;
    }";

    let host = Arc::new(FakeHost::default());
    host.pages.lock().unwrap().extend([
        page(
            json!({"items": [{"id": 1}, {"id": 2}], "next": "c2"}),
            json!({}),
        ),
        page(json!({"items": [{"id": 3}], "next": null}), json!({})),
    ]);
    let out = run_with(
        collect,
        Some(json!({"endpoint": "/issues", "paginate": {"type": "cursor", "cursor_path_in_response": "next",
            "cursor_name_in_request": "cursor", "response_path": "items", "limit": 2, "limit_name_in_request": "per_page"}})),
        host.clone(),
        limits(),
    )
    .await
    .unwrap();
    assert_eq!(out, json!([1, 2, 3]));
    let calls = host.calls.lock().unwrap().clone();
    assert_eq!(calls[0].1["params"], json!({"per_page": 2}));
    assert_eq!(calls[1].1["params"], json!({"per_page": 2, "cursor": "c2"}));

    let host = Arc::new(FakeHost::default());
    host.pages.lock().unwrap().extend([
        page(json!([{"id": "a"}]), json!({"link": "<https://api.example.com/issues?page=2>; rel=\"next\", <https://api.example.com/issues?page=9>; rel=\"last\""})),
        page(json!([{"id": "b"}]), json!({})),
    ]);
    let out = run_with(
        collect,
        Some(json!({"endpoint": "/issues", "params": {"state": "all"},
            "paginate": {"type": "link", "link_rel_in_response_header": "next"}})),
        host.clone(),
        limits(),
    )
    .await
    .unwrap();
    assert_eq!(out, json!(["a", "b"]));
    let calls = host.calls.lock().unwrap().clone();
    assert_eq!(
        calls[1].1["endpoint"],
        "https://api.example.com/issues?page=2"
    );
    // The link carries its own query string: the params are not sent again.
    assert_eq!(calls[1].1.get("params"), None);

    let host = Arc::new(FakeHost::default());
    host.pages.lock().unwrap().extend([
        page(json!({"rows": [{"id": 1}, {"id": 2}]}), json!({})),
        page(json!({"rows": [{"id": 3}]}), json!({})),
    ]);
    let out = run_with(
        collect,
        Some(json!({"endpoint": "/rows", "paginate": {"type": "offset", "offset_name_in_request": "offset",
            "response_path": "rows", "limit": 2, "limit_name_in_request": "limit"}})),
        host.clone(),
        limits(),
    )
    .await
    .unwrap();
    assert_eq!(out, json!([1, 2, 3]));
    let calls = host.calls.lock().unwrap().clone();
    // In the query as text, as Nango sends it.
    assert_eq!(calls[1].1["params"]["offset"], "2");

    let e = run_src(
        "export default async (nango) => { for await (const p of nango.paginate({ endpoint: '/x' })) {} }",
    )
    .await
    .unwrap_err();
    assert!(
        e.message
            .contains("There was no pagination configuration for this integration"),
        "{e:?}"
    );
}

#[tokio::test]
async fn input_and_output_round_trip_as_json() {
    let value = json!({"s": "héllo ✓", "i": 42, "neg": -7, "big": 9_007_199_254_740_000_i64, "f": 1.5,
                       "t": true, "n": null, "a": [1, "two", {"three": [3]}], "o": {"nested": {"deep": []}}});
    let out = run_with(
        "export default (nango, input) => input",
        Some(value.clone()),
        Arc::new(FakeHost::default()),
        limits(),
    )
    .await
    .unwrap();
    assert_eq!(out, value);
}

#[tokio::test]
async fn a_run_past_its_budget_gets_errors_naming_the_settings() {
    let tight = Limits {
        max_concurrent_calls: 2,
        max_log_bytes: 1000,
        ..limits()
    };
    let message = |r: Result<Json, ScriptError>| r.unwrap_err().message;
    let crowd = run_with(
        "export default (nango) => Promise.all([1, 2, 3].map(() => nango.getMetadata()))",
        None,
        Arc::new(FakeHost::default()),
        tight,
    )
    .await;
    let crowd = message(crowd);
    assert!(
        crowd.contains("at most 2") && crowd.contains("LASSO_SCRIPT_MAX_CONCURRENT_CALLS"),
        "{crowd}"
    );
    // Calls in turn never pass the cap.
    let ok = run_with(
        "export default async (nango) => { for (let i = 0; i < 5; i++) await nango.getMetadata(); return 'ok'; }",
        None,
        Arc::new(FakeHost::default()),
        tight,
    )
    .await;
    assert_eq!(ok.unwrap(), json!("ok"));

    let flood = run_with(
        "export default (nango) => { for (let i = 0; i < 20; i++) nango.log('x'.repeat(100)); }",
        None,
        Arc::new(FakeHost::default()),
        tight,
    )
    .await;
    let flood = message(flood);
    assert!(
        flood.contains("1000 bytes") && flood.contains("LASSO_SCRIPT_LOG_MB"),
        "{flood}"
    );

    // A batch whose host copy does not fit beside the heap is refused before it is written.
    let host = Arc::new(FakeHost::default());
    let big = run_with(
        "export default (nango) => nango.batchSave([{ id: '1', blob: 'x'.repeat(9 * 1024 * 1024) }], 'Blob')",
        None,
        host.clone(),
        limits(),
    )
    .await;
    let big = message(big);
    assert!(
        big.contains("memory limit of 16 MiB") && big.contains("LASSO_SCRIPT_MEMORY_MB"),
        "{big}"
    );
    assert!(host.batches.lock().unwrap().is_empty());
}

#[test]
fn host_reservations_and_the_heap_share_one_limit() {
    let memory = memory::Memory::new(1000);
    let mut held = memory.reserve(600).unwrap();
    assert!(memory.reserve(500).is_none());
    assert!(!held.grow(500));
    assert!(held.grow(400));
    assert_eq!(memory.used(), 1000);
    drop(held);
    assert_eq!(memory.used(), 0);
    assert!(memory.reserve(1000).is_some());
}
