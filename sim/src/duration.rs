//! Durations in timeline files: `"250ms"`, `"1.5s"`, `"2m"`, or integer ms.

use core::fmt;
use core::time::Duration;

use serde::de::{self, Deserializer, Visitor};

pub use redial_core::{MAX_DURATION, parse_duration};

fn too_large(s: impl fmt::Display) -> String {
    format!("duration `{s}` is too large: durations must be at most 100 years")
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
