//! Exact percent-encoding for user, password, database name and parameter values.
//!
//! Writing encodes every byte except RFC 3986's unreserved characters
//! (`A-Z a-z 0-9 - . _ ~`), so the URL has no character that a shell, a
//! URL parser or libpq could read differently. Reading decodes `%XX` only
//! (libpq does not treat `+` as a space) and refuses malformed escapes
//! instead of guessing.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// Everything but the unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// In query values `/` and `:` may stay as they are (RFC 3986 allows them
/// and libpq reads them literally), so file paths stay readable.
const QUERY_VALUE: &AsciiSet = &COMPONENT.remove(b'/').remove(b':');

/// Percent-encodes a URL component (user, password, database name).
pub(crate) fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

/// Percent-encodes a query parameter value.
pub(crate) fn encode_query_value(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Why a component could not be decoded. Carries no text of the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// `%` not followed by two hex digits.
    MalformedEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl DecodeError {
    /// What the component should have been, for a problem's `expected`.
    pub(crate) fn expected(self) -> &'static str {
        match self {
            DecodeError::MalformedEscape => {
                "valid percent-escapes: % followed by two hex digits (write % itself as %25)"
            }
            DecodeError::NotUtf8 => "UTF-8 text once percent-decoded",
        }
    }
}

/// Decodes `%XX` escapes; every other character is kept as is.
pub(crate) fn decode(s: &str) -> Result<String, DecodeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or(DecodeError::MalformedEscape)?;
            let hi = (hex[0] as char).to_digit(16);
            let lo = (hex[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => return Err(DecodeError::MalformedEscape),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reserved_character_is_encoded() {
        assert_eq!(
            encode("@:/?#%[] é'\"$\\\n+&="),
            "%40%3A%2F%3F%23%25%5B%5D%20%C3%A9%27%22%24%5C%0A%2B%26%3D"
        );
        assert_eq!(encode("Az09-._~"), "Az09-._~");
        assert_eq!(encode_query_value("/a b:c@d&e"), "/a%20b:c%40d%26e");
    }

    #[test]
    fn decoding_is_exact_and_strict() {
        assert_eq!(decode("a%2Fb+c%25").as_deref(), Ok("a/b+c%"));
        assert_eq!(decode("%c3%A9").as_deref(), Ok("é"));
        assert_eq!(decode("raw é@").as_deref(), Ok("raw é@"));
        assert_eq!(decode("%zz"), Err(DecodeError::MalformedEscape));
        assert_eq!(decode("abc%4"), Err(DecodeError::MalformedEscape));
        assert_eq!(decode("%"), Err(DecodeError::MalformedEscape));
        assert_eq!(decode("%ff"), Err(DecodeError::NotUtf8));
        // `%` before a multi-byte character must not slice inside it.
        assert_eq!(decode("%é"), Err(DecodeError::MalformedEscape));
    }

    #[test]
    fn encode_then_decode_is_identity() {
        for s in ["", "p@ss:w/rd?#%[]", "\u{0}\u{1}\u{7f}", "😀 é ß", "%25"] {
            assert_eq!(decode(&encode(s)).as_deref(), Ok(s));
        }
    }
}
