//! A cron expression as other schedulers write it: systemd's `OnCalendar=` and Kubernetes'
//! five-field `schedule`, when it can be said exactly (else None, and the caller warns).

/// A schedule's time in a warning: `cron "0 3 * * *" in UTC`, `every 15m`.
pub fn words(when: &candor_spec::When) -> String {
    match when {
        candor_spec::When::Cron { expr, timezone } => format!("cron \"{expr}\" in {timezone}"),
        candor_spec::When::Every { every, .. } => {
            format!("every {}", candor_spec::format_duration(*every))
        }
    }
}

/// The five or six fields of `expr` (seconds first, "0" when not written), aliases expanded.
fn fields(expr: &str) -> Option<[String; 6]> {
    let expanded = match expr.trim().to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
        "@monthly" => "0 0 1 * *".into(),
        "@weekly" => "0 0 * * 0".into(),
        "@daily" | "@midnight" => "0 0 * * *".into(),
        "@hourly" => "0 * * * *".into(),
        s if s.starts_with('@') => return None,
        s => s.to_string(),
    };
    let mut f: Vec<String> = expanded.split_whitespace().map(str::to_string).collect();
    if f.len() == 5 {
        f.insert(0, "0".into());
    }
    f.try_into().ok()
}

/// `expr` in Kubernetes' five fields (minute first), and whether that is exact (its seconds
/// field, if any, was 0: Kubernetes schedules by the minute).
pub fn five_fields(expr: &str) -> Option<(String, bool)> {
    let f = fields(expr)?;
    Some((f[1..].join(" "), f[0] == "0"))
}

/// `every` as a five-field cron expression when the period divides an hour or a day (fires
/// on the clock's minutes from the hour, where Candor fires on the job's own phase).
pub fn every_as_cron(every: std::time::Duration) -> Option<String> {
    let s = every.as_secs();
    if every.subsec_nanos() != 0 || s == 0 || !s.is_multiple_of(60) {
        return None;
    }
    match (s / 60, s / 3600) {
        (1, _) => Some("* * * * *".into()),
        (60, _) => Some("0 * * * *".into()),
        (m, _) if m < 60 && 60 % m == 0 => Some(format!("*/{m} * * * *")),
        (_, h) if s.is_multiple_of(3600) && h < 24 && 24 % h == 0 => Some(format!("0 */{h} * * *")),
        _ if s == 86_400 => Some("0 0 * * *".into()),
        _ => None,
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// One value of a field: a number, or a month's or day's name, within `lo..=hi`.
fn value(s: &str, lo: u32, hi: u32, names: &[&str]) -> Option<u32> {
    let n = match s.parse::<u32>() {
        Ok(n) => n,
        Err(_) => {
            let i = names.iter().position(|m| m.eq_ignore_ascii_case(s))?;
            i as u32 + lo
        }
    };
    (lo..=hi).contains(&n).then_some(n)
}

/// A time or date field (`*`, `N`, `A-B`, `*/S`, `A/S`, lists of them) in systemd's words
/// (`*`, `NN`, `A..B`, `A/S`), numbers two digits wide.
fn calendar_field(f: &str, lo: u32, hi: u32, names: &[&str]) -> Option<String> {
    let mut out = Vec::new();
    for item in f.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s.parse::<u32>().ok().filter(|s| *s > 0)?)),
            None => (item, None),
        };
        let word = match (range, step) {
            ("*", None) => "*".to_string(),
            ("*", Some(s)) => format!("{lo:02}/{s}"),
            (r, step) => match r.split_once('-') {
                Some((a, b)) if step.is_none() => {
                    let (a, b) = (value(a, lo, hi, names)?, value(b, lo, hi, names)?);
                    (a <= b).then(|| format!("{a:02}..{b:02}"))?
                }
                Some(_) => return None,
                None => {
                    let a = value(r, lo, hi, names)?;
                    match step {
                        Some(s) => format!("{a:02}/{s}"),
                        None => format!("{a:02}"),
                    }
                }
            },
        };
        out.push(word);
    }
    Some(out.join(","))
}

/// The day-of-week field in systemd's words (`Mon..Fri`, `Sat,Sun`); cron's 0 and 7 are Sunday.
fn weekdays(f: &str) -> Option<String> {
    let day = |s: &str| -> Option<u32> {
        match s.parse::<u32>() {
            Ok(7) => Some(0),
            Ok(n) if n < 7 => Some(n),
            Ok(_) => None,
            Err(_) => DAYS
                .iter()
                .position(|d| d.eq_ignore_ascii_case(s))
                .map(|i| i as u32),
        }
    };
    let mut out = Vec::new();
    for item in f.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                // `5-7` is Friday to Sunday; a range that wraps is not said here.
                let b = if b == 0 && a > 0 { 7 } else { b };
                if a > b {
                    return None;
                }
                let name = |n: u32| DAYS[(n % 7) as usize];
                out.push(format!("{}..{}", name(a), name(b)));
            }
            None => out.push(DAYS[day(item)? as usize].to_string()),
        }
    }
    Some(out.join(","))
}

/// `expr` in `timezone` as systemd's `OnCalendar=` value, e.g. `*-*-* 03:00:00 Europe/Berlin`.
/// None when it cannot be said exactly: a day of the month and a day of the week both
/// restricted (cron matches either, systemd both), a stepped range, `L`, `W` or `#`.
pub fn on_calendar(expr: &str, timezone: &str) -> Option<String> {
    let [sec, min, hour, dom, month, dow] = fields(expr)?;
    if dom != "*" && dow != "*" {
        return None;
    }
    let sec = calendar_field(&sec, 0, 59, &[])?;
    let min = calendar_field(&min, 0, 59, &[])?;
    let hour = calendar_field(&hour, 0, 23, &[])?;
    let dom = calendar_field(&dom, 1, 31, &[])?;
    let month = calendar_field(&month, 1, 12, &MONTHS)?;
    let days = match dow.as_str() {
        "*" => String::new(),
        d => format!("{} ", weekdays(d)?),
    };
    Some(format!(
        "{days}*-{month}-{dom} {hour}:{min}:{sec} {timezone}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_becomes_on_calendar_when_it_can_be_said_exactly() {
        for (expr, tz, want) in [
            ("0 3 * * *", "UTC", Some("*-*-* 03:00:00 UTC")),
            (
                "30 2 * * *",
                "Europe/Berlin",
                Some("*-*-* 02:30:00 Europe/Berlin"),
            ),
            ("*/15 * * * *", "UTC", Some("*-*-* *:00/15:00 UTC")),
            (
                "0 9 * * MON-FRI",
                "UTC",
                Some("Mon..Fri *-*-* 09:00:00 UTC"),
            ),
            ("0 9 * * 1-5", "UTC", Some("Mon..Fri *-*-* 09:00:00 UTC")),
            ("0 0 * * 5-7", "UTC", Some("Fri..Sun *-*-* 00:00:00 UTC")),
            ("0 0 * * 0,6", "UTC", Some("Sun,Sat *-*-* 00:00:00 UTC")),
            ("0 0 29 2 *", "UTC", Some("*-02-29 00:00:00 UTC")),
            ("0 0 1 jan,jul *", "UTC", Some("*-01,07-01 00:00:00 UTC")),
            ("15 0 8-17 * * *", "UTC", Some("*-*-* 08..17:00:15 UTC")),
            ("@daily", "UTC", Some("*-*-* 00:00:00 UTC")),
            ("@weekly", "UTC", Some("Sun *-*-* 00:00:00 UTC")),
            ("0 0 1 * MON", "UTC", None),
            ("0 8-18/2 * * *", "UTC", None),
            ("0 0 L * *", "UTC", None),
            ("0 0 * * FRI-MON", "UTC", None),
        ] {
            assert_eq!(on_calendar(expr, tz).as_deref(), want, "{expr}");
        }
    }

    #[test]
    fn kubernetes_takes_five_fields_and_every_when_it_divides_an_hour_or_a_day() {
        let five = |e: &str| five_fields(e).unwrap();
        assert_eq!(five("0 3 * * *"), ("0 3 * * *".into(), true));
        assert_eq!(five("0 0 3 * * *"), ("0 3 * * *".into(), true));
        assert_eq!(five("@hourly"), ("0 * * * *".into(), true));
        assert_eq!(five("30 0 3 * * *"), ("0 3 * * *".into(), false));
        let every = |s: u64| every_as_cron(std::time::Duration::from_secs(s));
        assert_eq!(every(60).as_deref(), Some("* * * * *"));
        assert_eq!(every(900).as_deref(), Some("*/15 * * * *"));
        assert_eq!(every(3600).as_deref(), Some("0 * * * *"));
        assert_eq!(every(7200).as_deref(), Some("0 */2 * * *"));
        assert_eq!(every(86_400).as_deref(), Some("0 0 * * *"));
        for none in [1, 90, 420, 3 * 3600 + 60, 5 * 3600, 2 * 86_400] {
            assert_eq!(every(none), None, "{none}s");
        }
    }
}
