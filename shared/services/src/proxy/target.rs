//! Where a proxied call goes: the provider's base URL (or an override the integration allows)
//! with the caller's endpoint under it. Nothing here can move a call to another scheme, host or
//! port, or above the base URL's path.
//!
//! Error messages never repeat a rendered URL: templates may put credentials in it (Telegram's
//! base URL carries the bot token in its path).

use serde_json::Value;
use url::Url;

use super::ConnectionAuth;
use crate::connections::Connection;
use crate::integrations::Integration;
use crate::providers::{self, Provider};
use crate::{Error, Result};

/// The key of an integration's `custom` config listing the URLs `Base-Url-Override` may name.
pub const ALLOWED_OVERRIDES_KEY: &str = "allowed_base_url_overrides";

/// The URLs an integration lets `Base-Url-Override` name, from `custom.allowed_base_url_overrides`
/// (a URL or a list of URLs).
pub fn allowed_overrides(integration: &Integration) -> Result<Vec<Url>> {
    let field = |i: Option<usize>| match i {
        Some(i) => format!("custom.{ALLOWED_OVERRIDES_KEY}[{i}]"),
        None => format!("custom.{ALLOWED_OVERRIDES_KEY}"),
    };
    let parse = |i: Option<usize>, v: &Value| -> Result<Url> {
        v.as_str()
            .and_then(|s| Url::parse(s).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                Error::invalid(
                    field(i),
                    format!(
                        "integration `{}`: expected an http(s) URL such as `https://api.example.com`",
                        integration.unique_key
                    ),
                )
            })
    };
    match integration.custom.get(ALLOWED_OVERRIDES_KEY) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| parse(Some(i), v))
            .collect(),
        Some(v) => Ok(vec![parse(None, v)?]),
    }
}

/// The base URL of a call: the caller's override when given and allowed, else the catalog's
/// `proxy.base_url`, both filled in with the connection's config and credentials.
pub fn base_url(
    provider_name: &str,
    provider: &Provider,
    connection: &Connection,
    base_url_override: Option<&str>,
    allowed: &[Url],
) -> Result<Url> {
    let catalog = provider.proxy.as_ref().map(|proxy| {
        catalog_url(
            provider_name,
            "proxy.base_url",
            &proxy.base_url,
            connection.into(),
        )
    });
    let Some(raw) = base_url_override else {
        return catalog.unwrap_or_else(|| {
            Err(Error::invalid(
                "provider",
                format!(
                    "provider `{provider_name}` has no `proxy.base_url` in the catalog, so the proxy \
                     cannot call it; add one to the catalog entry"
                ),
            ))
        });
    };
    // With an override, the catalog's base only serves to recognise its own origin.
    let catalog = catalog.and_then(Result::ok);
    let url = render(raw, connection.into(), "Base-Url-Override")?;
    let same_origin = catalog.as_ref().is_some_and(|c| c.origin() == url.origin());
    if same_origin || allowed.iter().any(|a| under(a, &url)) {
        Ok(url)
    } else {
        Err(Error::invalid(
            "Base-Url-Override",
            format!(
                "`{raw}` is not allowed for integration `{}`: the proxy only calls the provider's \
                 base URL, or URLs listed in the integration's `custom.{ALLOWED_OVERRIDES_KEY}`",
                connection.provider_config_key
            ),
        ))
    }
}

/// A base URL of the catalog entry (`field`: `proxy.base_url`, or the verification request's
/// own), filled in; a connection config value must not move it to another host.
pub fn catalog_url(
    provider_name: &str,
    field: &str,
    template: &str,
    auth: ConnectionAuth<'_>,
) -> Result<Url> {
    let url = render(
        template,
        auth,
        &format!("provider `{provider_name}` {field}"),
    )?;
    check_host(template, &url, provider_name)?;
    Ok(url)
}

/// Fills in a base URL template and checks it is an http(s) URL without user info.
fn render(template: &str, auth: ConnectionAuth<'_>, what: &str) -> Result<Url> {
    let rendered = providers::interpolate(
        template,
        auth.connection_config,
        &auth.credentials.as_template_values(),
    )?;
    Url::parse(rendered.trim())
        .ok()
        .filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.username().is_empty()
                && u.password().is_none()
        })
        .ok_or_else(|| {
            Error::invalid(
                what,
                format!("`{template}` does not give an http(s) URL for this connection"),
            )
        })
}

/// A connection config value filled into the host (`https://${connectionConfig.subdomain}
/// .zendesk.com`) must not move the call to another domain (`evil.com/` or `evil.com#`): the
/// host must still end with the template's literal domain.
fn check_host(template: &str, url: &Url, provider_name: &str) -> Result<()> {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let suffixes: Option<Vec<String>> = template.split("||").map(literal_host_suffix).collect();
    match suffixes {
        Some(suffixes) if !suffixes.iter().any(|s| host.ends_with(s.as_str())) => {
            Err(Error::invalid(
                "connection_config",
                format!(
                    "the connection's config puts the call to provider `{provider_name}` on another \
                     host than its base URL `{template}` allows"
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The literal end of the host part of one template alternative (`.zendesk.com`), or `None`
/// when nothing constrains the host (it comes whole from the connection config).
fn literal_host_suffix(alternative: &str) -> Option<String> {
    let alternative = alternative.trim();
    let rest = alternative
        .strip_prefix("https://")
        .or_else(|| alternative.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if !authority.contains("${") {
        // A literal host, as the URL parser writes it (`[::FFFF:127.0.0.1]:80` has colons).
        return url::Url::parse(&format!("http://{authority}/"))
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    }
    let host = authority.split(':').next().unwrap_or_default();
    let suffix = host.rsplit('}').next().unwrap_or_default();
    (!suffix.is_empty()).then(|| suffix.to_ascii_lowercase())
}

/// Whether `url` is on `allowed`'s origin and under its path.
fn under(allowed: &Url, url: &Url) -> bool {
    allowed.origin() == url.origin() && path_within(allowed.path(), url.path())
}

/// Whether `path` is `base` or below it, segment by segment (`/api` covers `/api/x`, not
/// `/apix`).
fn path_within(base: &str, path: &str) -> bool {
    let base = base.trim_end_matches('/');
    base.is_empty()
        || path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `base` with the caller's `endpoint` (a path under it, with an optional query) appended.
///
/// An endpoint may also be an absolute URL under the base (a pagination link, as Nango allows);
/// any other absolute or network-path (`//host`) reference is refused, and `..` segments are
/// resolved and may not climb above the base path.
pub fn join(base: &Url, endpoint: &str) -> Result<Url> {
    let invalid = |message: &str| Error::invalid("endpoint", message.to_string());
    if endpoint.chars().any(char::is_control) {
        return Err(invalid("must not contain control characters"));
    }
    let endpoint = endpoint.split('#').next().unwrap_or_default();
    let (path, query) = match endpoint.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (endpoint, None),
    };
    let base_path = base.path().trim_end_matches('/');
    let (full_path, query) = if has_scheme(endpoint) {
        let absolute = Url::parse(endpoint)
            .map_err(|_| invalid("is neither a path nor a valid URL under the base URL"))?;
        if absolute.origin() != base.origin()
            || !absolute.username().is_empty()
            || absolute.password().is_some()
        {
            return Err(invalid(
                "must be a path on the provider's base URL, not a URL of another host",
            ));
        }
        (
            absolute.path().to_string(),
            absolute.query().map(str::to_string),
        )
    } else if ["//", "\\\\", "/\\", "\\/"]
        .iter()
        .any(|p| path.starts_with(p))
    {
        return Err(invalid(
            "must be a path on the provider's base URL; `//host` would name another host",
        ));
    } else {
        (
            format!("{base_path}/{}", path.trim_start_matches('/')),
            query.map(str::to_string),
        )
    };
    let mut url = base.clone();
    url.set_fragment(None);
    // `set_path` resolves `.` and `..` segments, percent-encoded ones too.
    url.set_path(&full_path);
    if !path_within(base.path(), url.path()) {
        return Err(invalid(
            "must stay under the provider's base URL; `..` may not climb above its path",
        ));
    }
    let query = [base.query(), query.as_deref()]
        .into_iter()
        .flatten()
        .filter(|q| !q.is_empty())
        .collect::<Vec<_>>()
        .join("&");
    url.set_query((!query.is_empty()).then_some(query.as_str()));
    Ok(url)
}

/// Whether `s` starts with `scheme://`.
fn has_scheme(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    rest.starts_with("//")
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn joins_paths_and_queries_under_the_base() {
        let base = url("https://api.example.com/v2");
        for (endpoint, want) in [
            ("/users", "https://api.example.com/v2/users"),
            (
                "users?limit=5&q=a%20b",
                "https://api.example.com/v2/users?limit=5&q=a%20b",
            ),
            ("", "https://api.example.com/v2/"),
            ("/a/./b/../c", "https://api.example.com/v2/a/c"),
            ("/@evil.com", "https://api.example.com/v2/@evil.com"),
            ("/x:batchGet", "https://api.example.com/v2/x:batchGet"),
            ("/users#frag", "https://api.example.com/v2/users"),
            (
                "https://api.example.com/v2/users?page=2",
                "https://api.example.com/v2/users?page=2",
            ),
        ] {
            assert_eq!(join(&base, endpoint).unwrap().as_str(), want, "{endpoint}");
        }
        let with_query = url("https://api.example.com/v1?version=3");
        assert_eq!(
            join(&with_query, "/items?x=1").unwrap().as_str(),
            "https://api.example.com/v1/items?version=3&x=1"
        );
        let root = url("https://api.example.com");
        assert_eq!(
            join(&root, "/../x").unwrap().as_str(),
            "https://api.example.com/x"
        );
    }

    #[test]
    fn refuses_endpoints_that_leave_the_base() {
        let base = url("https://api.example.com/v2");
        for endpoint in [
            "https://evil.com/x",
            "http://api.example.com/v2/x",
            "https://api.example.com:444/v2/x",
            "https://user@api.example.com/v2/x",
            "https://api.example.com/v3/x",
            "//evil.com/x",
            "\\\\evil.com/x",
            "/..",
            "/../v3",
            "/a/../../v3",
            "/%2e%2e/v3",
            "/.%2E/v3",
            "/x\n",
        ] {
            let e = join(&base, endpoint).unwrap_err();
            assert!(
                matches!(e, Error::Invalid { ref field, .. } if field == "endpoint"),
                "{endpoint}: {e}"
            );
        }
    }

    #[test]
    fn host_suffix_comes_from_the_template() {
        assert_eq!(
            literal_host_suffix("https://${connectionConfig.subdomain}.zendesk.com/api"),
            Some(".zendesk.com".into())
        );
        assert_eq!(
            literal_host_suffix("https://api.example.com:8443/x"),
            Some("api.example.com".into())
        );
        assert_eq!(
            literal_host_suffix("https://${connectionConfig.host}"),
            None
        );
        assert_eq!(
            literal_host_suffix("${connectionConfig.instance_url}"),
            None
        );
        let t = "https://${connectionConfig.subdomain}.zendesk.com";
        assert!(check_host(t, &url("https://acme.zendesk.com"), "zendesk").is_ok());
        for bad in [
            "https://evil.com/.zendesk.com",
            "https://evil.com#.zendesk.com",
        ] {
            assert!(check_host(t, &url(bad), "zendesk").is_err(), "{bad}");
        }
        let either = "https://${connectionConfig.host} || https://login.example.com";
        assert!(check_host(either, &url("https://anything.test"), "x").is_ok());
    }

    #[test]
    fn overrides_must_be_under_an_allowed_url() {
        let allowed = url("https://eu.example.com/api");
        assert!(under(&allowed, &url("https://eu.example.com/api")));
        assert!(under(&allowed, &url("https://eu.example.com/api/v2")));
        assert!(!under(&allowed, &url("https://eu.example.com/apix")));
        assert!(!under(&allowed, &url("http://eu.example.com/api")));
        assert!(!under(&allowed, &url("https://eu.example.com:8443/api")));
        assert!(under(
            &url("https://eu.example.com"),
            &url("https://eu.example.com/anything")
        ));
    }
}
