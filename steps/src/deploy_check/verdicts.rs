//! The production settings zdd refuses by default, judged from what Django itself says its settings are (read
//! after `django.setup()` with the release's Python and the plan's env file, never from the settings file's
//! text): `DEBUG` on, a server name `ALLOWED_HOSTS` does not allow, and behind an https origin, no
//! `SECURE_PROXY_SSL_HEADER` or a `CSRF_TRUSTED_ORIGINS` without that origin. Each verdict has a zdd code, which
//! the step's `allow` may name like a Django check id.

use serde::Deserialize;
use zdd_engine::diag::Code;

/// Run with the release's Python and Django's environment (`python -c SCRIPT <origin> <server name>...`):
/// prints one marked line of JSON. Only verdicts and the Django version leave the process: no setting's value.
pub const SCRIPT: &str = r#"
import json, sys
import django
django.setup()
from django.conf import settings
from django.http.request import split_domain_port, validate_host

origin, names = sys.argv[1], sys.argv[2:]

def host_allowed(name):
    domain, _ = split_domain_port(name)
    return bool(domain) and validate_host(domain, list(settings.ALLOWED_HOSTS))

def origin_trusted(origin):
    # Django's own test (CsrfViewMiddleware._origin_verified), for an Origin header on another host than the
    # request's; before Django 4.0 CSRF_TRUSTED_ORIGINS held hosts without a scheme: not judged (None).
    from urllib.parse import urlsplit
    from django.middleware.csrf import CsrfViewMiddleware
    from django.utils.http import is_same_domain
    middleware = CsrfViewMiddleware(lambda request: None)
    if not origin or not hasattr(middleware, "allowed_origins_exact"):
        return None
    if origin in middleware.allowed_origins_exact:
        return True
    parsed = urlsplit(origin)
    return any(is_same_domain(parsed.netloc, host)
               for host in middleware.allowed_origin_subdomains.get(parsed.scheme, ()))

print("ZDD-DEPLOY-SETTINGS " + json.dumps({
    "django": django.get_version(),
    "debug": bool(settings.DEBUG),
    "hosts": {name: host_allowed(name) for name in names},
    "proxy_ssl_header": bool(getattr(settings, "SECURE_PROXY_SSL_HEADER", None)),
    "csrf_origin_trusted": origin_trusted(origin),
}))
"#;

const MARKER: &str = "ZDD-DEPLOY-SETTINGS ";

/// What the script found.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Found {
    pub django: String,
    pub debug: bool,
    /// Each server name, and whether `ALLOWED_HOSTS` allows it (Django's `validate_host`).
    pub hosts: std::collections::BTreeMap<String, bool>,
    pub proxy_ssl_header: bool,
    /// Whether `CSRF_TRUSTED_ORIGINS` trusts the origin; `None`: no origin given, or Django before 4.0.
    pub csrf_origin_trusted: Option<bool>,
}

/// The script's marked line, if it printed one.
pub fn parse(stdout: &str) -> Option<Result<Found, String>> {
    let line = stdout.lines().rev().find_map(|l| l.strip_prefix(MARKER))?;
    Some(serde_json::from_str(line).map_err(|e| e.to_string()))
}

/// A refused setting: its code (what `allow` names to let it through), what is wrong, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
    pub help: String,
}

/// The codes of the verdicts, which `allow` accepts besides Django's check ids.
pub const CODES: &[Code] = &[
    Code::DeployCheckDebug,
    Code::DeployCheckAllowedHosts,
    Code::DeployCheckProxySslHeader,
    Code::DeployCheckCsrfOrigin,
];

/// What the step checks: the settings module (for the messages), the server names, the public origin.
pub struct Expect<'a> {
    pub settings: &'a str,
    pub server_names: &'a [String],
    /// `https://shop.example.com`; the TLS verdicts apply only to an https origin.
    pub origin: Option<&'a str>,
}

/// Every refused setting in `found`, those `allow` names left out.
pub fn refusals(found: &Found, expect: &Expect<'_>, allow: &[String]) -> Vec<Refusal> {
    let settings = expect.settings;
    let mut out = Vec::new();
    if found.debug {
        out.push(Refusal {
            code: Code::DeployCheckDebug,
            message: format!(
                "DEBUG is True in {settings}: every error page would show visitors the traceback, the settings and \
                 the SQL"
            ),
            help: "set DEBUG = False in the settings (or the env file's variable, if the settings read DEBUG from \
                   the environment)"
                .to_owned(),
        });
    }
    for name in expect.server_names {
        if found.hosts.get(name) == Some(&false) {
            out.push(Refusal {
                code: Code::DeployCheckAllowedHosts,
                message: format!(
                    "ALLOWED_HOSTS in {settings} does not allow `{name}` (the step's server-name): Django would answer \
                     400 Bad Request to every request for it"
                ),
                help: format!("add \"{name}\" to ALLOWED_HOSTS (or \".{name}\" for its subdomains too)"),
            });
        }
    }
    if let Some(origin) = expect.origin.filter(|o| o.starts_with("https://")) {
        if !found.proxy_ssl_header {
            out.push(Refusal {
                code: Code::DeployCheckProxySslHeader,
                message: format!(
                    "SECURE_PROXY_SSL_HEADER is not set in {settings}, but the site's origin is {origin}: TLS ends at \
                     the proxy, so Django sees plain HTTP (request.is_secure() is False: http:// absolute URLs, a \
                     redirect loop with SECURE_SSL_REDIRECT, secure cookies and CSRF's origin check fail)"
                ),
                help: "set SECURE_PROXY_SSL_HEADER = (\"HTTP_X_FORWARDED_PROTO\", \"https\"), with the proxy setting \
                       X-Forwarded-Proto (zdd's Nginx site does)"
                    .to_owned(),
            });
        }
        if found.csrf_origin_trusted == Some(false) {
            out.push(Refusal {
                code: Code::DeployCheckCsrfOrigin,
                message: format!(
                    "CSRF_TRUSTED_ORIGINS in {settings} does not trust {origin}: since Django 4.0 it lists origins \
                     with their scheme, and a form posted from {origin} would be refused (403) whenever Django does \
                     not see the request as that same origin"
                ),
                help: format!("add \"{origin}\" to CSRF_TRUSTED_ORIGINS"),
            });
        }
    }
    out.retain(|r| !allow.iter().any(|a| a == r.code.as_str() || a == r.code.name()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(debug: bool, allowed: bool, header: bool, csrf: Option<bool>) -> Found {
        Found {
            django: "5.2.19".into(),
            debug,
            hosts: [("shop.example.com".to_owned(), allowed)].into(),
            proxy_ssl_header: header,
            csrf_origin_trusted: csrf,
        }
    }

    fn codes(found: &Found, origin: Option<&str>, allow: &[&str]) -> Vec<Code> {
        let names = ["shop.example.com".to_owned()];
        let expect = Expect { settings: "shop.settings", server_names: &names, origin };
        let allow: Vec<String> = allow.iter().map(|a| (*a).to_owned()).collect();
        refusals(found, &expect, &allow).iter().map(|r| r.code).collect()
    }

    #[test]
    fn production_settings_pass() {
        let ok = found(false, true, true, Some(true));
        assert!(codes(&ok, Some("https://shop.example.com"), &[]).is_empty());
    }

    #[test]
    fn debug_and_a_missing_host_are_refused_with_the_setting_named() {
        let names = ["shop.example.com".to_owned()];
        let expect = Expect { settings: "shop.settings", server_names: &names, origin: None };
        let refused = refusals(&found(true, false, false, None), &expect, &[]);
        assert_eq!(
            refused.iter().map(|r| r.code).collect::<Vec<_>>(),
            [Code::DeployCheckDebug, Code::DeployCheckAllowedHosts]
        );
        assert!(refused[0].message.contains("DEBUG is True in shop.settings"), "{}", refused[0].message);
        assert!(refused[0].help.contains("DEBUG = False"));
        assert!(refused[1].help.contains("add \"shop.example.com\" to ALLOWED_HOSTS"));
    }

    #[test]
    fn tls_settings_are_judged_only_behind_an_https_origin() {
        let plain = found(false, true, false, Some(false));
        assert!(codes(&plain, Some("http://shop.example.com"), &[]).is_empty());
        assert!(codes(&plain, None, &[]).is_empty());
        assert_eq!(
            codes(&plain, Some("https://shop.example.com"), &[]),
            [Code::DeployCheckProxySslHeader, Code::DeployCheckCsrfOrigin]
        );
        // Django before 4.0 (no scheme in CSRF_TRUSTED_ORIGINS): not judged.
        assert_eq!(
            codes(&found(false, true, false, None), Some("https://shop.example.com"), &[]),
            [Code::DeployCheckProxySslHeader]
        );
    }

    #[test]
    fn allow_lets_a_verdict_through_by_its_code() {
        let plain = found(false, true, true, Some(false));
        let origin = Some("https://shop.example.com");
        assert!(codes(&plain, origin, &["zdd::deploy-check-csrf-origin"]).is_empty());
        assert!(codes(&plain, origin, &["deploy-check-csrf-origin"]).is_empty());
    }

    #[test]
    fn reads_the_scripts_line() {
        let out = "noise\nZDD-DEPLOY-SETTINGS {\"django\": \"5.2.19\", \"debug\": true, \"hosts\": {\"a\": false}, \
                   \"proxy_ssl_header\": false, \"csrf_origin_trusted\": null}\n";
        let found = parse(out).unwrap().unwrap();
        assert!(found.debug);
        assert_eq!(found.hosts.get("a"), Some(&false));
        assert!(parse("Traceback").is_none());
        assert!(parse("ZDD-DEPLOY-SETTINGS {").unwrap().is_err());
    }
}
