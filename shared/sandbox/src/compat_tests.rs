//! Node compatibility and the provided packages, as scripts use them.

use serde_json::json;

use super::*;

struct NoHost;

#[async_trait]
impl Host for NoHost {
    async fn call(&self, op: &str, _args: Json) -> Result<Json, HostError> {
        Err(HostError::new(format!("{op}: no host in this test")))
    }
    async fn batch(&self, _: BatchOp, _: &str, _: Vec<Json>) -> Result<(), HostError> {
        Ok(())
    }
    fn log(&self, _: Level, _: &str) {}
}

async fn eval(source: &str) -> Result<Json, ScriptError> {
    run(
        &single_module(source),
        None,
        RunInfo::default(),
        Arc::new(NoHost),
        Limits {
            memory_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(10),
        },
        CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn zod_parses_and_converts_to_json_schema() {
    let out = eval(
        r#"import { z } from 'zod';
        const User = z.object({ id: z.string(), age: z.number().int().optional() });
        export default async function () {
            const bad = User.safeParse({ id: 1 });
            return { ok: User.parse({ id: 'a' }), bad: bad.error.issues[0].path, schema: z.toJSONSchema(User) };
        }"#,
    )
    .await
    .unwrap();
    assert_eq!(out["ok"], json!({"id": "a"}));
    assert_eq!(out["bad"], json!(["id"]));
    assert_eq!(out["schema"]["properties"]["id"], json!({"type": "string"}));
    assert_eq!(out["schema"]["required"], json!(["id"]));
}

#[tokio::test]
async fn url_search_params_and_buffer_behave_as_in_node() {
    let out = eval(
        r#"export default async function () {
            const u = new URL('/v1/items?a=1&b=two words', 'https://api.example.com:8443/base/');
            u.searchParams.append('c', 'x&y');
            u.hash = 'top';
            const q = new URLSearchParams({ q: "it's ~ (ok)", n: 2 });
            let invalid;
            try { new URL('not a url'); } catch (e) { invalid = e instanceof TypeError; }
            const b = Buffer.from('héllo', 'utf8');
            return {
                href: u.href, host: u.host, port: u.port, path: u.pathname, search: u.search,
                origin: u.origin, a: u.searchParams.get('a'), q: q.toString(), invalid,
                b64: b.toString('base64'), hex: Buffer.from('ff00', 'hex').toString('hex'),
                back: Buffer.from(b.toString('base64'), 'base64').toString(), len: b.length,
                isBuf: Buffer.isBuffer(b.subarray(1)), cat: Buffer.concat([Buffer.from('a'), Buffer.from('b')]).toString(),
                atob: atob(btoa('hi')), enc: Array.from(new TextEncoder().encode('é')),
                dec: new TextDecoder().decode(new Uint8Array([0xe2, 0x82, 0xac])),
                clone: structuredClone({ d: new Date(0), m: new Map([[1, [2]]]) }).m.get(1),
            };
        }"#,
    )
    .await
    .unwrap();
    assert_eq!(
        out["href"],
        "https://api.example.com:8443/v1/items?a=1&b=two+words&c=x%26y#top"
    );
    assert_eq!(out["host"], "api.example.com:8443");
    assert_eq!(out["port"], "8443");
    assert_eq!(out["path"], "/v1/items");
    assert_eq!(out["origin"], "https://api.example.com:8443");
    assert_eq!(out["a"], "1");
    assert_eq!(out["q"], "q=it%27s+%7E+%28ok%29&n=2");
    assert_eq!(out["invalid"], true);
    assert_eq!(out["b64"], "aMOpbGxv");
    assert_eq!(out["hex"], "ff00");
    assert_eq!(out["back"], "héllo");
    assert_eq!(out["len"], 6);
    assert_eq!(out["isBuf"], true);
    assert_eq!(out["cat"], "ab");
    assert_eq!(out["atob"], "hi");
    assert_eq!(out["enc"], json!([0xc3, 0xa9]));
    assert_eq!(out["dec"], "€");
    assert_eq!(out["clone"], json!([2]));
}

#[tokio::test]
async fn node_modules_crypto_url_buffer_querystring() {
    let out = eval(
        r#"import crypto, { createHmac, timingSafeEqual } from 'crypto';
        import { URLSearchParams as P } from 'node:url';
        import { Buffer as B } from 'buffer';
        import qs from 'querystring';
        export default async function () {
            let unequal;
            try { timingSafeEqual(B.from('a'), B.from('ab')); } catch (e) { unequal = e.code; }
            let unknown;
            try { crypto.createHash('whirlpool'); } catch (e) { unknown = e.message; }
            return {
                sha: crypto.createHash('sha256').update('abc').digest('hex'),
                mac: createHmac('sha256', 'Jefe').update('what do ya want ').update('for nothing?').digest('base64'),
                uuid: /^[0-9a-f-]{36}$/.test(crypto.randomUUID()),
                rand: crypto.randomBytes(16).length,
                same: timingSafeEqual(B.from('abc'), B.from('abc')),
                unequal, unknown,
                p: new P('x=1').get('x'),
                qs: qs.stringify({ a: [1, 2], b: 'c d' }),
                parsed: qs.parse('a=1&a=2&b=c+d'),
            };
        }"#,
    )
    .await
    .unwrap();
    assert_eq!(
        out["sha"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(out["mac"], "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
    assert_eq!(out["uuid"], true);
    assert_eq!(out["rand"], 16);
    assert_eq!(out["same"], true);
    assert_eq!(out["unequal"], "ERR_CRYPTO_TIMING_SAFE_EQUAL_LENGTH");
    assert!(out["unknown"].as_str().unwrap().contains("whirlpool"));
    assert_eq!(out["p"], "1");
    assert_eq!(out["qs"], "a=1&a=2&b=c%20d");
    assert_eq!(out["parsed"], json!({"a": ["1", "2"], "b": "c d"}));
}

#[tokio::test]
async fn an_unprovided_node_module_is_refused_by_name() {
    let e = eval("import fs from 'fs'; export default async function () {}")
        .await
        .unwrap_err();
    assert!(e.message.contains("fs"), "{e:?}");
}
