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
            ..Limits::default()
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

/// A CommonJS bundle as the `nango` CLI deploys it (esbuild's output shape): `require` of zod,
/// the SDK and a Node module, `module.exports` with `__esModule` and a default export.
fn commonjs_bundle(source: &str) -> Bundle {
    Bundle {
        format: lasso_core::scripts::BUNDLE_FORMAT,
        entry: "fakehub/actions/cjs.cjs".into(),
        modules: BTreeMap::from([("fakehub/actions/cjs.cjs".to_string(), source.to_string())]),
        source_maps: BTreeMap::new(),
    }
}

async fn run_commonjs(source: &str, input: Json) -> Result<Json, ScriptError> {
    run(
        &commonjs_bundle(source),
        Some(input),
        RunInfo::default(),
        Arc::new(NoHost),
        Limits {
            memory_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(10),
            ..Limits::default()
        },
        CancellationToken::new(),
    )
    .await
}

const ESBUILD_PRELUDE: &str = r#""use strict";
var __defProp = Object.defineProperty;
var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
var __getOwnPropNames = Object.getOwnPropertyNames;
var __hasOwnProp = Object.prototype.hasOwnProperty;
var __getProtoOf = Object.getPrototypeOf;
var __create = Object.create;
var __export = (target, all) => { for (var name in all) __defProp(target, name, { get: all[name], enumerable: true }); };
var __copyProps = (to, from, except, desc) => {
  if (from && typeof from === "object" || typeof from === "function") {
    for (let key of __getOwnPropNames(from))
      if (!__hasOwnProp.call(to, key) && key !== except)
        __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
  }
  return to;
};
var __toESM = (mod, isNodeMode, target) => (target = mod != null ? __create(__getProtoOf(mod)) : {}, __copyProps(
  isNodeMode || !mod || !mod.__esModule ? __defProp(target, "default", { value: mod, enumerable: true }) : target, mod));
var __toCommonJS = (mod) => __copyProps(__defProp({}, "__esModule", { value: true }), mod);
"#;

#[tokio::test]
async fn commonjs_bundles_require_zod_the_sdk_and_node_modules() {
    let source = format!(
        r#"{ESBUILD_PRELUDE}
var cjs_exports = {{}};
__export(cjs_exports, {{ default: () => cjs_default }});
module.exports = __toCommonJS(cjs_exports);
var import_zod = require("zod");
var import_nango = require("nango");
var import_crypto = __toESM(require("crypto"), 1);
var Input = import_zod.z.object({{ subject: import_zod.z.string() }});
var action = {{
  type: "action",
  input: Input,
  exec: async (nango, input) => {{
    const parsed = Input.safeParse(input);
    if (!parsed.success) throw new import_nango.ActionError({{ message: "bad input" }});
    const hash = import_crypto.default.createHash("sha256").update(parsed.data.subject).digest("hex");
    let refused;
    try {{ require("fs"); }} catch (e) {{ refused = e.message; }}
    return {{ subject: parsed.data.subject, hash, refused, name: __filename }};
  }}
}};
var cjs_default = action;
"#
    );
    let out = run_commonjs(&source, json!({"subject": "hello"}))
        .await
        .unwrap();
    assert_eq!(out["subject"], "hello");
    assert_eq!(
        out["hash"],
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert!(
        out["refused"]
            .as_str()
            .unwrap()
            .contains("require(\"fs\") in fakehub/actions/cjs.cjs"),
        "{out}"
    );
    assert_eq!(out["name"], "fakehub/actions/cjs.cjs");

    let err = run_commonjs(&source, json!({"subject": 1}))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ScriptErrorKind::ActionError, "{err:?}");
}

#[tokio::test]
async fn timers_console_and_the_rest_of_what_scripts_use() {
    let out = eval(
        r#"import { randomUUID } from 'crypto';
        export default async function () {
            const order = [];
            const t = setTimeout(() => order.push('cancelled'), 1);
            clearTimeout(t);
            await new Promise((r) => setTimeout((a, b) => { order.push(a + b); r(); }, 5, 'x', 'y'));
            // Later than the cleared timer's deadline: had it not been cleared, it ran by now.
            await new Promise((r) => setTimeout(r, 20));
            const logs = ['log', 'info', 'warn', 'error', 'debug'].map((m) => typeof console[m]);
            return {
                order, logs,
                bytes: Buffer.byteLength('é'),
                binary: Buffer.from([0xff, 0x41]).toString('binary'),
                zero: Buffer.alloc(3).toString('hex'),
                filled: Buffer.alloc(5, 'ab').toString(),
                uuid: randomUUID().length,
                webcrypto: typeof crypto.randomUUID(),
            };
        }"#,
    )
    .await
    .unwrap();
    assert_eq!(out["order"], json!(["xy"]));
    assert_eq!(
        out["logs"],
        json!(["function", "function", "function", "function", "function"])
    );
    assert_eq!(out["bytes"], 2);
    assert_eq!(out["binary"], "\u{ff}A");
    assert_eq!(out["zero"], "000000");
    assert_eq!(out["filled"], "ababa");
    assert_eq!(out["uuid"], 36);
    assert_eq!(out["webcrypto"], "string");
}
