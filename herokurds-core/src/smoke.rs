//! Smoke checks: the runbook's "browse these URLs before and after".
//!
//! Before the maintenance window, [`check_all`] fetches each page of the
//! plan and records what a person browsing it would notice: the HTTP
//! status, where redirects end, the page title, and whether every `<img>`
//! on it loads. After the cutover the same pages are fetched again and
//! [`compare`] lists what changed, page by page. A page that broke is the
//! signal to roll back.
//!
//! A URL may carry credentials (`https://user:pw@staging.example.com/`):
//! they are used to fetch, and stripped from everything recorded (page and
//! image URLs, error texts), which the runbook journals.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::progress::Progress;

/// What was seen on one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageCheck {
    /// The URL asked for, without its userinfo (`user:password@`).
    pub url: String,
    /// The HTTP status of the final response, or `None` if no response came.
    pub status: Option<u16>,
    /// The URL after following redirects.
    pub final_url: Option<String>,
    /// The text of the page's `<title>`, whitespace collapsed.
    pub title: Option<String>,
    /// How many `<img>` elements with a `src` the page has.
    pub images: usize,
    /// Images that did not load (absolute URL and why).
    pub broken_images: Vec<BrokenImage>,
    /// Why the page could not be fetched at all.
    pub error: Option<String>,
}

impl PageCheck {
    /// Whether the page answered 2xx and all its images loaded.
    pub fn is_healthy(&self) -> bool {
        matches!(self.status, Some(s) if (200..300).contains(&s))
            && self.broken_images.is_empty()
            && self.error.is_none()
    }
}

/// An image that did not load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenImage {
    /// The image's absolute URL.
    pub url: String,
    /// The status it answered, or the transport error.
    pub reason: String,
}

/// One way a page differs after the cutover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageDifference {
    /// The page's URL.
    pub url: String,
    /// What changed, in words (`status 200 -> 500`).
    pub what: String,
}

impl std::fmt::Display for PageDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.url, self.what)
    }
}

/// Progress of a smoke pass.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SmokeEvent {
    /// A page was checked.
    Checked {
        /// The page's result.
        page: PageCheck,
    },
}

/// How to fetch pages.
#[derive(Debug, Clone)]
pub struct SmokeOptions {
    /// Per-request timeout (default 20 s).
    pub timeout: Duration,
    /// Most redirects followed (default 10).
    pub max_redirects: usize,
    /// Whether to fetch each image (default true).
    pub check_images: bool,
}

impl Default for SmokeOptions {
    fn default() -> Self {
        SmokeOptions {
            timeout: Duration::from_secs(20),
            max_redirects: 10,
            check_images: true,
        }
    }
}

/// Why smoke checks could not run at all (a page that fails is a result,
/// not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmokeError {
    /// The URL does not parse.
    #[error("smoke URL {url:?} is not a valid http(s) URL: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("could not set up the HTTP client for smoke checks: {0}")]
    Client(String),
}

/// Fetches every URL (one after another, in order) and records what each
/// page looked like.
pub async fn check_all(
    urls: &[String],
    options: &SmokeOptions,
    progress: &impl Progress<SmokeEvent>,
) -> Result<Vec<PageCheck>, SmokeError> {
    for u in urls {
        validate_url(u)?;
    }
    let client = reqwest::Client::builder()
        .timeout(options.timeout)
        .redirect(reqwest::redirect::Policy::limited(options.max_redirects))
        .user_agent(concat!("herokurds-smoke/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SmokeError::Client(e.to_string()))?;
    let mut pages = Vec::with_capacity(urls.len());
    for url in urls {
        let page = check_page(&client, url, options).await;
        progress.event(&SmokeEvent::Checked { page: page.clone() });
        pages.push(page);
    }
    Ok(pages)
}

/// Checks that `url` is an absolute http(s) URL.
pub fn validate_url(url: &str) -> Result<(), SmokeError> {
    match ::url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(u) => Err(SmokeError::BadUrl {
            url: without_userinfo(url),
            reason: format!("scheme {:?} (use http or https)", u.scheme()),
        }),
        Err(e) => Err(SmokeError::BadUrl {
            url: without_userinfo(url),
            reason: e.to_string(),
        }),
    }
}

/// `url` without its userinfo: `https://user:pw@host/p` gives
/// `https://host/p`. Text that is not a valid URL loses everything up to
/// its last `@` (`https://u:p/w@host/` gives `https://host/`: an unencoded
/// `/` or `?` in a password makes the URL invalid, and all of it before
/// the `@` may be password). Text without `://` is returned as it is.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = if url::Url::parse(url).is_ok() {
        rest.find(['/', '?', '#']).unwrap_or(rest.len())
    } else {
        rest.len()
    };
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

async fn check_page(client: &reqwest::Client, url: &str, options: &SmokeOptions) -> PageCheck {
    let mut page = PageCheck {
        url: without_userinfo(url),
        status: None,
        final_url: None,
        title: None,
        images: 0,
        broken_images: Vec::new(),
        error: None,
    };
    let resp = match client.get(url).send().await {
        Ok(r) => r,
        Err(e) => {
            page.error = Some(describe(&e));
            return page;
        }
    };
    page.status = Some(resp.status().as_u16());
    let base = resp.url().clone();
    page.final_url = Some(without_userinfo(base.as_str()));
    let is_html = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.contains("html"));
    let body = match resp.text().await {
        Ok(b) => b,
        Err(e) => {
            page.error = Some(format!("reading the body: {}", describe(&e)));
            return page;
        }
    };
    if !is_html {
        return page;
    }
    page.title = html::title(&body);
    let sources = html::img_sources(&body);
    page.images = sources.len();
    if options.check_images {
        for src in sources {
            let abs = match base.join(&src) {
                Ok(u) => u,
                Err(e) => {
                    page.broken_images.push(BrokenImage {
                        url: without_userinfo(&src),
                        reason: format!("bad URL: {e}"),
                    });
                    continue;
                }
            };
            if abs.scheme() == "data" {
                continue;
            }
            let reason = match client.get(abs.clone()).send().await {
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(_) => None,
                    Err(e) => Some(describe(&e)),
                },
                Ok(r) => Some(format!("status {}", r.status().as_u16())),
                Err(e) => Some(describe(&e)),
            };
            if let Some(reason) = reason {
                page.broken_images.push(BrokenImage {
                    url: without_userinfo(abs.as_str()),
                    reason,
                });
            }
        }
    }
    page
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_redirect() {
        "too many redirects".into()
    } else {
        // reqwest's Display names the URL, credentials included.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        match e.url() {
            Some(u) => msg.replace(u.as_str(), &without_userinfo(u.as_str())),
            None => msg,
        }
    }
}

/// Lists how each page changed between `before` and `after` (matched by URL).
/// A page that got healthier is not a difference; pages missing from either
/// side are.
pub fn compare(before: &[PageCheck], after: &[PageCheck]) -> Vec<PageDifference> {
    let mut diffs = Vec::new();
    for b in before {
        let Some(a) = after.iter().find(|a| a.url == b.url) else {
            diffs.push(PageDifference {
                url: b.url.clone(),
                what: "not checked after the cutover".into(),
            });
            continue;
        };
        let mut note = |what: String| {
            diffs.push(PageDifference {
                url: b.url.clone(),
                what,
            })
        };
        if let (None, Some(err)) = (&b.error, &a.error) {
            note(format!("now fails: {err}"));
            continue;
        }
        if a.status != b.status {
            note(format!("status {} -> {}", show(b.status), show(a.status)));
        }
        if a.final_url != b.final_url {
            note(format!(
                "redirects to {} (was {})",
                a.final_url.as_deref().unwrap_or("-"),
                b.final_url.as_deref().unwrap_or("-")
            ));
        }
        if a.title != b.title {
            note(format!(
                "title {:?} -> {:?}",
                b.title.as_deref().unwrap_or(""),
                a.title.as_deref().unwrap_or("")
            ));
        }
        if a.images != b.images {
            note(format!("{} images -> {}", b.images, a.images));
        }
        // Count, not URLs: after a bucket rename the same image has a new URL.
        if a.broken_images.len() > b.broken_images.len() {
            let new: Vec<String> = a
                .broken_images
                .iter()
                .filter(|x| !b.broken_images.iter().any(|y| y.url == x.url))
                .map(|x| format!("{} ({})", x.url, x.reason))
                .collect();
            note(format!(
                "{} of {} images broken (was {}): {}",
                a.broken_images.len(),
                a.images,
                b.broken_images.len(),
                new.join(", ")
            ));
        }
    }
    for a in after {
        if !before.iter().any(|b| b.url == a.url) {
            diffs.push(PageDifference {
                url: a.url.clone(),
                what: "no baseline from before the cutover".into(),
            });
        }
    }
    diffs
}

fn show(status: Option<u16>) -> String {
    status.map_or_else(|| "none".into(), |s| s.to_string())
}

/// Just enough HTML reading for a smoke check: the title and image sources.
mod html {
    /// The text of the first `<title>` element, entities decoded and
    /// whitespace collapsed.
    pub fn title(doc: &str) -> Option<String> {
        let lower = doc.to_ascii_lowercase();
        let open = lower.find("<title")?;
        let start = open + lower[open..].find('>')? + 1;
        let end = start + lower[start..].find("</title")?;
        let text = decode_entities(&doc[start..end]);
        Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// The `src` of every `<img>` element, in document order, skipping
    /// comments.
    pub fn img_sources(doc: &str) -> Vec<String> {
        let lower = doc.to_ascii_lowercase();
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(off) = lower[i..].find('<') {
            let at = i + off;
            if lower[at..].starts_with("<!--") {
                i = lower[at..].find("-->").map_or(lower.len(), |e| at + e + 3);
                continue;
            }
            let Some(close) = lower[at..].find('>').map(|e| at + e) else {
                break;
            };
            let tag = &doc[at + 1..close];
            let is_img = lower[at + 1..close].starts_with("img")
                && lower[at + 4..close]
                    .chars()
                    .next()
                    .is_none_or(|c| c.is_ascii_whitespace() || c == '/');
            if is_img {
                if let Some(src) = attribute(tag, "src") {
                    if !src.is_empty() {
                        out.push(decode_entities(&src));
                    }
                }
            }
            i = close + 1;
        }
        out
    }

    /// The value of attribute `name` in a tag's text (`img src="a" alt=b`).
    fn attribute(tag: &str, name: &str) -> Option<String> {
        let bytes = tag.as_bytes();
        let mut i = 0;
        // Skip the element name.
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        while i < bytes.len() {
            while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
                i += 1;
            }
            let key_start = i;
            while i < bytes.len()
                && !bytes[i].is_ascii_whitespace()
                && bytes[i] != b'='
                && bytes[i] != b'/'
            {
                i += 1;
            }
            let key = &tag[key_start..i];
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let mut value = String::new();
            if i < bytes.len() && bytes[i] == b'=' {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                    let q = bytes[i];
                    let start = i + 1;
                    i = start;
                    while i < bytes.len() && bytes[i] != q {
                        i += 1;
                    }
                    value = tag[start..i.min(tag.len())].to_string();
                    i += 1;
                } else {
                    let start = i;
                    while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                        i += 1;
                    }
                    value = tag[start..i].to_string();
                }
            }
            if key.eq_ignore_ascii_case(name) {
                return Some(value);
            }
            if key.is_empty() {
                i += 1;
            }
        }
        None
    }

    fn decode_entities(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(amp) = rest.find('&') {
            out.push_str(&rest[..amp]);
            rest = &rest[amp..];
            let Some(semi) = rest[..rest.len().min(12)].find(';') else {
                out.push('&');
                rest = &rest[1..];
                continue;
            };
            let entity = &rest[1..semi];
            let decoded = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                    .ok()
                    .and_then(char::from_u32),
                e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            match decoded {
                Some(c) => {
                    out.push(c);
                    rest = &rest[semi + 1..];
                }
                None => {
                    out.push('&');
                    rest = &rest[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn title_is_decoded_and_collapsed() {
            let doc =
                "<html><HEAD><Title lang=en>\n  Programs &amp; Courses\n | MicroMasters </title>";
            assert_eq!(
                title(doc).as_deref(),
                Some("Programs & Courses | MicroMasters")
            );
            assert_eq!(title("<p>no title</p>"), None);
        }

        #[test]
        fn images_in_every_quoting_style_and_not_in_comments() {
            let doc = r#"<img src="/a.png"><IMG alt='x' SRC='b.jpg'/>
                <!-- <img src="commented.png"> --><img src=c.gif alt=c>
                <imgx src="not-an-img"><img alt="no source"><img src="/d?x=1&amp;y=2">"#;
            assert_eq!(
                img_sources(doc),
                vec!["/a.png", "b.jpg", "c.gif", "/d?x=1&y=2"]
            );
        }

        #[test]
        fn numeric_entities_and_stray_ampersands() {
            assert_eq!(
                decode_entities("a &#233; &#x1F600; & b &bogus; c"),
                "a é 😀 & b &bogus; c"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(url: &str, status: u16, title: &str, images: usize) -> PageCheck {
        PageCheck {
            url: url.into(),
            status: Some(status),
            final_url: Some(url.into()),
            title: Some(title.into()),
            images,
            broken_images: vec![],
            error: None,
        }
    }

    #[test]
    fn identical_pages_have_no_differences() {
        let a = vec![page("http://x/", 200, "Home", 2)];
        assert!(compare(&a, &a.clone()).is_empty());
        assert!(a[0].is_healthy());
    }

    #[test]
    fn status_title_and_broken_images_are_reported() {
        let before = vec![
            page("http://x/", 200, "Home", 2),
            page("http://x/p", 200, "P", 1),
        ];
        let mut after = vec![
            page("http://x/", 500, "Server Error", 0),
            page("http://x/p", 200, "P", 1),
        ];
        after[1].broken_images.push(BrokenImage {
            url: "http://x/i.png".into(),
            reason: "status 404".into(),
        });
        let d = compare(&before, &after);
        let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "http://x/: status 200 -> 500",
                "http://x/: title \"Home\" -> \"Server Error\"",
                "http://x/: 2 images -> 0",
                "http://x/p: 1 of 1 images broken (was 0): http://x/i.png (status 404)",
            ]
        );
    }

    #[test]
    fn an_image_already_broken_before_is_not_blamed_on_the_cutover() {
        let mut b = page("http://x/", 200, "Home", 1);
        b.broken_images.push(BrokenImage {
            url: "http://x/old.png".into(),
            reason: "status 404".into(),
        });
        assert!(compare(std::slice::from_ref(&b), std::slice::from_ref(&b)).is_empty());
        assert!(!b.is_healthy());
    }

    #[test]
    fn the_same_breakage_under_a_new_bucket_url_is_not_a_difference() {
        let mut b = page("http://x/", 200, "Home", 2);
        b.broken_images.push(BrokenImage {
            url: "http://s3/old-bucket/missing.png".into(),
            reason: "status 404".into(),
        });
        let mut a = b.clone();
        a.broken_images[0].url = "http://s3/new-bucket/missing.png".into();
        assert!(compare(&[b], &[a]).is_empty());
    }

    #[test]
    fn userinfo_is_stripped_and_other_urls_are_kept_as_they_are() {
        for (given, kept) in [
            ("https://user:pw@host/a?b=c@d", "https://host/a?b=c@d"),
            ("http://pw@host:8080", "http://host:8080"),
            ("https://u:p%40ss@host#x", "https://host#x"),
            ("https://host/path@x", "https://host/path@x"),
            ("https://host", "https://host"),
            ("not a url", "not a url"),
            // An unencoded / or ? in the password: not a valid URL, and
            // everything before the last @ may be password.
            ("https://u:p/w0rd@host/", "https://host/"),
            ("https://u:p?w0rd@host/x", "https://host/x"),
        ] {
            assert_eq!(without_userinfo(given), kept);
        }
        let e = validate_url("ftp://user:s3cret@x/")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret") && e.contains("ftp://x/"), "{e}");
    }

    #[test]
    fn bad_urls_are_named() {
        let e = validate_url("ftp://x/").unwrap_err().to_string();
        assert!(e.contains("ftp://x/") && e.contains("http or https"), "{e}");
        assert!(validate_url("not a url").is_err());
    }
}
