//! The provider catalog, in Nango's `providers.yaml` format.
//!
//! A provider entry says how to authenticate with an external API (auth mode, OAuth URLs and
//! parameters, the fields a connection needs) and how to call it (`proxy`: base URL, headers,
//! rate-limit headers, pagination). Lasso ships a curated catalog (`shared/providers.yaml`) and a
//! deployment can load an extra file over it ([`Catalog::load_extra`]); Nango's published catalog
//! loads too.
//!
//! The fields Lasso acts on are typed; every other key is kept in `extra` so an entry can be
//! served back unchanged. Strings such as `https://${connectionConfig.subdomain}.zendesk.com`
//! stay templates here; [`interpolate`] fills them in when a connection is used.

mod catalog;
pub mod hosts;
mod interpolate;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

pub use catalog::Catalog;
pub use interpolate::interpolate;

/// Free-form request parameters (`authorization_params`, `token_params`, `refresh_params`).
/// Values are usually strings, but Nango's catalog also has booleans, numbers and nested
/// objects (for JSON token bodies), so they stay JSON values.
pub type Params = Map<String, Value>;

/// The logo Nango's clients show for a provider (Nango's image host, as its API answers).
pub fn logo_url(provider: &str) -> String {
    format!("https://app.nango.dev/images/template-logos/{provider}.svg")
}

/// One provider entry, after alias resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    pub display_name: String,
    pub auth_mode: AuthMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub authorization_params: Params,
    /// Placeholders in `authorization_url` replaced by connection config values (Nango:
    /// `authorization_url_replacements: {"${connectionConfig.x}": "..."}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorization_url_replacements: BTreeMap<String, String>,
    /// Name of the callback query parameter that carries the code, when not `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_code_param_in_callback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<TokenUrl>,
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub token_params: Params,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_url: Option<String>,
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub refresh_params: Params,
    /// Joins scopes in the authorization URL; Nango's default is a space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_separator: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_pkce: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_request_auth_method: Option<TokenRequestAuthMethod>,
    /// Where the client credentials go on the token request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_method: Option<AuthorizationMethod>,
    /// Encoding of the token request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_format: Option<BodyFormat>,
    /// Dotted path of the access token in a token response that does not use `access_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate_access_token_response_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_unit: Option<ExpiresInUnit>,
    /// Seconds before expiry at which a token counts as expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expiration_buffer: Option<u64>,
    /// Callback query parameters copied into the connection config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uri_metadata: Vec<String>,
    /// Token response fields copied into the connection config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_response_metadata: Vec<String>,

    /// Fields a connection must supply (subdomain, instance URL, ...), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connection_config: BTreeMap<String, FieldSchema>,
    /// Credential fields for non-OAuth modes (API key, username, ...), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, FieldSchema>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Proxy>,

    /// Lasso's own fields (`lasso:`), which Nango's format has no place for.
    #[serde(default, skip_serializing_if = "hosts::Extension::is_empty")]
    pub lasso: hosts::Extension,

    /// Every other key of the entry, unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Provider {
    /// The `connection_config` fields the entry marks `secret`: stored sealed and scrubbed
    /// from logs like credentials.
    pub fn secret_config_fields(&self) -> Vec<String> {
        self.connection_config
            .iter()
            .filter(|(_, schema)| schema.secret)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The token URL for this provider's auth mode.
    pub fn resolved_token_url(&self) -> Option<&str> {
        self.token_url.as_ref()?.for_mode(&self.auth_mode)
    }

    /// Scopes joined with the provider's separator (a space unless it says otherwise).
    pub fn join_scopes(&self, scopes: &[String]) -> String {
        scopes.join(self.scope_separator.as_deref().unwrap_or(" "))
    }
}

/// How connections to a provider authenticate. Every mode Nango's catalog uses has a variant;
/// a mode this build does not know loads as [`AuthMode::Other`] rather than failing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuthMode {
    OAuth1,
    OAuth2,
    /// OAuth2 client credentials (`OAUTH2_CC`).
    OAuth2Cc,
    Basic,
    ApiKey,
    App,
    AppStore,
    Custom,
    Tba,
    Jwt,
    Bill,
    TwoStep,
    Signature,
    AwsSigV4,
    None,
    McpOAuth2,
    McpOAuth2Generic,
    InstallPlugin,
    Other(String),
}

impl AuthMode {
    const NAMES: [(AuthMode, &'static str); 18] = [
        (AuthMode::OAuth1, "OAUTH1"),
        (AuthMode::OAuth2, "OAUTH2"),
        (AuthMode::OAuth2Cc, "OAUTH2_CC"),
        (AuthMode::Basic, "BASIC"),
        (AuthMode::ApiKey, "API_KEY"),
        (AuthMode::App, "APP"),
        (AuthMode::AppStore, "APP_STORE"),
        (AuthMode::Custom, "CUSTOM"),
        (AuthMode::Tba, "TBA"),
        (AuthMode::Jwt, "JWT"),
        (AuthMode::Bill, "BILL"),
        (AuthMode::TwoStep, "TWO_STEP"),
        (AuthMode::Signature, "SIGNATURE"),
        (AuthMode::AwsSigV4, "AWS_SIGV4"),
        (AuthMode::None, "NONE"),
        (AuthMode::McpOAuth2, "MCP_OAUTH2"),
        (AuthMode::McpOAuth2Generic, "MCP_OAUTH2_GENERIC"),
        (AuthMode::InstallPlugin, "INSTALL_PLUGIN"),
    ];

    /// Nango's spelling, e.g. `OAUTH2_CC`.
    pub fn as_str(&self) -> &str {
        match self {
            AuthMode::Other(name) => name,
            known => {
                Self::NAMES
                    .iter()
                    .find(|(mode, _)| mode == known)
                    .expect("every named variant is in NAMES")
                    .1
            }
        }
    }

    /// Parses Nango's spelling; unknown names become [`AuthMode::Other`].
    pub fn parse(name: &str) -> Self {
        Self::NAMES.iter().find(|(_, n)| *n == name).map_or_else(
            || AuthMode::Other(name.to_string()),
            |(mode, _)| mode.clone(),
        )
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AuthMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuthMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// `token_url`: one URL, or one per auth mode (Nango's `TokenUrlObject`, used by providers that
/// offer several modes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a URL, or a map from auth mode (OAUTH2, OAUTH2CC, APP, ...) to URL"
)]
pub enum TokenUrl {
    Single(String),
    PerMode(BTreeMap<String, String>),
}

impl TokenUrl {
    /// The URL for `mode`. Nango keys the object by mode but spells client credentials
    /// `OAUTH2CC`.
    pub fn for_mode(&self, mode: &AuthMode) -> Option<&str> {
        match self {
            TokenUrl::Single(url) => Some(url),
            TokenUrl::PerMode(urls) => {
                let key = match mode {
                    AuthMode::OAuth2Cc => "OAUTH2CC",
                    other => other.as_str(),
                };
                urls.get(key).map(String::as_str)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRequestAuthMethod {
    /// Client id and secret in an HTTP Basic `Authorization` header.
    Basic,
    Custom,
    PrivateKeyJwt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorizationMethod {
    Body,
    Header,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    Form,
    Json,
    Query,
    Xml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpiresInUnit {
    /// `expires_in` counts milliseconds instead of seconds.
    Milliseconds,
}

/// One field a connection supplies (Nango's `SimplifiedJSONSchema`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSchema {
    #[serde(rename = "type", default = "string_type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
    /// A regular expression the value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `hostname`, `uri`, `uuid` or `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
    #[serde(rename = "enum", default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    /// Filled in by Lasso (e.g. from the token response), not asked of the user.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<serde_json::Number>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn string_type() -> String {
    "string".to_string()
}

/// How to call the provider's API on a connection's behalf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proxy {
    /// May contain `${connectionConfig.x}` templates.
    pub base_url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Connection config values derived from templates, e.g. `{cloudId: ${connectionConfig.x}}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connection_config: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paginate: Option<Pagination>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decompress: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_headers_on_redirect: bool,
    /// A cheap call that checks credentials (API key and basic auth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Which response headers say when to retry a rate-limited call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Retry {
    /// Headers holding the time (epoch seconds) at which to retry.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub at: Vec<String>,
    /// Headers holding the seconds to wait before retrying.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub after: Vec<String>,
    /// Header holding the calls left; zero means wait for `at`/`after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<String>,
    /// Statuses to retry instead of the default 429 and 5xx, as Nango writes them: `403`,
    /// `5xx`, `500-502`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_code: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_body: Option<RetryInBody>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A retry time found in the response body (a regular expression on a dotted path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryInBody {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub strategy: RetryStrategy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryStrategy {
    At,
    After,
}

/// Nango's default pagination for the provider. A script's `paginate` call overrides fields, so
/// an entry may leave some out (Nango's own catalog does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Pagination {
    Cursor(CursorPagination),
    Link(LinkPagination),
    Offset(OffsetPagination),
}

impl Pagination {
    pub fn page(&self) -> &PageOptions {
        match self {
            Pagination::Cursor(p) => &p.page,
            Pagination::Link(p) => &p.page,
            Pagination::Offset(p) => &p.page,
        }
    }
}

/// The fields every pagination type has.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PageOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<PageLimit>,
    /// Dotted path of the records array in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_name_in_request: Option<String>,
    /// Send the paging parameters in the body instead of the query.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_body: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "expected a number or a string")]
pub enum PageLimit {
    Number(u64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorPagination {
    /// Dotted path of the next cursor in the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_path_in_response: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_name_in_request: Option<String>,
    #[serde(flatten)]
    pub page: PageOptions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkPagination {
    /// `rel` of the next-page link in the `Link` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_rel_in_response_header: Option<String>,
    /// Dotted path of the next-page URL in the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_path_in_response_body: Option<String>,
    #[serde(flatten)]
    pub page: PageOptions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffsetPagination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_name_in_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_start_value: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_calculation_method: Option<OffsetCalculation>,
    #[serde(flatten)]
    pub page: PageOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OffsetCalculation {
    PerPage,
    ByResponseSize,
}

/// A request that checks a connection's credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// `GET` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    pub endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url_override: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Accepts `x` or `[x, y]` (Nango allows both for retry headers).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(
        untagged,
        expecting = "expected a header name or a list of header names"
    )]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}
