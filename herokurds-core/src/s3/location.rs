//! `s3://bucket[/prefix]` locations and the two key encodings S3 needs:
//! the URL-encoded `CopySource` header and URL-encoded listings.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::S3Error;

/// A bucket and a key prefix, written `s3://bucket[/prefix]`.
///
/// Like `aws s3 sync`, a prefix names a "directory": `s3://b/assets` covers
/// the keys under `assets/`, so the stored prefix is empty or ends with `/`.
/// `Display` and `FromStr` round-trip.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Location {
    bucket: String,
    prefix: String,
}

impl S3Location {
    /// A location from a bucket name and a prefix (`""` for the whole
    /// bucket; a missing trailing `/` is added).
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Result<Self, S3Error> {
        let bucket = bucket.into();
        let mut prefix = prefix.into();
        let input = format!("s3://{bucket}/{prefix}");
        check_bucket(&bucket).map_err(|reason| S3Error::InvalidLocation {
            input: input.clone(),
            reason,
        })?;
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        if prefix.len() > 1024 {
            return Err(S3Error::InvalidLocation {
                input,
                reason: "the prefix is longer than S3's 1024-byte key limit".into(),
            });
        }
        Ok(S3Location { bucket, prefix })
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix: empty, or ending with `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key of a key relative to this location.
    pub fn key(&self, relative: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + relative.len());
        key.push_str(&self.prefix);
        key.push_str(relative);
        key
    }

    /// `s3://bucket/prefix+relative`, as `aws s3` prints it.
    pub fn url(&self, relative: &str) -> String {
        format!("s3://{}/{}{}", self.bucket, self.prefix, relative)
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

impl FromStr for S3Location {
    type Err = S3Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| S3Error::InvalidLocation {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let rest = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("s3") => rest,
            Some((scheme, _)) => {
                return Err(invalid(&format!(
                    "the scheme is {scheme:?}, herokurds syncs s3:// locations only"
                )))
            }
            None => return Err(invalid("it does not start with s3://")),
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("the bucket name is empty"));
        }
        S3Location::new(bucket, prefix).map_err(|e| match e {
            S3Error::InvalidLocation { reason, .. } => invalid(&reason),
            other => other,
        })
    }
}

/// Bucket names: 3 to 255 characters of letters, digits, `.`, `-` and `_`
/// (the legacy us-east-1 rules, a superset of today's, so old buckets and
/// S3-compatible servers work).
fn check_bucket(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("the bucket name is empty".into());
    }
    if !(3..=255).contains(&bucket.len()) {
        return Err(format!(
            "the bucket name {bucket:?} must be 3 to 255 characters long"
        ));
    }
    if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "the bucket name {bucket:?} contains {c:?}; bucket names use letters, digits, '.', '-' and '_'"
        ));
    }
    Ok(())
}

/// `text` (a key, or an `s3://` URL holding one) as it may be shown on a
/// terminal or in a message: S3 keys may hold any character, and a key with
/// `\n` or `\x1b[31m` must not break the output or recolour the terminal.
///
/// Control characters (C0, DEL, C1) and Unicode bidirectional controls
/// (which can make a key read as another) become escapes: `\n`, `\r`,
/// `\t`, `\x1b`, `\u{202e}`; in such a key `\` becomes `\\`, so the
/// escaped form reads back to one key. Text without them is returned as it
/// is (borrowed), so ordinary keys print unchanged.
pub fn escape_key(text: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// RFC 3986 unreserved characters, left unencoded in a URL component.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What `CopySource` leaves unencoded: unreserved characters and `/`.
const COPY_SOURCE: &AsciiSet = &COMPONENT.remove(b'/');

/// Percent-encodes everything but unreserved characters (a space is `%20`).
pub(crate) fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// The `x-amz-copy-source` value for a key: `bucket/url-encoded-key`
/// (spaces, `+`, `%`, `?`, `#` and non-ASCII encoded; `/` kept).
pub(crate) fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", utf8_percent_encode(key, COPY_SOURCE))
}

/// Decodes a key from a listing made with `encoding-type=url` (S3 encodes
/// a space as `+`, a literal `+` as `%2B`). `None` if the bytes are not UTF-8.
pub(crate) fn decode_listed_key(encoded: &str) -> Option<String> {
    let plus_as_space = encoded.replace('+', " ");
    percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix_as_a_directory() {
        let l: S3Location = "s3://odl-micromasters-production".parse().unwrap();
        assert_eq!(
            (l.bucket(), l.prefix()),
            ("odl-micromasters-production", "")
        );
        let l: S3Location = "s3://b-1/media/img".parse().unwrap();
        assert_eq!((l.bucket(), l.prefix()), ("b-1", "media/img/"));
        assert_eq!(l.key("a b.png"), "media/img/a b.png");
        assert_eq!(l.url("x"), "s3://b-1/media/img/x");
        let l: S3Location = "s3://bkt/".parse().unwrap();
        assert_eq!(l.prefix(), "");
    }

    #[test]
    fn display_round_trips() {
        for s in ["s3://bkt", "s3://bkt/a/", "s3://my.bucket/deep/er/"] {
            let l: S3Location = s.parse().unwrap();
            assert_eq!(l.to_string(), s);
            assert_eq!(l.to_string().parse::<S3Location>().unwrap(), l);
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases = [
            ("bucket/key", "does not start with s3://"),
            ("https://b/k", "scheme is \"https\""),
            ("s3://", "bucket name is empty"),
            ("s3:///key", "bucket name is empty"),
            ("s3://ab", "3 to 255"),
            ("s3://a b c/x", "contains ' '"),
        ];
        for (input, expected) in cases {
            let err = input.parse::<S3Location>().unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
            assert!(err.contains(input), "{input}: {err}");
        }
    }

    #[test]
    fn copy_source_encodes_everything_but_unreserved_and_slash() {
        assert_eq!(
            copy_source("b", "dir/a b+c%d?e#f&g=h~i.j-k_l"),
            "b/dir/a%20b%2Bc%25d%3Fe%23f%26g%3Dh~i.j-k_l"
        );
        assert_eq!(copy_source("b", "ü/日本"), "b/%C3%BC/%E6%97%A5%E6%9C%AC");
    }

    #[test]
    fn listed_keys_decode_plus_as_space() {
        assert_eq!(decode_listed_key("a+b%2Bc%25%20d").unwrap(), "a b+c% d");
        assert_eq!(decode_listed_key("%C3%BC/x").unwrap(), "ü/x");
        assert_eq!(decode_listed_key("%FF"), None);
    }

    #[test]
    fn escape_key_makes_control_characters_visible() {
        assert!(matches!(
            escape_key("ü/a b\\c.txt"),
            Cow::Borrowed("ü/a b\\c.txt")
        ));
        assert_eq!(
            escape_key("evil\n\x1b[31mred\t\r\u{7f}\u{85}\\"),
            "evil\\n\\x1b[31mred\\t\\r\\x7f\\x85\\\\"
        );
        assert_eq!(escape_key("txt.\u{202e}exe"), "txt.\\u{202e}exe");
        let shown = escape_key("s3://b/a\n\x1b]0;title\x07");
        assert!(!shown.chars().any(char::is_control), "{shown}");
    }
}
