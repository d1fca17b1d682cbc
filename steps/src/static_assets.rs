//! Which static asset a page references: the page parsed as HTML (html5ever, through `scraper`), its `href` and
//! `src` attributes resolved against the page's URL the way a browser resolves them, and the first one under the
//! project's effective `STATIC_URL` picked. Owned here so the smoke check reads pages like a browser does:
//! unquoted and single-quoted attributes, any attribute case, absolute URLs of the site itself, and a
//! `STATIC_URL` on another origin (a CDN).

use scraper::{ElementRef, Html};
use url::Url;

/// The first static asset a page references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asset {
    /// On the page's own site: the path (and query) to fetch through the proxy.
    Local(String),
    /// On another origin (`STATIC_URL` is a CDN's URL): zdd does not fetch it.
    Remote(String),
}

/// The first `href` or `src` in `html` that lies under `static_url`, with `page` the URL the page was fetched
/// as (its host is the one the site answers for). `static_url` is Django's effective `STATIC_URL`: a path
/// (`/static/`), or an absolute URL (`https://cdn.example.com/static/`).
pub fn first_asset(html: &str, page: &Url, static_url: &str) -> Option<Asset> {
    let base = static_base(page, static_url)?;
    let document = Html::parse_document(html);
    document
        .root_element()
        .descendants()
        .filter_map(ElementRef::wrap)
        .flat_map(|element| ["href", "src"].into_iter().filter_map(move |name| element.value().attr(name)))
        .filter_map(|value| page.join(value.trim()).ok())
        .find(|url| under(url, &base))
        .map(|url| {
            if same_site(&url, page) {
                let mut path = url.path().to_owned();
                if let Some(query) = url.query() {
                    path.push('?');
                    path.push_str(query);
                }
                Asset::Local(path)
            } else {
                Asset::Remote(url.to_string())
            }
        })
}

/// `STATIC_URL` as an absolute URL. Django adds the script prefix to a relative `STATIC_URL` (`static/` is
/// served at `/static/`), so a relative one is taken from the site's root, not from the page.
fn static_base(page: &Url, static_url: &str) -> Option<Url> {
    let text = static_url.trim();
    let rooted = if text.contains("://") || text.starts_with('/') { text.to_owned() } else { format!("/{text}") };
    let mut base = page.join(&rooted).ok()?;
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    Some(base)
}

fn under(url: &Url, base: &Url) -> bool {
    same_site(url, base) && url.path().starts_with(base.path())
}

/// Same host and port. The scheme is not compared: a site behind a TLS terminator links `https://` URLs of
/// itself while zdd reaches it over plain HTTP.
fn same_site(a: &Url, b: &Url) -> bool {
    a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase) && a.port() == b.port()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Url {
        Url::parse("http://shop.example.com/").unwrap()
    }

    #[allow(clippy::unnecessary_wraps)] // Compared with `first_asset`'s answer.
    fn local(path: &str) -> Option<Asset> {
        Some(Asset::Local(path.to_owned()))
    }

    #[test]
    fn double_quoted_attributes() {
        let html = r#"<link rel="icon" href="/favicon.ico"><link href="/static/css/site.3f2a.css" rel="stylesheet">"#;
        assert_eq!(first_asset(html, &page(), "/static/"), local("/static/css/site.3f2a.css"));
    }

    #[test]
    fn unquoted_attributes() {
        let html = "<!doctype html><html><head><link rel=stylesheet href=/static/site.1a2b.css></head></html>";
        assert_eq!(first_asset(html, &page(), "/static/"), local("/static/site.1a2b.css"));
    }

    #[test]
    fn single_quoted_attributes() {
        assert_eq!(first_asset("<script src='/static/app.js'></script>", &page(), "/static/"), local("/static/app.js"));
    }

    #[test]
    fn attribute_and_tag_names_in_any_case() {
        let html = r#"<LINK REL=stylesheet HREF="/static/Site.css"><SCRIPT SRC=/static/a.js></SCRIPT>"#;
        assert_eq!(first_asset(html, &page(), "/static/"), local("/static/Site.css"));
    }

    #[test]
    fn script_src_and_img_src() {
        let html = "<p>no link</p><script src=/static/app.9f.js></script><img src=/static/logo.png>";
        assert_eq!(first_asset(html, &page(), "/static/"), local("/static/app.9f.js"));
    }

    #[test]
    fn the_first_in_document_order() {
        let html = "<script src=/static/first.js></script><link href=/static/second.css rel=stylesheet>";
        assert_eq!(first_asset(html, &page(), "/static/"), local("/static/first.js"));
    }

    #[test]
    fn another_static_url() {
        let html = r#"<link href="/static/not-ours.css" rel=stylesheet><link href="/assets/site.css" rel=stylesheet>"#;
        assert_eq!(first_asset(html, &page(), "/assets/"), local("/assets/site.css"));
        // Django serves a relative STATIC_URL from the site's root.
        assert_eq!(first_asset(html, &page(), "assets/"), local("/assets/site.css"));
    }

    #[test]
    fn relative_references_resolve_against_the_page() {
        let page = Url::parse("http://shop.example.com/static/docs/").unwrap();
        assert_eq!(first_asset("<img src=logo.png>", &page, "/static/"), local("/static/docs/logo.png"));
    }

    #[test]
    fn absolute_urls_of_the_site_itself_are_fetched_through_the_proxy() {
        let html = r#"<link rel=stylesheet href="https://shop.example.com/static/site.css?v=2">"#;
        assert_eq!(first_asset(html, &page(), "/static/"), local("/static/site.css?v=2"));
    }

    #[test]
    fn other_origins_are_not_the_sites_static_files() {
        let html = r#"<script src="https://cdn.jsdelivr.net/static/htmx.js"></script><link href=/static/s.css rel=stylesheet>"#;
        assert_eq!(first_asset(html, &page(), "/static/"), local("/static/s.css"));
    }

    #[test]
    fn a_cdn_static_url_is_recognised_but_not_local() {
        let html = r#"<link href=/static/old.css rel=stylesheet><link rel=stylesheet href="https://cdn.example.net/s/site.css">"#;
        assert_eq!(
            first_asset(html, &page(), "https://cdn.example.net/s/"),
            Some(Asset::Remote("https://cdn.example.net/s/site.css".to_owned()))
        );
    }

    #[test]
    fn no_asset() {
        assert_eq!(first_asset("<p>none</p><a href=/about/>about</a>", &page(), "/static/"), None);
        assert_eq!(first_asset(r#"{"status": "ok", "href": "/static/x.css"}"#, &page(), "/static/"), None);
        // A prefix match on the name alone is not enough: /staticfiles/ is not under /static/.
        assert_eq!(first_asset("<link href=/staticfiles/x.css>", &page(), "/static/"), None);
    }

    #[test]
    fn text_that_only_looks_like_markup_is_not_a_reference() {
        let html = "<script>var s = '<link href=/static/fake.css>';</script><!-- <img src=/static/c.png> -->";
        assert_eq!(first_asset(html, &page(), "/static/"), None);
    }
}
