//! Durations as operators write them in a plan (`2s`, `500ms`, `1m`,
//! `1m30s`), parsed one way everywhere and written back the same way.

use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Not a number followed by a unit.
    #[error("`{text}` is not a duration (e.g. 2s, 500ms, 1m30s)")]
    Syntax {
        /// The text as written.
        text: String,
    },
    /// A unit other than `ms`, `s`, `m`, `h`.
    #[error("unknown duration unit `{unit}` in `{text}` (use ms, s, m or h)")]
    Unit {
        /// The text as written.
        text: String,
        /// The unit found.
        unit: String,
    },
}

/// Parses `2s`, `500ms`, `1.5s`, `1m30s`, `2h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax {
        text: text.to_string(),
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(syntax());
    }
    if let Ok(seconds) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|_| syntax());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(syntax)?;
        let (num, after) = rest.split_at(num_end);
        let value: f64 = num.parse().map_err(|_| syntax())?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let seconds_per_unit = match unit.trim() {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(DurationError::Unit {
                    text: text.to_string(),
                    unit: other.to_string(),
                })
            }
        };
        total += Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| syntax())?;
        rest = next.trim_start();
    }
    Ok(total)
}

/// Writes a duration the way [`parse_duration`] reads it (`2s`, `1500ms`).
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `#[serde(with = "crate::duration::text")]`: a [`Duration`] stored as
/// text such as `"2s"`.
pub mod text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` as text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// Reads text such as `"2s"` (a bare number is seconds).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => super::parse_duration(&t).map_err(serde::de::Error::custom),
            Raw::Seconds(n) => Duration::try_from_secs_f64(n).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_compounds_and_errors() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 30 "), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(matches!(
            parse_duration("soon"),
            Err(DurationError::Syntax { .. })
        ));
        assert!(matches!(
            parse_duration(""),
            Err(DurationError::Syntax { .. })
        ));
        assert!(matches!(
            parse_duration("-1"),
            Err(DurationError::Syntax { .. })
        ));
        let unit = parse_duration("3 days").unwrap_err();
        assert!(unit.to_string().contains("`days`"), "{unit}");
    }

    #[test]
    fn formatting_round_trips() {
        for d in [
            Duration::from_secs(2),
            Duration::from_millis(1500),
            Duration::ZERO,
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
