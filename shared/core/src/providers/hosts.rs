//! Where a connection's values may send a request. A catalog URL such as
//! `https://${connectionConfig.hostname}/oauth/token` takes its whole host from a value the end
//! user typed (or a token response returned); without a rule, that user chooses where Lasso
//! sends the integration's client secret. Such a host must be under a domain the provider entry
//! declares (Lasso's `lasso.allowed_domains`) or one the integration allows
//! (`custom.allowed_hosts`). A template with a literal domain (`https://${x}.zendesk.com`)
//! keeps its host under that domain; a literal host stays that host.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::{Provider, interpolate};
use crate::{Error, Result};

/// The key of an integration's `custom` config listing the hosts a connection's values may name.
pub const ALLOWED_HOSTS_KEY: &str = "allowed_hosts";

/// Lasso's own fields of a provider entry, under `lasso:` (Nango's format has no place for
/// them; an entry without them loads, and then a host taken whole from a connection's values
/// must be allowed by the integration).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// Domains under which a host taken whole from a connection's values may be: the domain
    /// itself and its subdomains (`salesforce.com` covers `acme.my.salesforce.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_domains: Vec<String>,
    /// How the provider signs the webhooks it sends; Lasso verifies them with the
    /// integration's webhook secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_signature: Option<WebhookScheme>,
}

impl Extension {
    pub fn is_empty(&self) -> bool {
        self.allowed_domains.is_empty() && self.webhook_signature.is_none()
    }
}

/// A provider's way of signing webhooks (HMAC-SHA256 with the integration's webhook secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookScheme {
    /// `X-Hub-Signature-256: sha256=<hex of HMAC(body)>`.
    Github,
    /// `Stripe-Signature: t=<unix seconds>,v1=<hex of HMAC("<t>.<body>")>`, within 5 minutes.
    Stripe,
    /// `X-Slack-Signature: v0=<hex of HMAC("v0:<ts>:<body>")>` with
    /// `X-Slack-Request-Timestamp: <ts>`, within 5 minutes.
    Slack,
    /// `X-Shopify-Hmac-Sha256: <base64 of HMAC(body)>`.
    Shopify,
}

/// The hosts an integration lets connection values name, from its `custom.allowed_hosts` entry
/// (a host or a list of hosts; each covers its subdomains). Checked when the integration is
/// saved.
pub fn allowed_hosts(entry: Option<&Value>) -> Result<Vec<String>> {
    let field = |i: Option<usize>| match i {
        Some(i) => format!("custom.{ALLOWED_HOSTS_KEY}[{i}]"),
        None => format!("custom.{ALLOWED_HOSTS_KEY}"),
    };
    let parse = |i: Option<usize>, v: &Value| -> Result<String> {
        v.as_str()
            .map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|s| is_hostname(s))
            .ok_or_else(|| {
                Error::invalid(
                    field(i),
                    "expected a host name such as `acme.example.com` (it covers its subdomains)",
                )
            })
    };
    match entry {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| parse(Some(i), v))
            .collect(),
        Some(v) => Ok(vec![parse(None, v)?]),
    }
}

/// A DNS host name (letters, digits and hyphens in dot-separated labels), no port, no path.
pub fn is_hostname(value: &str) -> bool {
    let value = value.strip_suffix('.').unwrap_or(value);
    !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Whether `host` is `domain` or under it.
fn under(host: &str, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    host == domain || host.ends_with(&format!(".{domain}"))
}

/// What one `||` alternative of a URL template says about the host.
enum HostRule<'t> {
    /// The host is written out: the URL must use exactly it.
    Literal(String),
    /// A value fills the start of the host and the rest is written out (`.zendesk.com`).
    Suffix(String),
    /// The host comes whole from `${connectionConfig.<key>}` (or another value).
    Whole(Option<&'t str>),
}

fn host_rule(alternative: &str) -> HostRule<'_> {
    let alternative = alternative.trim();
    let Some(rest) = alternative
        .strip_prefix("https://")
        .or_else(|| alternative.strip_prefix("http://"))
    else {
        // `${connectionConfig.instance_url}/...`: the whole origin is a value.
        return HostRule::Whole(first_config_key(alternative));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once(':').map_or(authority, |(h, port)| {
        if port.contains('}') { authority } else { h }
    });
    if !host.contains("${") {
        // As the URL parser writes it (`[::ffff:127.0.0.1]` is `[::ffff:7f00:1]`).
        let normalized = Url::parse(&format!("http://{host}/"))
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| host.to_ascii_lowercase());
        return HostRule::Literal(normalized);
    }
    match host.rsplit('}').next().unwrap_or_default() {
        "" => HostRule::Whole(first_config_key(host)),
        suffix => HostRule::Suffix(suffix.to_ascii_lowercase()),
    }
}

fn first_config_key(text: &str) -> Option<&str> {
    let start = text.find("${connectionConfig.")? + "${connectionConfig.".len();
    let len = text[start..].find('}')?;
    Some(text[start..start + len].trim())
}

/// Checks that `url`, rendered from `template` (a catalog URL of provider `provider_name`),
/// stays where the template, the provider's declared domains and the integration's
/// `allowed_hosts` allow. `field` names the connection value a refusal blames, from its key.
pub fn check(
    provider_name: &str,
    provider: &Provider,
    allowed_hosts: &[String],
    template: &str,
    url: &Url,
    field: &dyn Fn(&str) -> String,
) -> Result<()> {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    if !matches!(url.scheme(), "http" | "https")
        || host.is_empty()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(Error::invalid(
            field("url"),
            format!(
                "provider `{provider_name}`: `{template}` does not give an http(s) URL for this connection"
            ),
        ));
    }
    let mut whole = None;
    for alternative in template.split("||") {
        let ok = match host_rule(alternative) {
            HostRule::Literal(literal) => host == literal,
            HostRule::Suffix(suffix) => host.ends_with(&suffix),
            HostRule::Whole(key) => {
                whole.get_or_insert(key);
                provider
                    .lasso
                    .allowed_domains
                    .iter()
                    .chain(allowed_hosts)
                    .any(|d| under(host, d))
            }
        };
        if ok {
            return Ok(());
        }
    }
    let declared = if provider.lasso.allowed_domains.is_empty() {
        "its catalog entry declares no domain (`lasso.allowed_domains`)".to_string()
    } else {
        format!(
            "it must be under {}",
            provider.lasso.allowed_domains.join(", ")
        )
    };
    Err(match whole {
        Some(key) => Error::invalid(
            field(key.unwrap_or("url")),
            format!(
                "`{host}` is not a host of provider `{provider_name}`: {declared}; to use it, list it \
                 in the integration's `custom.{ALLOWED_HOSTS_KEY}`"
            ),
        ),
        None => Error::invalid(
            field(first_config_key(template).unwrap_or("url")),
            format!(
                "the connection's values put a request to provider `{provider_name}` on another \
                 host than `{template}` allows"
            ),
        ),
    })
}

/// Every URL of `provider` the connection values `config` can fill in (authorization, token,
/// refresh and proxy base URLs; ones that need values not present yet are skipped), checked
/// with [`check`]. Run whenever values are accepted: from the end user, and from a token
/// response or callback (`instance_url`, `api_domain`, ...).
pub fn check_config(
    provider_name: &str,
    provider: &Provider,
    allowed_hosts: &[String],
    config: &Map<String, Value>,
    field: &dyn Fn(&str) -> String,
) -> Result<()> {
    let token_urls: Vec<&str> = match &provider.token_url {
        Some(super::TokenUrl::Single(url)) => vec![url.as_str()],
        Some(super::TokenUrl::PerMode(urls)) => urls.values().map(String::as_str).collect(),
        None => Vec::new(),
    };
    let templates = provider
        .authorization_url
        .as_deref()
        .into_iter()
        .chain(token_urls)
        .chain(provider.refresh_url.as_deref())
        .chain(provider.proxy.as_ref().map(|p| p.base_url.as_str()));
    for template in templates {
        let Ok(rendered) = interpolate(template, config, &Map::new()) else {
            continue;
        };
        let url = Url::parse(rendered.trim()).map_err(|_| {
            Error::invalid(
                field(first_config_key(template).unwrap_or("url")),
                format!("provider `{provider_name}`: `{template}` does not give a valid URL for this connection"),
            )
        })?;
        check(
            provider_name,
            provider,
            allowed_hosts,
            template,
            &url,
            field,
        )?;
    }
    Ok(())
}

/// Renders `template` with `config` and checks the result with [`check`]: the URL a token or
/// refresh request may be sent to.
pub fn render_checked(
    provider_name: &str,
    provider: &Provider,
    allowed_hosts: &[String],
    template: &str,
    config: &Map<String, Value>,
    credentials: &Map<String, Value>,
) -> Result<String> {
    let rendered = interpolate(template, config, credentials)?;
    let field = |k: &str| format!("connectionConfig.{k}");
    let url = Url::parse(rendered.trim()).map_err(|_| {
        Error::invalid(
            field(first_config_key(template).unwrap_or("url")),
            format!("provider `{provider_name}`: `{template}` does not give a valid URL for this connection"),
        )
    })?;
    check(
        provider_name,
        provider,
        allowed_hosts,
        template,
        &url,
        &field,
    )?;
    Ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;
    use serde_json::json;

    fn config(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect()
    }

    fn params(k: &str) -> String {
        format!("params[{k}]")
    }

    #[test]
    fn builtin_salesforce_and_auth0_stay_on_their_domains() {
        let catalog = Catalog::builtin();
        for name in ["salesforce", "salesforce-cc", "auth0-cc"] {
            let p = catalog.require(name).unwrap();
            assert!(
                !p.lasso.allowed_domains.is_empty(),
                "{name} declares domains"
            );
            let e = check_config(
                name,
                p,
                &[],
                &config(&[("hostname", "evil.example")]),
                &params,
            )
            .unwrap_err();
            assert!(
                matches!(&e, Error::Invalid { field, message }
                    if field == "params[hostname]" && message.contains("custom.allowed_hosts")),
                "{name}: {e}"
            );
            // The integration can allow a host of its own.
            check_config(
                name,
                p,
                &["login.acme.example".into()],
                &config(&[("hostname", "login.acme.example")]),
                &params,
            )
            .unwrap();
        }
        let sf = catalog.require("salesforce").unwrap();
        for good in ["acme.my.salesforce.com", "test.salesforce.com"] {
            check_config(
                "salesforce",
                sf,
                &[],
                &config(&[("hostname", good)]),
                &params,
            )
            .unwrap();
        }
        // Without a hostname the production login host is used.
        check_config("salesforce", sf, &[], &Map::new(), &params).unwrap();
        // A token response's instance_url is checked the same way.
        let e = check_config(
            "salesforce",
            sf,
            &[],
            &config(&[("instance_url", "https://169.254.169.254")]),
            &|k| format!("token response `{k}`"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("instance_url"), "{e}");
        check_config(
            "salesforce",
            sf,
            &[],
            &config(&[("instance_url", "https://acme.my.salesforce.com")]),
            &params,
        )
        .unwrap();
        let auth0 = catalog.require("auth0-cc").unwrap();
        check_config(
            "auth0-cc",
            auth0,
            &[],
            &config(&[("hostname", "acme.us.auth0.com"), ("audience", "x")]),
            &params,
        )
        .unwrap();
    }

    #[test]
    fn literal_domains_and_hosts_cannot_be_escaped() {
        let catalog = Catalog::builtin();
        let shop = catalog.require("shopify").unwrap();
        for evil in ["evil.com/", "evil.com#", "evil.com?", "x@evil.com"] {
            assert!(
                check_config(
                    "shopify",
                    shop,
                    &[],
                    &config(&[("subdomain", evil)]),
                    &params
                )
                .is_err(),
                "{evil}"
            );
        }
        check_config(
            "shopify",
            shop,
            &[],
            &config(&[("subdomain", "acme")]),
            &params,
        )
        .unwrap();
        // `allowed_hosts` does not widen a literal domain.
        assert!(
            check_config(
                "shopify",
                shop,
                &["evil.com".into()],
                &config(&[("subdomain", "evil.com/")]),
                &params
            )
            .is_err()
        );
    }

    #[test]
    fn domains_cover_subdomains_only_at_a_dot() {
        assert!(under("a.auth0.com", "auth0.com"));
        assert!(under("auth0.com", "auth0.com"));
        assert!(!under("evilauth0.com", "auth0.com"));
        assert!(!under("auth0.com.evil", "auth0.com"));
    }

    #[test]
    fn allowed_hosts_are_host_names() {
        assert_eq!(
            allowed_hosts(Some(&json!(["Login.Acme.com", "b.example"]))).unwrap(),
            vec!["login.acme.com", "b.example"]
        );
        assert_eq!(
            allowed_hosts(Some(&json!("one.example"))).unwrap(),
            vec!["one.example"]
        );
        let e = allowed_hosts(Some(&json!(["ok.example", "https://x/"]))).unwrap_err();
        assert!(
            matches!(e, Error::Invalid { ref field, .. } if field == "custom.allowed_hosts[1]"),
            "{e}"
        );
        assert!(allowed_hosts(None).unwrap().is_empty());
    }

    #[test]
    fn hostnames() {
        assert!(is_hostname("acme.us.auth0.com"));
        assert!(is_hostname("localhost"));
        for bad in [
            "",
            "a..b",
            "-a.com",
            "a.com/x",
            "a.com:443",
            "a b",
            "x@y",
            "a.com#",
        ] {
            assert!(!is_hostname(bad), "{bad}");
        }
    }
}
