//! The one outbound policy for requests made on a tenant's behalf (the proxy, token and refresh
//! calls, credential checks, outgoing webhooks, scripts' `uncontrolledFetch`): they never reach
//! the network Lasso runs in. Loopback, private, link-local (the instance metadata service),
//! unique-local, CGNAT, IPv4-mapped IPv6 and other special-purpose destinations are refused
//! unless the operator lists them as exceptions (`LASSO_OUTBOUND_ALLOW`).
//!
//! The check is on the address actually connected to: [`Client`] resolves names through
//! [`Resolver`], which drops refused addresses before the connector sees them, so a name that
//! resolves to a public address when validated and to `169.254.169.254` when used (DNS
//! rebinding) still cannot reach it. URLs with a literal IP skip name resolution in the
//! connector, so [`Client::request`] and every redirect check those before they are sent.
//!
//! A leaf module: it depends on nothing else in the crate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// A destination the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the outbound policy refuses `{host}`: {reason}; an operator can allow it with LASSO_OUTBOUND_ALLOW"
)]
pub struct Refused {
    /// The host as the URL names it.
    pub host: String,
    /// Why, e.g. `127.0.0.1 is a loopback address`.
    pub reason: String,
}

/// The outbound address policy: special-purpose addresses are refused unless one of `allow`
/// contains them; when `only` is not empty, so is every address outside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allow: Vec<IpNet>,
    only: Vec<IpNet>,
}

impl Policy {
    /// The production policy with the operator's exceptions.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow,
            only: Vec::new(),
        }
    }

    /// The policy confined to `only` (`LASSO_OUTBOUND_ONLY`; empty: not confined): any other
    /// address is refused, and so is any host name but `localhost`, unresolved, so a fuzzed or
    /// hostile URL cannot even make a DNS query leave the machine.
    pub fn confined_to(mut self, only: Vec<IpNet>) -> Self {
        self.only = only;
        self
    }

    /// The exceptions, for start-up logs.
    pub fn exceptions(&self) -> &[IpNet] {
        &self.allow
    }

    /// Whether the policy lets a request reach `ip`; the refusal says why not.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        let embedded = embedded_ipv4(ip).map(IpAddr::V4);
        let within = |nets: &[IpNet]| {
            nets.iter()
                .any(|net| net.contains(&ip) || embedded.is_some_and(|e| net.contains(&e)))
        };
        if !self.only.is_empty() && !within(&self.only) {
            return Err(format!("{ip} is outside LASSO_OUTBOUND_ONLY"));
        }
        let Some(kind) = special_purpose(ip) else {
            return Ok(());
        };
        if within(&self.allow) {
            return Ok(());
        }
        Err(format!("{ip} is {kind}"))
    }

    /// Whether a host name may be resolved at all: always, unless the policy is confined, when
    /// only `localhost` may.
    pub fn check_name(&self, name: &str) -> Result<(), String> {
        if self.only.is_empty() || name.eq_ignore_ascii_case("localhost") {
            Ok(())
        } else {
            Err("host names other than localhost are not resolved under LASSO_OUTBOUND_ONLY".into())
        }
    }

    /// Checks a URL before it is sent: an http(s) URL whose host, when it is a literal address,
    /// the policy permits. Names are checked when they are resolved ([`Resolver`]).
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        let refused = |reason: String| Refused {
            host: url.host_str().unwrap_or_default().to_string(),
            reason,
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refused(format!("`{}` is not http(s)", url.scheme())));
        }
        match url.host() {
            None => Err(refused("the URL has no host".into())),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)).map_err(refused),
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)).map_err(refused),
            Some(Host::Domain(name)) => self.check_name(name).map_err(refused),
        }
    }

    /// Checks a URL an operator or tenant stores for later (a webhook URL): its literal
    /// address now, and the addresses its name resolves to now (each is checked again when
    /// used). A name that does not resolve yet is accepted.
    pub async fn check_stored_url(&self, url: &Url) -> Result<(), Refused> {
        self.check_url(url)?;
        if let Some(Host::Domain(name)) = url.host()
            && let Ok(addrs) = tokio::net::lookup_host((name, 0)).await
        {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if !addrs.is_empty() && addrs.iter().all(|a| self.check_ip(a.ip()).is_err()) {
                let reason = self
                    .check_ip(addrs[0].ip())
                    .expect_err("every address is refused");
                return Err(Refused {
                    host: name.to_string(),
                    reason: format!("it resolves to {reason}"),
                });
            }
        }
        Ok(())
    }
}

/// What makes `ip` special-purpose (not a public unicast address), if anything.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "in 0.0.0.0/8 (this network)"),
        ([10, 0, 0, 0], 8, "a private address"),
        ([100, 64, 0, 0], 10, "a carrier-grade NAT address"),
        ([127, 0, 0, 0], 8, "a loopback address"),
        (
            [169, 254, 0, 0],
            16,
            "a link-local address (instance metadata lives here)",
        ),
        ([172, 16, 0, 0], 12, "a private address"),
        ([192, 0, 0, 0], 24, "an IETF protocol address"),
        ([192, 0, 2, 0], 24, "a documentation address"),
        ([192, 88, 99, 0], 24, "a 6to4 relay address"),
        ([192, 168, 0, 0], 16, "a private address"),
        ([198, 18, 0, 0], 15, "a benchmarking address"),
        ([198, 51, 100, 0], 24, "a documentation address"),
        ([203, 0, 113, 0], 24, "a documentation address"),
        ([224, 0, 0, 0], 4, "a multicast address"),
        ([240, 0, 0, 0], 4, "a reserved or broadcast address"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, kind)| *kind)
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("the unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if ip.to_ipv4_mapped().is_some() {
        return Some("an IPv4-mapped IPv6 address");
    }
    // ::a.b.c.d (deprecated IPv4-compatible) and the rest of ::/96.
    if s[..6].iter().all(|&x| x == 0) {
        return Some("an IPv4-compatible IPv6 address");
    }
    let prefixed = |net: [u16; 2], bits: u32| {
        let top = (u32::from(s[0]) << 16) | u32::from(s[1]);
        let want = (u32::from(net[0]) << 16) | u32::from(net[1]);
        let mask = u32::MAX << (32 - bits);
        top & mask == want & mask
    };
    let ranges: &[([u16; 2], u32, &str)] = &[
        ([0x0064, 0xff9b], 16, "a NAT64 address"),
        ([0x0100, 0], 16, "a discard-only address"),
        (
            [0x2001, 0],
            23,
            "an IETF protocol address (Teredo and others)",
        ),
        ([0x2001, 0x0db8], 32, "a documentation address"),
        ([0x2002, 0], 16, "a 6to4 address"),
        ([0xfc00, 0], 7, "a unique-local address"),
        ([0xfe80, 0], 10, "a link-local address"),
        ([0xfec0, 0], 10, "a site-local address"),
        ([0xff00, 0], 8, "a multicast address"),
    ];
    ranges
        .iter()
        .find(|(net, bits, _)| prefixed(*net, *bits))
        .map(|(_, _, kind)| *kind)
}

/// The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), so an exception
/// for `127.0.0.0/8` also covers `::ffff:127.0.0.1`.
fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = v6.to_ipv4_mapped() {
        Some(v4)
    } else if s[..6].iter().all(|&x| x == 0) || (s[0] == 0x0064 && s[1] == 0xff9b) {
        Some(low(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(low(s[1], s[2]))
    } else {
        None
    }
}

/// Resolves names with the system resolver and keeps only the addresses the policy permits;
/// a name with none left fails with [`Refused`]. Installed in every [`Client`].
#[derive(Debug, Clone)]
pub struct Resolver {
    policy: Arc<Policy>,
}

impl Resolver {
    pub fn new(policy: Arc<Policy>) -> Self {
        Self { policy }
    }

    /// The permitted addresses of `name` (port 0), or why there are none.
    pub async fn resolve_name(&self, name: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        self.policy.check_name(name).map_err(|reason| {
            ResolveError::Refused(Refused {
                host: name.to_string(),
                reason,
            })
        })?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, 0))
            .await
            .map_err(ResolveError::Lookup)?
            .collect();
        filter_addrs(&self.policy, name, addrs)
    }
}

/// Keeps the addresses of `name` that `policy` permits.
fn filter_addrs(
    policy: &Policy,
    name: &str,
    addrs: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let mut first_refusal = None;
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match policy.check_ip(a.ip()) {
            Ok(()) => true,
            Err(reason) => {
                first_refusal.get_or_insert(reason);
                false
            }
        })
        .collect();
    match (allowed.is_empty(), first_refusal) {
        (true, Some(reason)) => Err(ResolveError::Refused(Refused {
            host: name.to_string(),
            reason: format!("it resolves to {reason}"),
        })),
        _ => Ok(allowed),
    }
}

/// Why a name gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Refused(Refused),
    #[error("could not resolve the host: {0}")]
    Lookup(#[source] std::io::Error),
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this.resolve_name(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Which redirects a [`Client`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// None: the response is the redirect (token calls, credential checks, webhooks).
    None,
    /// Up to this many, while they stay on the first request's origin (the proxy).
    SameOrigin(usize),
    /// Up to this many, anywhere the policy permits (`uncontrolledFetch`).
    Any(usize),
}

/// How to build a [`Client`].
#[derive(Debug, Clone)]
pub struct Options {
    pub redirects: Redirects,
    pub connect_timeout: Duration,
    pub user_agent: String,
}

/// Failures building a [`Client`].
#[derive(Debug, thiserror::Error)]
#[error("building the outbound HTTP client: {0}")]
pub struct BuildError(#[source] reqwest::Error);

/// An HTTP client whose every request obeys a [`Policy`]: names through [`Resolver`], literal
/// addresses checked by [`Client::request`], each redirect checked before it is followed. No
/// system proxy is used (it would resolve names where the policy cannot see them).
#[derive(Debug, Clone)]
pub struct Client {
    inner: reqwest::Client,
    policy: Arc<Policy>,
}

impl Client {
    pub fn new(policy: Arc<Policy>, options: Options) -> Result<Self, BuildError> {
        let redirect_policy = policy.clone();
        let redirects = options.redirects;
        let redirect = match redirects {
            Redirects::None => reqwest::redirect::Policy::none(),
            Redirects::SameOrigin(max) | Redirects::Any(max) => {
                reqwest::redirect::Policy::custom(move |attempt| {
                    let same_origin = attempt
                        .previous()
                        .first()
                        .is_some_and(|first| first.origin() == attempt.url().origin());
                    if let Err(refused) = redirect_policy.check_url(attempt.url()) {
                        attempt.error(refused)
                    } else if matches!(redirects, Redirects::SameOrigin(_)) && !same_origin {
                        attempt.stop()
                    } else if attempt.previous().len() > max {
                        attempt.error("too many redirects")
                    } else {
                        attempt.follow()
                    }
                })
            }
        };
        let inner = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .user_agent(options.user_agent)
            .redirect(redirect)
            .no_proxy()
            .dns_resolver(Arc::new(Resolver::new(policy.clone())))
            .build()
            .map_err(BuildError)?;
        Ok(Self { inner, policy })
    }

    /// A request to `url`, once the policy permits its host (a literal address here; a name
    /// when it is resolved).
    pub fn request(
        &self,
        method: reqwest::Method,
        url: Url,
    ) -> Result<reqwest::RequestBuilder, Refused> {
        self.policy.check_url(&url)?;
        Ok(self.inner.request(method, url))
    }

    /// A POST to `url` (text), once it parses and the policy permits its host.
    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, Refused> {
        let parsed = Url::parse(url.trim()).map_err(|e| Refused {
            host: String::new(),
            reason: format!("not a valid URL: {e}"),
        })?;
        self.request(reqwest::Method::POST, parsed)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// The policy's refusal behind a failed request, if that is why it failed: reqwest wraps the
/// resolver's and the redirect check's errors.
pub fn refusal(error: &reqwest::Error) -> Option<&Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        if let Some(ResolveError::Refused(refused)) = e.downcast_ref::<ResolveError>() {
            return Some(refused);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn special_purpose_addresses_are_refused() {
        let policy = Policy::default();
        for refused in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(policy.check_ip(ip(refused)).is_err(), "{refused}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(policy.check_ip(ip(public)).is_ok(), "{public}");
        }
        let reason = policy.check_ip(ip("169.254.169.254")).unwrap_err();
        assert!(reason.contains("link-local"), "{reason}");
    }

    #[test]
    fn exceptions_allow_what_they_list_and_nothing_else() {
        let policy = Policy::new(nets(&["127.0.0.0/8", "::1/128", "10.1.0.0/16"]));
        for allowed in ["127.0.0.1", "::1", "10.1.2.3", "::ffff:127.0.0.1"] {
            assert!(policy.check_ip(ip(allowed)).is_ok(), "{allowed}");
        }
        for refused in ["10.2.0.1", "169.254.169.254", "192.168.0.1", "fd00::1"] {
            assert!(policy.check_ip(ip(refused)).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_confined_policy_refuses_everything_outside_it_and_every_name_but_localhost() {
        let policy = Policy::new(nets(&["127.0.0.0/8"])).confined_to(nets(&["127.0.0.0/8"]));
        for allowed in ["127.0.0.1", "127.3.2.1", "::ffff:127.0.0.1"] {
            assert!(policy.check_ip(ip(allowed)).is_ok(), "{allowed}");
        }
        for refused in [
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700::1111",
            "10.0.0.1",
            "::1",
        ] {
            let reason = policy.check_ip(ip(refused)).unwrap_err();
            assert!(
                reason.contains("LASSO_OUTBOUND_ONLY"),
                "{refused}: {reason}"
            );
        }
        assert!(policy.check_name("localhost").is_ok());
        for url in ["https://example.com/", "http://api.github.com/x"] {
            let e = policy.check_url(&Url::parse(url).unwrap()).unwrap_err();
            assert!(e.to_string().contains("LASSO_OUTBOUND_ONLY"), "{url}: {e}");
        }
        // Confinement does not lift the special-purpose refusals: loopback still needs
        // LASSO_OUTBOUND_ALLOW.
        let unallowed = Policy::default().confined_to(nets(&["127.0.0.0/8"]));
        assert!(unallowed.check_ip(ip("127.0.0.1")).is_err());
    }

    #[tokio::test]
    async fn a_confined_resolver_refuses_names_without_looking_them_up() {
        let policy = Policy::new(nets(&["127.0.0.0/8"])).confined_to(nets(&["127.0.0.0/8"]));
        let resolver = Resolver::new(Arc::new(policy));
        match resolver.resolve_name("example.com").await {
            Err(ResolveError::Refused(r)) => assert!(r.reason.contains("LASSO_OUTBOUND_ONLY")),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn literal_addresses_in_urls_are_checked_in_every_spelling() {
        let policy = Policy::default();
        for url in [
            "http://127.0.0.1:8080/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[fd00:ec2::254]/",
            "http://0/",
        ] {
            let e = policy.check_url(&Url::parse(url).unwrap()).unwrap_err();
            assert!(e.to_string().contains("LASSO_OUTBOUND_ALLOW"), "{url}: {e}");
        }
        assert!(
            policy
                .check_url(&Url::parse("file:///etc/passwd").unwrap())
                .is_err()
        );
        policy
            .check_url(&Url::parse("https://api.example.com/x").unwrap())
            .unwrap();
        policy
            .check_url(&Url::parse("https://8.8.8.8/").unwrap())
            .unwrap();
    }

    #[test]
    fn the_resolver_step_drops_refused_addresses() {
        let policy = Policy::default();
        let addr = |s: &str| SocketAddr::new(ip(s), 0);
        // A rebinding answer: only internal addresses, refused.
        let e = filter_addrs(
            &policy,
            "rebind.example",
            vec![addr("169.254.169.254"), addr("10.0.0.1")],
        )
        .unwrap_err();
        assert!(
            matches!(&e, ResolveError::Refused(r) if r.host == "rebind.example" && r.reason.contains("link-local")),
            "{e}"
        );
        // Mixed answers keep only the public addresses.
        let kept = filter_addrs(
            &policy,
            "mixed.example",
            vec![addr("127.0.0.1"), addr("8.8.8.8"), addr("::ffff:10.0.0.1")],
        )
        .unwrap();
        assert_eq!(kept, vec![addr("8.8.8.8")]);
        // With an exception, loopback stays.
        let dev = Policy::new(nets(&["127.0.0.0/8"]));
        let kept = filter_addrs(&dev, "localhost", vec![addr("127.0.0.1"), addr("::1")]).unwrap();
        assert_eq!(kept, vec![addr("127.0.0.1")]);
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_of_loopback() {
        let resolver = Resolver::new(Arc::new(Policy::default()));
        let e = resolver.resolve_name("localhost").await.unwrap_err();
        assert!(matches!(e, ResolveError::Refused(_)), "{e}");
        let dev = Resolver::new(Arc::new(Policy::new(nets(&["127.0.0.0/8", "::1/128"]))));
        assert!(!dev.resolve_name("localhost").await.unwrap().is_empty());
    }

    #[test]
    fn refusals_are_found_behind_reqwest_errors() {
        let refused = Refused {
            host: "h".into(),
            reason: "r".into(),
        };
        let wrapped: Box<dyn std::error::Error + Send + Sync> =
            Box::new(ResolveError::Refused(refused.clone()));
        assert!(matches!(
            wrapped.downcast_ref::<ResolveError>(),
            Some(ResolveError::Refused(r)) if *r == refused
        ));
    }
}
