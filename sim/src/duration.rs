//! Durations in timeline files: `"250ms"`, `"1.5s"`, `"2m"`, or integer ms.

use core::fmt;
use core::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// The longest duration a timeline may hold: 100 years (far from the end of
/// the machine's microsecond clock, about 584,000 years, so no sum of
/// timeline durations can saturate it).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600 + 25 * 24 * 3600);

fn too_large(s: impl fmt::Display) -> String {
    format!("duration `{s}` is too large: durations must be at most 100 years")
}

/// Parses `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`, `"10us"` into a duration.
///
/// The number is a non-negative decimal; the unit is one of `us`, `ms`,
/// `s`, `m`, `h`. Precision below one microsecond is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!(
            "duration `{s}` is negative; durations must be >= 0"
        ));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration `{s}` has no unit: expected e.g. \"250ms\", \"1.5s\", \"2m\" (or an integer number of milliseconds)"))?;
    let (num, unit) = s.split_at(split);
    let unit_us: u128 = match unit {
        "us" | "µs" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" | "min" => 60_000_000,
        "h" => 3_600_000_000,
        _ => {
            return Err(format!(
                "duration `{s}` has an unknown unit `{unit}`: expected us, ms, s, m or h"
            ));
        }
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(format!("duration `{s}` is not a number followed by a unit"));
    }
    let int_v: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| too_large(s))?
    };
    let mut frac_us: u128 = 0;
    let mut scale = unit_us;
    for c in frac.chars() {
        let digit = u128::from(c.to_digit(10).unwrap_or(0));
        if scale % 10 != 0 {
            if digit != 0 {
                return Err(format!("duration `{s}` is more precise than a microsecond"));
            }
            continue;
        }
        scale /= 10;
        frac_us += digit * scale;
    }
    let total = int_v
        .checked_mul(unit_us)
        .and_then(|v| v.checked_add(frac_us))
        .filter(|v| *v <= MAX_DURATION.as_micros())
        .ok_or_else(|| too_large(s))?;
    Ok(Duration::from_micros(total as u64))
}

/// A duration as written in a timeline (serde helper).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Dur(pub(crate) Duration);

impl<'de> serde::Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: a string with a unit (\"250ms\", \"1.5s\", \"2m\") or an integer number of milliseconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                if v < 0 {
                    return Err(E::custom(format!(
                        "duration {v} is negative; durations must be >= 0"
                    )));
                }
                self.visit_u64(v as u64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                let d = Duration::from_millis(v);
                if d > MAX_DURATION {
                    return Err(E::custom(too_large(format_args!("{v}"))));
                }
                Ok(Dur(d))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("0ms"), Ok(ms(0)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("1.0001ms").is_err());
        assert!(parse_duration("s").is_err());
    }
}
