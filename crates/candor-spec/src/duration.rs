//! Durations written with units: `100ms`, `30s`, `5m`, `1h`, `1m30s`, `1.5s`, `2h 37min`.
//! The one duration grammar of Candor: config values, `--timeout` and `--since` all use it.

use std::time::Duration;

/// Parse a duration string. Every number needs a unit (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`,
/// `w`, `y` (365.25 d), or a longer name: `sec`, `min`, `hours`, `days`, `month` (30.44 d),
/// ...); only a bare `0` may go without. No `M`: in a config, "5M" is more likely a typo for
/// minutes than a wish for months.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write it with a unit, e.g. \"10s\"".into());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "bad duration \"{s}\": expected a number, e.g. \"10s\" or \"250ms\""
            ));
        }
        let num: f64 = rest[..num_len].parse().map_err(|_| {
            format!(
                "bad duration \"{s}\": `{}` is not a number",
                &rest[..num_len]
            )
        })?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        let scale = match unit {
            "ns" | "nsec" | "nanos" => 1e-9,
            "us" | "µs" | "usec" => 1e-6,
            "ms" | "msec" | "millis" => 1e-3,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "w" | "wk" | "wks" | "week" | "weeks" => 7.0 * 86400.0,
            "month" | "months" => 2_630_016.0,
            "y" | "yr" | "yrs" | "year" | "years" => 31_557_600.0,
            "" => {
                return Err(format!(
                    "duration \"{s}\" has no unit; write e.g. \"{}s\" or \"{}ms\"",
                    &t[..t.len() - rest.len()],
                    &t[..t.len() - rest.len()]
                ))
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` in duration \"{s}\"; use us, ms, s, m, h or d"
                ))
            }
        };
        total += num * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err(format!("duration \"{s}\" is too large"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Format a duration for people: `250ms`, `1.5s`, `2m`, `1h5m`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        let s = format!("{:.1}", secs);
        return format!("{}s", s.trim_end_matches(".0"));
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    match (h, m, s) {
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        let table = [
            ("100ms", 100),
            ("30s", 30_000),
            ("1m30s", 90_000),
            ("1.5s", 1500),
            ("2h", 7_200_000),
            ("500us", 0),
        ];
        for (input, ms) in table {
            assert_eq!(parse_duration(input).unwrap().as_millis(), ms, "{input}");
        }
    }

    #[test]
    fn accepts_the_long_unit_names_and_spaces() {
        let table = [
            ("5min", 300_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("2h 37min", 9_420_000),
            ("2 hours", 7_200_000),
            ("1hr", 3_600_000),
            ("3 days", 259_200_000),
            ("1w", 604_800_000),
            ("2weeks", 1_209_600_000),
            ("1month", 2_630_016_000),
            ("1y", 31_557_600_000),
            ("10 seconds", 10_000),
            ("1second", 1000),
            ("250msec", 250),
            ("1500000ns", 1),
            ("0", 0),
            (" 30s ", 30_000),
        ];
        for (input, ms) in table {
            assert_eq!(parse_duration(input).unwrap().as_millis(), ms, "{input}");
        }
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("10 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("00").unwrap_err().contains("no unit"));
        assert!(parse_duration("1h30").unwrap_err().contains("no unit"));
        assert!(parse_duration("5mon").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("5M").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("2026-11-30T10:00:00Z").is_err());
        assert!(parse_duration("100y").unwrap_err().contains("too large"));
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(3900)), "1h5m");
    }
}

/// A percentage written as "80%" (or "80"): 0 < p <= 100.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%').trim();
    match t.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("\"{s}\" is not a percentage; write e.g. \"80%\"")),
    }
}

/// A size with a unit: "512MiB", "1GiB", "64MB", "4096" (bytes), "10KiB".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" is not a size; write e.g. \"512MiB\""))?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" | "K" => 1024.0,
        "MiB" | "M" => 1024.0 * 1024.0,
        "GiB" | "G" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in \"{s}\"; use B, KiB, MiB, GiB (or KB, MB, GB)"
            ))
        }
    };
    let v = n * scale;
    if !(v >= 1.0 && v.is_finite()) {
        return Err(format!("\"{s}\" is not a usable size"));
    }
    Ok(v as u64)
}

/// Bytes for people: "812 KiB", "12.3 MiB", "1.5 GiB".
pub fn format_bytes(b: u64) -> String {
    let f = b as f64;
    if f >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", f / (1024.0 * 1024.0 * 1024.0))
    } else if f >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", f / (1024.0 * 1024.0))
    } else {
        format!("{} KiB", b / 1024)
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn sizes_and_percents() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("64MB").unwrap(), 64_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_percent("80%").unwrap(), 80.0);
        assert_eq!(parse_percent("95").unwrap(), 95.0);
        assert!(parse_percent("120%").is_err());
        assert_eq!(format_bytes(12_900_000), "12.3 MiB");
    }
}
