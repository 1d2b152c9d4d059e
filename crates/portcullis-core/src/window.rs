//! Time windows such as `Mon-Fri 08:00-18:00 UTC`, used by `auto_approve`.
//!
//! Grammar: `DAYS HH:MM-HH:MM ZONE` where `DAYS` is a day (`Mon`), a range (`Mon-Fri`, wrapping
//! as in `Fri-Mon`) or a comma list of those, and `ZONE` is `UTC` or a fixed offset (`+02:00`).
//! A window whose end is not after its start runs overnight into the next day
//! (`Fri 22:00-02:00 UTC` covers Friday night until Saturday 02:00).

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const DAY_MS: u64 = 86_400_000;

/// A parsed window. `days` is a bit set, bit 0 for Monday.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub text: String,
    days: u8,
    start_min: u32,
    end_min: u32,
    offset_min: i32,
}

impl Window {
    /// Parse a window, or say what is wrong and what is expected.
    pub fn parse(text: &str) -> Result<Window, String> {
        let hint = "expected e.g. \"Mon-Fri 08:00-18:00 UTC\"";
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [days, times, zone] = parts.as_slice() else {
            return Err(format!("bad window {text:?}: {hint}"));
        };
        let days = parse_days(days).map_err(|e| format!("bad window {text:?}: {e}; {hint}"))?;
        let (start, end) = times
            .split_once('-')
            .ok_or_else(|| format!("bad window {text:?}: times must be HH:MM-HH:MM; {hint}"))?;
        let start_min =
            parse_hhmm(start).map_err(|e| format!("bad window {text:?}: {e}; {hint}"))?;
        let end_min = parse_hhmm(end).map_err(|e| format!("bad window {text:?}: {e}; {hint}"))?;
        if start_min == end_min {
            return Err(format!(
                "bad window {text:?}: start and end are the same time"
            ));
        }
        let offset_min =
            parse_zone(zone).map_err(|e| format!("bad window {text:?}: {e}; {hint}"))?;
        Ok(Window {
            text: text.to_string(),
            days,
            start_min,
            end_min,
            offset_min,
        })
    }

    /// Whether the instant falls inside the window.
    pub fn contains(&self, at: Timestamp) -> bool {
        let local = at.0 as i64 + self.offset_min as i64 * 60_000;
        if local < 0 {
            return false;
        }
        let local = local as u64;
        let day_index = local / DAY_MS;
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let weekday = ((day_index + 3) % 7) as u32;
        let minute = ((local % DAY_MS) / 60_000) as u32;
        let day_on = |d: u32| self.days & (1 << d) != 0;
        if self.start_min < self.end_min {
            day_on(weekday) && minute >= self.start_min && minute < self.end_min
        } else {
            (day_on(weekday) && minute >= self.start_min)
                || (day_on((weekday + 6) % 7) && minute < self.end_min)
        }
    }
}

fn day_index(name: &str) -> Result<u32, String> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .map(|i| i as u32)
        .ok_or_else(|| format!("unknown day {name:?} (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

fn parse_days(spec: &str) -> Result<u8, String> {
    let mut set = 0u8;
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day_index(a)?, day_index(b)?);
                let mut d = a;
                loop {
                    set |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => set |= 1 << day_index(part)?,
        }
    }
    Ok(set)
}

fn parse_hhmm(s: &str) -> Result<u32, String> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("time {s:?} is not HH:MM"))?;
    let h: u32 = h.parse().map_err(|_| format!("time {s:?} is not HH:MM"))?;
    let m: u32 = m.parse().map_err(|_| format!("time {s:?} is not HH:MM"))?;
    // 24:00 is allowed as an end of day.
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(format!("time {s:?} is out of range"));
    }
    Ok(h * 60 + m)
}

fn parse_zone(s: &str) -> Result<i32, String> {
    if s.eq_ignore_ascii_case("UTC") || s.eq_ignore_ascii_case("Z") {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(format!("zone {s:?} must be UTC or an offset like +02:00")),
    };
    let minutes =
        parse_hhmm(rest).map_err(|_| format!("zone {s:?} must be UTC or an offset like +02:00"))?;
    if minutes > 14 * 60 {
        return Err(format!("zone {s:?} is out of range"));
    }
    Ok(sign * minutes as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-11-27 was a Friday.
    fn at(day: u64, h: u64, m: u64) -> Timestamp {
        // 2026-11-23 (Monday) 00:00 UTC
        let monday = 1_795_392_000_000u64;
        Timestamp(monday + day * DAY_MS + h * 3_600_000 + m * 60_000)
    }

    #[test]
    fn anchor_is_a_monday() {
        assert_eq!(at(0, 0, 0).rfc3339(), "2026-11-23T00:00:00Z");
    }

    #[test]
    fn office_hours() {
        let w = Window::parse("Mon-Fri 08:00-18:00 UTC").unwrap();
        assert!(w.contains(at(0, 8, 0)));
        assert!(w.contains(at(4, 17, 59)));
        assert!(!w.contains(at(4, 18, 0)));
        assert!(!w.contains(at(0, 7, 59)));
        assert!(!w.contains(at(5, 12, 0)), "Saturday");
        assert!(!w.contains(at(6, 12, 0)), "Sunday");
    }

    #[test]
    fn overnight_and_wrapping_days() {
        let w = Window::parse("Fri 22:00-02:00 UTC").unwrap();
        assert!(w.contains(at(4, 23, 0)));
        assert!(w.contains(at(5, 1, 59)), "Saturday early is Friday's night");
        assert!(!w.contains(at(5, 2, 0)));
        assert!(!w.contains(at(3, 23, 0)));
        let weekend = Window::parse("Sat-Sun 00:00-24:00 UTC").unwrap();
        assert!(weekend.contains(at(6, 23, 59)));
        assert!(!weekend.contains(at(0, 0, 0)));
        let wrap = Window::parse("Fri-Mon 09:00-10:00 UTC").unwrap();
        assert!(wrap.contains(at(0, 9, 30)) && wrap.contains(at(6, 9, 30)));
        assert!(!wrap.contains(at(1, 9, 30)));
    }

    #[test]
    fn offsets_shift_the_window() {
        let w = Window::parse("Mon 09:00-10:00 +02:00").unwrap();
        assert!(w.contains(at(0, 7, 30)));
        assert!(!w.contains(at(0, 9, 30)));
    }

    #[test]
    fn errors_say_what_is_expected() {
        for bad in [
            "",
            "Mon-Fri",
            "Funday 08:00-18:00 UTC",
            "Mon 8-18 UTC",
            "Mon 25:00-26:00 UTC",
            "Mon 08:00-08:00 UTC",
            "Mon 08:00-18:00 Mars",
        ] {
            let e = Window::parse(bad).unwrap_err();
            assert!(e.contains("window"), "{bad}: {e}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") { let _ = Window::parse(&s); }

        #[test]
        fn contains_never_panics(t in any::<u64>()) {
            let w = Window::parse("Sun-Sat 00:00-24:00 -14:00").unwrap();
            let _ = w.contains(Timestamp(t));
        }
    }
}
