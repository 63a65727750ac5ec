//! Durations as operators write them: `250ms`, `10s`, `5m`, `1h`. Every
//! duration is at most a year; one in a file (a timeout, a cooldown) is
//! also more than zero (invariant 10: a `0s` timer or an `Instant + d` past
//! the clock's range must never reach a node).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The longest duration accepted anywhere: a year (8760h). Longer ones are
/// typos, and `now + MAX` stays far inside what any clock can represent.
pub const MAX: std::time::Duration = std::time::Duration::from_secs(8760 * 3600);

/// A duration written with a unit: `ms`, `s`, `m` or `h`. Parsed from text
/// (`FromStr`: flags, query strings) it is at most [`MAX`] and may be zero.
/// Read from a file (`Deserialize`) only its syntax is checked: the file's
/// validation then applies [`Duration::check_in_file`], because only it knows
/// the line and column to name (serde points at the enclosing `{...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

/// Why a duration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number followed by a unit.
    #[error("`{0}` is not a duration like `250ms`, `10s`, `5m` or `1h`")]
    Syntax(String),
    /// Longer than [`MAX`].
    #[error("`{0}` is too long: durations are at most 8760h (a year)")]
    TooLong(String),
    /// Zero, in a file.
    #[error("`{0}`: a duration must be greater than zero (a zero timer fires at once)")]
    Zero(String),
}

/// The syntax alone: digits and a unit, in milliseconds that fit a `u64`.
fn parse(s: &str) -> Result<Duration, DurationError> {
    let err = || DurationError::Syntax(s.to_owned());
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let n: u64 = s[..digits_end].parse().map_err(|_| err())?;
    let ms = match &s[digits_end..] {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(err()),
    }
    .ok_or_else(|| DurationError::TooLong(s.to_owned()))?;
    Ok(Duration(std::time::Duration::from_millis(ms)))
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, DurationError> {
        let d = parse(s)?;
        if d.0 > MAX {
            return Err(DurationError::TooLong(s.to_owned()));
        }
        Ok(d)
    }
}

impl Duration {
    /// Whether this duration may stand in a file: more than zero, at most [`MAX`].
    pub fn check_in_file(self) -> Result<Duration, DurationError> {
        if self.0.is_zero() {
            Err(DurationError::Zero(self.to_string()))
        } else if self.0 > MAX {
            Err(DurationError::TooLong(self.to_string()))
        } else {
            Ok(self)
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            _ if ms.is_multiple_of(3_600_000) && ms > 0 => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) && ms > 0 => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1_000) => write!(f, "{}s", ms / 1_000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}
impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration with a unit: 250ms, 10s, 5m, 1h; greater than zero, at most 8760h",
            "pattern": "^0*[1-9][0-9]*(ms|s|m|h)$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_units() {
        for (s, ms) in [
            ("250ms", 250),
            ("10s", 10_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
        ] {
            let d: Duration = s.parse().unwrap();
            assert_eq!(d.0.as_millis(), ms);
            assert_eq!(d.to_string(), s);
        }
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "10 s",
            "-1s",
            "3d",
            "8761h",
            "100000000000s",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
        assert_eq!("8760h".parse::<Duration>().unwrap(), Duration(MAX));
        // Text may say zero (`?wait=0s`); a file may not.
        assert_eq!(
            "0s".parse::<Duration>().unwrap().0,
            std::time::Duration::ZERO
        );
        assert!(Duration(std::time::Duration::ZERO).check_in_file().is_err());
        assert!(Duration(MAX).check_in_file().is_ok());
        assert!(Duration(MAX + std::time::Duration::from_millis(1))
            .check_in_file()
            .is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn every_duration_up_to_max_round_trips(ms in 0..=MAX.as_millis() as u64) {
                let d = Duration(std::time::Duration::from_millis(ms));
                prop_assert_eq!(d.to_string().parse::<Duration>(), Ok(d));
                prop_assert_eq!(d.check_in_file().is_ok(), ms > 0);
            }

            #[test]
            fn round_units_round_trip(n in 0u64..10_000, unit in prop::sample::select(vec!["ms", "s", "m", "h"])) {
                let text = format!("{n}{unit}");
                let Ok(d) = text.parse::<Duration>() else {
                    // Only a duration past a year is refused.
                    prop_assert!(matches!(parse(&text), Ok(d) if d.0 > MAX));
                    return Ok(());
                };
                prop_assert_eq!(d.to_string().parse::<Duration>(), Ok(d));
            }

            #[test]
            fn no_string_makes_the_parser_panic(
                text in prop_oneof![any::<String>(), "[0-9]{0,25}(ms|s|m|h|d|us|)", "[0-9a-z .+-]{0,12}"],
            ) {
                if let Ok(d) = text.parse::<Duration>() {
                    prop_assert!(d.0 <= MAX);
                    prop_assert_eq!(d.to_string().parse::<Duration>(), Ok(d));
                }
                let _ = parse(&text).map(Duration::check_in_file);
            }
        }
    }
}
