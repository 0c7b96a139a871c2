//! Node compatibility for what integration scripts use: the globals (`URL`, `URLSearchParams`,
//! `Buffer`, `TextEncoder`, `TextDecoder`, `atob`/`btoa`, `structuredClone`, `crypto`) that
//! `node.js` defines in every context, and the modules `crypto`, `url`, `buffer` and
//! `querystring` (also as `node:<name>`). What costs time in JavaScript (URL parsing, hashing,
//! UTF-8 and base64) is done here on the host; the rest is JavaScript.

use base64::Engine as _;
use rquickjs::{Ctx, Function, Object, TypedArray};

/// The compat globals, run in every context after the SDK prelude is set up.
pub const GLOBALS: &str = include_str!("node.js");
pub const GLOBALS_NAME: &str = "lasso:node-globals";

/// The Node modules Lasso provides, by name (without `node:`).
const MODULES: [(&str, &str); 4] = [
    ("crypto", "lasso:node/crypto"),
    ("url", "lasso:node/url"),
    ("buffer", "lasso:node/buffer"),
    ("querystring", "lasso:node/querystring"),
];

/// The names of the Node modules Lasso provides, for messages.
pub const PROVIDED: [&str; 4] = ["crypto", "url", "buffer", "querystring"];

/// Each module re-exports what `node.js` put in `globalThis.__lassoNode`.
const SOURCES: [(&str, &str); 4] = [
    (
        "lasso:node/crypto",
        "const m = globalThis.__lassoNode.crypto;\n\
         export const { createHash, createHmac, randomUUID, randomBytes, timingSafeEqual, getRandomValues, webcrypto } = m;\n\
         export default m;\n",
    ),
    (
        "lasso:node/url",
        "const m = globalThis.__lassoNode.url;\n\
         export const { URL, URLSearchParams } = m;\n\
         export default m;\n",
    ),
    (
        "lasso:node/buffer",
        "const m = globalThis.__lassoNode.buffer;\n\
         export const { Buffer, atob, btoa } = m;\n\
         export default m;\n",
    ),
    (
        "lasso:node/querystring",
        "const m = globalThis.__lassoNode.querystring;\n\
         export const { parse, stringify, escape, unescape, encode, decode } = m;\n\
         export default m;\n",
    ),
];

/// `crypto` / `node:crypto` -> the module's name in the sandbox.
pub fn resolve(specifier: &str) -> Option<String> {
    let name = specifier.strip_prefix("node:").unwrap_or(specifier);
    MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, module)| module.to_string())
}

pub fn source(module: &str) -> Option<&'static str> {
    SOURCES
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, source)| *source)
}

/// Node's built-in module names, so an import of one Lasso does not provide is named as such.
pub const NODE_BUILTINS: [&str; 38] = [
    "assert",
    "async_hooks",
    "buffer",
    "child_process",
    "cluster",
    "console",
    "constants",
    "crypto",
    "dgram",
    "diagnostics_channel",
    "dns",
    "domain",
    "events",
    "fs",
    "fs/promises",
    "http",
    "http2",
    "https",
    "inspector",
    "module",
    "net",
    "os",
    "path",
    "perf_hooks",
    "process",
    "punycode",
    "querystring",
    "readline",
    "stream",
    "string_decoder",
    "timers",
    "tls",
    "tty",
    "url",
    "util",
    "v8",
    "vm",
    "zlib",
];

/// Whether `specifier` names a Node built-in (`fs`, `node:fs`, `stream/promises`).
pub fn is_builtin(specifier: &str) -> bool {
    if specifier.starts_with("node:") {
        return true;
    }
    let first = specifier.split('/').next().unwrap_or(specifier);
    NODE_BUILTINS.contains(&specifier) || NODE_BUILTINS.contains(&first)
}

/// Base64 as Node's `Buffer.from(s, 'base64')` reads it: padding optional, trailing bits kept.
const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn bytes(array: &TypedArray<'_, u8>) -> Vec<u8> {
    // SAFETY: no JavaScript runs while the slice is alive; it is copied at once.
    unsafe { array.as_bytes() }
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

fn digest(algorithm: &str, data: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest as _;
    Some(match algorithm {
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "sha512" => sha2::Sha512::digest(data).to_vec(),
        "sha384" => sha2::Sha384::digest(data).to_vec(),
        "sha224" => sha2::Sha224::digest(data).to_vec(),
        "sha1" => sha1::Sha1::digest(data).to_vec(),
        "md5" => {
            use md5::Digest as _;
            md5::Md5::digest(data).to_vec()
        }
        _ => return None,
    })
}

fn hmac(algorithm: &str, key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    use hmac::{Hmac, Mac};
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut mac =
            <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
    Some(match algorithm {
        "sha256" => run::<Hmac<sha2::Sha256>>(key, data),
        "sha512" => run::<Hmac<sha2::Sha512>>(key, data),
        "sha384" => run::<Hmac<sha2::Sha384>>(key, data),
        "sha224" => run::<Hmac<sha2::Sha224>>(key, data),
        "sha1" => run::<Hmac<sha1::Sha1>>(key, data),
        _ => return None,
    })
}

/// A parsed URL's parts in the order `node.js` reads them.
fn parts(url: &url::Url) -> Vec<String> {
    let port = url.port().map(|p| p.to_string()).unwrap_or_default();
    let search = match url.query() {
        Some(q) if !q.is_empty() => format!("?{q}"),
        _ => String::new(),
    };
    let hash = match url.fragment() {
        Some(f) if !f.is_empty() => format!("#{f}"),
        _ => String::new(),
    };
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    };
    vec![
        url.as_str().to_string(),
        format!("{}:", url.scheme()),
        url.username().to_string(),
        url.password().unwrap_or("").to_string(),
        host,
        url.host_str().unwrap_or("").to_string(),
        port,
        url.path().to_string(),
        search,
        hash,
        url.origin().ascii_serialization(),
    ]
}

/// Sets one part of `href` the way the WHATWG setters do (an invalid value leaves it as it was).
fn set_part(href: &str, part: &str, value: &str) -> Option<Vec<String>> {
    let mut url = url::Url::parse(href).ok()?;
    let value = value.to_string();
    // The setters ignore what they cannot apply, as the URL standard's do.
    let _ = match part {
        "href" => {
            url = url::Url::parse(&value).ok()?;
            Ok(())
        }
        "protocol" => url.set_scheme(value.trim_end_matches(':')),
        "username" => url.set_username(&value),
        "password" => url.set_password(Some(&value).filter(|v| !v.is_empty()).map(|v| v.as_str())),
        "host" => {
            let (host, port) = match value.rsplit_once(':') {
                Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => {
                    (h.to_string(), p.parse().ok())
                }
                _ => (value.clone(), None),
            };
            url.set_host(Some(&host))
                .map_err(|_| ())
                .and_then(|()| url.set_port(port))
        }
        "hostname" => url.set_host(Some(&value)).map_err(|_| ()),
        "port" => url.set_port(if value.is_empty() {
            None
        } else {
            value.parse().ok()
        }),
        "pathname" => {
            url.set_path(&value);
            Ok(())
        }
        "search" => {
            let q = value.strip_prefix('?').unwrap_or(&value);
            url.set_query(Some(q).filter(|q| !q.is_empty()));
            Ok(())
        }
        "hash" => {
            let f = value.strip_prefix('#').unwrap_or(&value);
            url.set_fragment(Some(f).filter(|f| !f.is_empty()));
            Ok(())
        }
        _ => return None,
    };
    Some(parts(&url))
}

/// Puts the host side of the compat layer on `lasso` (`globalThis.__lasso`), for `node.js`.
pub fn install<'js>(ctx: &Ctx<'js>, lasso: &Object<'js>) -> rquickjs::Result<()> {
    lasso.set(
        "urlParse",
        Function::new(ctx.clone(), |input: String, base: Option<String>| {
            let parsed = match base {
                Some(base) => url::Url::parse(&base).and_then(|b| b.join(&input)),
                None => url::Url::parse(&input),
            };
            parsed.ok().map(|u| parts(&u))
        })?,
    )?;
    lasso.set(
        "urlSet",
        Function::new(ctx.clone(), |href: String, part: String, value: String| {
            set_part(&href, &part, &value)
        })?,
    )?;
    lasso.set(
        "utf8Encode",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, s: String| {
            TypedArray::<u8>::new(ctx, s.into_bytes())
        })?,
    )?;
    lasso.set(
        "utf8Decode",
        Function::new(ctx.clone(), |a: TypedArray<'js, u8>| {
            String::from_utf8_lossy(&bytes(&a)).into_owned()
        })?,
    )?;
    lasso.set(
        "base64Encode",
        Function::new(ctx.clone(), |a: TypedArray<'js, u8>, url_safe: bool| {
            let data = bytes(&a);
            if url_safe {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
            } else {
                base64::engine::general_purpose::STANDARD.encode(data)
            }
        })?,
    )?;
    lasso.set(
        "base64Decode",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, s: String| {
            // Node decodes both alphabets, ignores whitespace and stops at what is not base64.
            let cleaned: String = s
                .chars()
                .filter(|c| !c.is_whitespace())
                .map(|c| match c {
                    '-' => '+',
                    '_' => '/',
                    c => c,
                })
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/')
                .collect();
            let mut cleaned = cleaned;
            if cleaned.len() % 4 == 1 {
                // A lone trailing character carries no whole byte.
                cleaned.pop();
            }
            let decoded = LENIENT.decode(cleaned.as_bytes()).unwrap_or_default();
            TypedArray::<u8>::new(ctx, decoded)
        })?,
    )?;
    lasso.set(
        "hash",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, algorithm: String, data: TypedArray<'js, u8>| {
                digest(&algorithm.to_ascii_lowercase(), &bytes(&data))
                    .map(|d| TypedArray::<u8>::new(ctx, d))
                    .transpose()
            },
        )?,
    )?;
    lasso.set(
        "hmac",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             algorithm: String,
             key: TypedArray<'js, u8>,
             data: TypedArray<'js, u8>| {
                hmac(&algorithm.to_ascii_lowercase(), &bytes(&key), &bytes(&data))
                    .map(|d| TypedArray::<u8>::new(ctx, d))
                    .transpose()
            },
        )?,
    )?;
    lasso.set(
        "randomBytes",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, n: usize| {
            let mut data = vec![0u8; n.min(1 << 20)];
            rand::fill(&mut data[..]);
            TypedArray::<u8>::new(ctx, data)
        })?,
    )?;
    lasso.set(
        "randomUUID",
        Function::new(ctx.clone(), || uuid::Uuid::new_v4().to_string())?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_recognised_with_and_without_the_prefix() {
        assert!(is_builtin("fs") && is_builtin("node:fs") && is_builtin("fs/promises"));
        assert!(!is_builtin("soap"));
        assert_eq!(resolve("node:crypto").as_deref(), Some("lasso:node/crypto"));
        assert!(resolve("fs").is_none());
    }

    #[test]
    fn url_setters_follow_the_standard() {
        let p = set_part("https://a.example/x?y=1#z", "search", "?q=2").unwrap();
        assert_eq!(p[0], "https://a.example/x?q=2#z");
        let p = set_part("https://a.example/x", "port", "8443").unwrap();
        assert_eq!(p[0], "https://a.example:8443/x");
    }

    #[test]
    fn hmac_and_digest_match_known_vectors() {
        // RFC 4231 test case 2.
        let mac = hmac("sha256", b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(digest("md5", b"").unwrap()),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }
}
