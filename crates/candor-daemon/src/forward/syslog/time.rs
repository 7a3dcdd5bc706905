//! A unix time in ms as the calendar date and time of day in UTC, written as syslog's two
//! timestamp forms.

/// A UTC date and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1-12.
    pub month: u32,
    /// 1-31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Civil {
    /// Howard Hinnant's `civil_from_days` (proleptic Gregorian calendar).
    pub fn from_unix_ms(ms: i64) -> Civil {
        let days = ms.div_euclid(86_400_000);
        let in_day = ms.rem_euclid(86_400_000);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let secs = in_day / 1000;
        Civil {
            year,
            month: month as u32,
            day: day as u32,
            hour: (secs / 3600) as u32,
            minute: (secs / 60 % 60) as u32,
            second: (secs % 60) as u32,
            millis: (in_day % 1000) as u32,
        }
    }

    /// RFC 5424's TIMESTAMP: `2026-12-07T13:05:30.123Z`.
    pub fn write_rfc3339_ms(&self, buf: &mut Vec<u8>) {
        let Civil {
            year,
            month,
            day,
            hour,
            minute,
            second,
            millis,
        } = *self;
        buf.extend_from_slice(
            format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
                .as_bytes(),
        );
    }

    /// RFC 3164's TIMESTAMP: `Dec  7 13:05:30` (the day padded with a space; no year).
    pub fn write_bsd(&self, buf: &mut Vec<u8>) {
        let month = MONTHS[(self.month as usize).clamp(1, 12) - 1];
        buf.extend_from_slice(
            format!(
                "{month} {:>2} {:02}:{:02}:{:02}",
                self.day, self.hour, self.minute, self.second
            )
            .as_bytes(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc3339(ms: i64) -> String {
        let mut buf = Vec::new();
        Civil::from_unix_ms(ms).write_rfc3339_ms(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn dates_match_the_calendar() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_648_730_123), "2026-12-07T13:05:30.123Z");
        // A leap day, the last ms of a century year that is a leap year, and before 1970.
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(978_307_199_999), "2000-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        let mut buf = Vec::new();
        Civil::from_unix_ms(1_796_648_730_123).write_bsd(&mut buf);
        assert_eq!(buf, b"Dec  7 13:05:30");
        buf.clear();
        Civil::from_unix_ms(978_307_199_999).write_bsd(&mut buf);
        assert_eq!(buf, b"Dec 31 23:59:59");
    }
}
