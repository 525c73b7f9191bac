//! Byte sizes as operators write them (`1GB`, `512MiB`, `64k`, `1048576`),
//! parsed one way everywhere: units are powers of 1024, as in PostgreSQL's
//! settings and the AWS CLI's S3 configuration.

/// Why a text is not a size; each variant quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// No number where the size should start.
    #[error("`{text}` is not a size (e.g. 1GB, 512MB, 1048576)")]
    NotASize {
        /// The text as given.
        text: String,
    },
    /// A unit other than B, K, M, G, T (with or without B / iB).
    #[error("unknown size unit `{unit}` in `{text}`")]
    UnknownUnit {
        /// The unit, lower-cased.
        unit: String,
        /// The text as given.
        text: String,
    },
    /// More bytes than a 64-bit count holds.
    #[error("`{text}` is too large")]
    TooLarge {
        /// The text as given.
        text: String,
    },
}

/// Parses a size into bytes. The error says what was wrong, quoting the text.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| SizeError::NotASize {
        text: text.to_string(),
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(SizeError::UnknownUnit {
                unit: other.to_string(),
                text: text.to_string(),
            })
        }
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(SizeError::TooLarge {
            text: text.to_string(),
        });
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn binary_units_fractions_and_errors() {
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("lots")
            .unwrap_err()
            .to_string()
            .contains("`lots`"));
        assert!(parse_size("1XB")
            .unwrap_err()
            .to_string()
            .contains("unknown size unit `xb`"));
        assert!(parse_size("99999999999TB")
            .unwrap_err()
            .to_string()
            .contains("too large"));
        assert!(parse_size("99999999999999999999").is_err());
        assert_eq!(parse_size("100k"), Ok(102_400));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("3 parsecs").is_err());
    }
}
