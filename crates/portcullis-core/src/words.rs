//! How counts, durations, sizes and columns read: "1 user", "2 days 3h", "1.5 KiB", and
//! columns that line up whatever the width of their values. One wording for every process:
//! the approver's replies, the gateway's notices and refusals, the thin clients' countdown,
//! and the policy's refusals all say a duration the same way.

use std::time::Duration;

/// `n` with its noun, singular for one: `count(1, "user", "users")` is "1 user".
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A duration the way people read it: "1 day", "2 days 3h", "1h 30m", "59s"; sub-second
/// parts dropped. Days are the largest unit: a month or a year is not a fixed length.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rest / 3600, rest / 60 % 60, rest % 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(count(days, "day", "days"));
    }
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            parts.push(format!("{n}{unit}"));
        }
    }
    if parts.is_empty() {
        return "0s".into();
    }
    parts.join(" ")
}

/// A duration as `--for` takes it back (humantime, no spaces): "1d", "1d12h", "1h30m", "45s";
/// for the commands a message suggests, where [`duration`]'s "1 day" would be two words.
pub fn duration_flag(d: Duration) -> String {
    let secs = d.as_secs();
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let text: String = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        "0s".into()
    } else {
        text
    }
}

/// A byte count in binary units with one decimal past a KiB: "512 B", "1.5 KiB", "3.0 GiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A byte count as a configuration writes it: a whole number and a binary unit, `"128 MiB"`,
/// `"512KiB"`, `"1 GiB"`, `"4096 B"`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.trim() {
        "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => {
            return Err(format!(
                "{text:?} is not a size such as \"128 MiB\" (units: B, KiB, MiB, GiB)"
            ))
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{text:?} is not a size such as \"128 MiB\""))
}

/// Rows under a header, each column as wide as its widest value, two spaces apart; the last
/// column is not padded (it may be long: a command a session ran). Values must already be
/// fit for a terminal (the approver's `render::clean`). Each line ends with a newline.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: [&str; N]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                l.push_str(cell);
            } else {
                l.push_str(cell);
                l.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            }
        }
        text.push_str(l.trim_end());
        text.push('\n');
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular() {
        assert_eq!(count(1, "user", "users"), "1 user");
        assert_eq!(count(0, "user", "users"), "0 users");
        assert_eq!(count(2, "policy", "policies"), "2 policies");
    }

    #[test]
    fn durations_say_days_in_words() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(duration(h(24)), "1 day");
        assert_eq!(duration(h(48)), "2 days");
        assert_eq!(duration(h(27) + Duration::from_secs(60)), "1 day 3h 1m");
        assert_eq!(duration(h(24 * 90)), "90 days", "no months of 30.44 days");
        assert_eq!(duration(Duration::from_millis(90_500)), "1m 30s");
        assert_eq!(duration(h(1)), "1h");
        assert_eq!(duration(Duration::from_millis(400)), "0s");
    }

    #[test]
    fn flag_durations_parse_back() {
        for secs in [
            1,
            59,
            90,
            3600,
            5400,
            86_400,
            86_400 + 12 * 3600,
            400 * 86_400 + 61,
        ] {
            let d = Duration::from_secs(secs);
            let flag = duration_flag(d);
            assert!(!flag.contains(' '), "{flag}");
            assert_eq!(crate::time::parse_duration(&flag), Ok(d), "{flag}");
        }
        assert_eq!(duration_flag(Duration::from_secs(86_400)), "1d");
        assert_eq!(duration_flag(Duration::from_secs(4 * 3600)), "4h");
        assert_eq!(duration_flag(Duration::ZERO), "0s");
    }

    #[test]
    fn sizes_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn sizes_read_with_binary_units() {
        assert_eq!(parse_bytes("128 MiB"), Ok(128 << 20));
        assert_eq!(parse_bytes("512KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes(" 1 GiB "), Ok(1 << 30));
        assert_eq!(parse_bytes("4096 B"), Ok(4096));
        for bad in [
            "",
            "MiB",
            "12",
            "1.5 MiB",
            "-1 MiB",
            "1 MB",
            "1 mib",
            "99999999999 GiB",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn columns_line_up_and_the_last_is_free() {
        let rows = [
            ["gw-1-ab-1".to_string(), "alice".into(), "ls".into()],
            [
                "gw-1-ab-10".to_string(),
                "bo".into(),
                "exec a long command".into(),
            ],
        ];
        let t = table(["SESSION", "USER", "CHANNEL"], &rows);
        assert_eq!(
            t,
            "SESSION     USER   CHANNEL\n\
             gw-1-ab-1   alice  ls\n\
             gw-1-ab-10  bo     exec a long command\n"
        );
    }
}
