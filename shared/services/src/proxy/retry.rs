//! When to retry a proxied call and how long to wait first.
//!
//! Retryable: 429 and 5xx (or, when the catalog entry lists `proxy.retry.error_code`, the
//! statuses it names: `429`, `5xx`, `500-502`), the caller's `Retry-On` statuses, and any error
//! while the provider's `proxy.retry.remaining` header says `0`. The wait is the first of:
//! `Retry-After` (seconds or an HTTP date), the provider's `proxy.retry.after` headers (seconds),
//! its `proxy.retry.at` headers (a reset time: epoch seconds or milliseconds, or a date), a time
//! in the body (`proxy.retry.in_body`), else exponential backoff with jitter.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use crate::providers::{Retry, RetryInBody, RetryStrategy};

/// First backoff step; each retry doubles it, up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub fn retryable(
    status: StatusCode,
    headers: &HeaderMap,
    retry_on: &[u16],
    provider: Option<&Retry>,
) -> bool {
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    let code = status.as_u16();
    let by_status = match provider.map(|r| &r.error_code) {
        Some(rules) if !rules.is_empty() => rules.iter().any(|r| status_matches(code, r)),
        _ => code == 429 || status.is_server_error(),
    };
    let exhausted = provider
        .and_then(|r| r.remaining.as_deref())
        .and_then(|name| headers.get(name))
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"0");
    by_status || retry_on.contains(&code) || exhausted
}

/// Nango's status rules: `403`, `5xx`, `500-502`.
fn status_matches(status: u16, rule: &str) -> bool {
    let rule = rule.trim();
    if let Ok(exact) = rule.parse::<u16>() {
        return status == exact;
    }
    if let Some(class) = rule
        .strip_suffix("xx")
        .or_else(|| rule.strip_suffix("XX"))
        .and_then(|d| d.parse::<u16>().ok())
    {
        return status / 100 == class;
    }
    match rule
        .split_once('-')
        .map(|(a, b)| (a.parse::<u16>(), b.parse::<u16>()))
    {
        Some((Ok(from), Ok(to))) => (from..=to).contains(&status),
        _ => false,
    }
}

/// Whether the wait may come from the body (so it is worth reading).
pub fn wants_body(provider: Option<&Retry>) -> bool {
    provider.is_some_and(|r| r.in_body.is_some())
}

/// How long to wait before retry number `attempt + 1`.
pub fn wait(
    headers: &HeaderMap,
    body: Option<&Value>,
    provider: Option<&Retry>,
    attempt: u32,
    now: SystemTime,
) -> Duration {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = header(RETRY_AFTER.as_str()).and_then(|v| {
        parse_seconds(v).or_else(|| httpdate::parse_http_date(v).ok().map(|at| until(at, now)))
    });
    let provider_after = || {
        provider?
            .after
            .iter()
            .find_map(|name| header(name).and_then(parse_seconds))
    };
    let provider_at = || {
        provider?
            .at
            .iter()
            .find_map(|name| header(name).and_then(|v| parse_at(v, now)))
    };
    let in_body = || from_body(provider?.in_body.as_ref()?, body?, now);
    retry_after
        .or_else(provider_after)
        .or_else(provider_at)
        .or_else(in_body)
        .unwrap_or_else(|| backoff(attempt))
}

/// Exponential backoff with "equal jitter": half the step fixed, half random, so retries of
/// many callers spread out but never come back at once.
pub fn backoff(attempt: u32) -> Duration {
    let step = BASE_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    let half = step / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

/// Seconds to wait, as a header gives them (`120`, `1.5`).
fn parse_seconds(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The wait until a reset time: epoch seconds, epoch milliseconds, an HTTP date or RFC 3339.
/// A time already past gives nothing, so the next source decides.
fn parse_at(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    let at = if let Ok(n) = v.parse::<f64>() {
        // Epoch milliseconds are beyond 1e11; epoch seconds will not be until the year 5138.
        let secs = if n > 1e11 { n / 1000.0 } else { n };
        SystemTime::UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)?
    } else if let Ok(at) = httpdate::parse_http_date(v) {
        at
    } else {
        chrono::DateTime::parse_from_rfc3339(v).ok()?.into()
    };
    (at > now).then(|| until(at, now))
}

fn until(at: SystemTime, now: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or_default()
}

/// A retry time in an error body: the string at `path`, matched against `value` (a regular
/// expression, written `/.../` as in Nango's catalog) whose first group is the time.
fn from_body(rule: &RetryInBody, body: &Value, now: SystemTime) -> Option<Duration> {
    let text = rule
        .path
        .split('.')
        .try_fold(body, |v, key| v.get(key))?
        .as_str()?;
    let captured = match &rule.value {
        Some(pattern) => {
            let pattern = pattern
                .strip_prefix('/')
                .and_then(|p| p.rsplit_once('/'))
                .map_or(pattern.as_str(), |(p, _flags)| p);
            let re = regex_lite::Regex::new(pattern).ok()?;
            re.captures(text)?.get(1)?.as_str().trim().to_string()
        }
        None => text.trim().to_string(),
    };
    match rule.strategy {
        RetryStrategy::After => parse_seconds(&captured),
        RetryStrategy::At => parse_at(&captured, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn provider(v: Value) -> Retry {
        serde_json::from_value(v).unwrap()
    }

    const NOW: Duration = Duration::from_secs(1_700_000_000);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + NOW
    }

    #[test]
    fn which_statuses_retry() {
        let none = HeaderMap::new();
        let s = |c: u16| StatusCode::from_u16(c).unwrap();
        assert!(retryable(s(429), &none, &[], None));
        assert!(retryable(s(503), &none, &[], None));
        assert!(!retryable(s(400), &none, &[], None));
        assert!(!retryable(s(200), &none, &[200], None));
        assert!(retryable(s(409), &none, &[409], None));
        let listed = provider(json!({"error_code": ["403", "5xx", "420-422"]}));
        assert!(retryable(s(403), &none, &[], Some(&listed)));
        assert!(retryable(s(502), &none, &[], Some(&listed)));
        assert!(retryable(s(421), &none, &[], Some(&listed)));
        assert!(!retryable(s(429), &none, &[], Some(&listed)));
        let remaining = provider(json!({"remaining": "x-ratelimit-remaining"}));
        let zero = headers(&[("x-ratelimit-remaining", "0")]);
        assert!(retryable(s(403), &zero, &[], Some(&remaining)));
        assert!(!retryable(s(200), &zero, &[], Some(&remaining)));
    }

    #[test]
    fn waits_follow_the_headers() {
        let secs = |d: Duration| d.as_secs_f64();
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(secs(wait(&h, None, None, 0, now())), 7.0);
        let h = headers(&[("retry-after", "Tue, 14 Nov 2023 22:13:30 GMT")]);
        assert_eq!(secs(wait(&h, None, None, 0, now())), 10.0);

        let p = provider(json!({"at": ["x-reset"], "after": ["x-wait"]}));
        let h = headers(&[("x-wait", "2.5"), ("x-reset", "1700000030")]);
        assert_eq!(secs(wait(&h, None, Some(&p), 0, now())), 2.5);
        let h = headers(&[("x-reset", "1700000030")]);
        assert_eq!(secs(wait(&h, None, Some(&p), 0, now())), 30.0);
        let h = headers(&[("x-reset", "1700000004000")]);
        assert_eq!(secs(wait(&h, None, Some(&p), 0, now())), 4.0);
        // A reset time already past falls through to backoff.
        let h = headers(&[("x-reset", "1600000000")]);
        assert!(wait(&h, None, Some(&p), 0, now()) <= BASE_BACKOFF);
    }

    #[test]
    fn waits_can_come_from_the_body() {
        let p = provider(json!({"in_body": {
            "path": "error.message",
            "value": "/Retry after (.+)/",
            "strategy": "at"
        }}));
        let body = json!({"error": {"message": "User-rate limit exceeded. Retry after 2023-11-14T22:13:40.000Z"}});
        let d = wait(&HeaderMap::new(), Some(&body), Some(&p), 0, now());
        assert_eq!(d.as_secs(), 20);
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        for attempt in 0..20 {
            let step = BASE_BACKOFF
                .saturating_mul(1 << attempt.min(16))
                .min(MAX_BACKOFF);
            let d = backoff(attempt);
            assert!(d >= step / 2 && d <= step, "{attempt}: {d:?}");
        }
        assert!(backoff(30) <= MAX_BACKOFF);
    }
}
