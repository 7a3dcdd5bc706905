//! Cron patterns and time zones of a `schedule`, checked when the config is loaded, with the
//! crates the schedule math uses (croner, jiff; see `candor_core::schedule`).

use crate::When;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// A cron pattern checked (and its zone found), or why not, in a sentence.
pub fn check(when: &When) -> Result<(), String> {
    match when {
        When::Every { every, jitter } => {
            if every.as_millis() < 1000 {
                return Err("every must be at least 1s".into());
            }
            if jitter >= every {
                return Err("jitter must be less than every".into());
            }
            Ok(())
        }
        When::Cron { expr, timezone } => {
            let cron = pattern(expr)?;
            let tz = zone(timezone)?;
            // A pattern that never fires (`0 0 31 2 *`) is a mistake worth naming now.
            let now = Zoned::new(Timestamp::UNIX_EPOCH, tz);
            cron.find_next_occurrence(&now, false)
                .map(|_| ())
                .map_err(|_| format!("cron = \"{expr}\" never fires"))
        }
    }
}

pub fn pattern(expr: &str) -> Result<croner::Cron, String> {
    expr.parse::<croner::Cron>()
        .map_err(|e| format!("cron = \"{expr}\" is not a cron pattern ({e})"))
}

pub fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| {
        format!("timezone = \"{name}\" is not an IANA time zone; e.g. \"UTC\", \"Europe/Berlin\", \"America/New_York\"")
    })
}
