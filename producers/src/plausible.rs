//! What a number from outside may be before it becomes a record. Every parser of posted JSON
//! checks its numbers here, so an implausible value is refused at the edge with its field named
//! (the gateway answers 400 with `field` and `reason`) instead of travelling on to a processor,
//! where arithmetic on it could overflow, or to a table, where it would skew every aggregate.
//!
//! Each range says why it is what it is. They are wide: a legitimate value is never near a
//! bound, and a value past one is a unit mistake, a sentinel (-1 for "unknown") or an attack.
use std::{fmt::Display, ops::RangeInclusive};

use crate::scan_report::InvalidMessage;

/// 2000-01-01T00:00:00Z in microseconds. No event secpipe ingests predates it: an earlier time
/// is a clock that was never set, or a value in seconds or milliseconds read as microseconds.
pub const EARLIEST_EVENT_MICROS: i64 = 946_684_800_000_000;

/// How far after the receiver's clock an event time may be: one day, for skewed agent clocks
/// and time zones mistaken for UTC. Later than that is a unit mistake (nanoseconds read as
/// microseconds land around the year 56,000) or a wrong clock.
pub const MAX_AHEAD_MICROS: i64 = 86_400_000_000;

fn invalid(field: impl Display, reason: String) -> InvalidMessage {
    InvalidMessage {
        field: field.to_string(),
        reason,
    }
}

/// Checks an event time in microseconds since the Unix epoch: from 2000-01-01T00:00:00Z
/// ([`EARLIEST_EVENT_MICROS`]) to one day after `now_micros` ([`MAX_AHEAD_MICROS`]), both
/// included. See [`event_time_within`].
pub fn event_time(
    field: impl Display,
    micros: i64,
    now_micros: i64,
) -> Result<i64, InvalidMessage> {
    event_time_within(field, micros, now_micros, MAX_AHEAD_MICROS)
}

/// The units an epoch number may have been written in, as factors to microseconds.
const UNITS: [(&str, Unit); 4] = [
    ("seconds", Unit::Times(1_000_000)),
    ("milliseconds", Unit::Times(1_000)),
    ("microseconds", Unit::Times(1)),
    ("nanoseconds", Unit::Over(1_000)),
];

#[derive(Clone, Copy)]
enum Unit {
    Times(i64),
    Over(i64),
}

/// The units in which `n` is a plausible time (from 2000 to `latest`), most coarse first. The
/// plausible windows of two units never overlap while `latest` is before the year 2970, so a
/// number names at most one unit; [`event_time_within`] still refuses one that names two.
pub fn plausible_units(n: i64, latest: i64) -> Vec<&'static str> {
    UNITS
        .iter()
        .filter(|(_, unit)| {
            let micros = match *unit {
                Unit::Times(f) => n.checked_mul(f),
                Unit::Over(d) => Some(n / d),
            };
            micros.is_some_and(|t| (EARLIEST_EVENT_MICROS..=latest).contains(&t))
        })
        .map(|(name, _)| *name)
        .collect()
}

/// Checks an event time in microseconds since the Unix epoch: from 2000-01-01T00:00:00Z
/// ([`EARLIEST_EVENT_MICROS`]) to `max_ahead_micros` after `now_micros`, both included. A time
/// outside is refused with the unit it was probably written in (seconds, milliseconds,
/// nanoseconds: the agent's mistake is named, never silently converted); a number plausible in
/// more than one unit is refused as ambiguous.
///
/// Errors: `"{t} is before 2000-01-01T00:00:00Z: expected microseconds since the Unix epoch"`
/// and `"{t} is more than {skew} after the receiver's clock ({now}): expected microseconds
/// since the Unix epoch"`, each followed by a guess of the unit when one fits.
pub fn event_time_within(
    field: impl Display,
    micros: i64,
    now_micros: i64,
    max_ahead_micros: i64,
) -> Result<i64, InvalidMessage> {
    let latest = now_micros.saturating_add(max_ahead_micros.max(0));
    let plausible = |t: i64| (EARLIEST_EVENT_MICROS..=latest).contains(&t);
    // The common case: plausible in microseconds and in no other unit.
    if plausible(micros)
        && micros / 1_000 < EARLIEST_EVENT_MICROS
        && micros.saturating_mul(1_000) > latest
    {
        return Ok(micros);
    }
    let units = plausible_units(micros, latest);
    if units.len() > 1 {
        return Err(invalid(
            field,
            format!(
                "{micros} is ambiguous: a plausible time in {}; send microseconds since the Unix epoch",
                units.join(" and in ")
            ),
        ));
    }
    let guess = units
        .first()
        .map(|unit| format!(" (this looks like {unit})"))
        .unwrap_or_default();
    let when = if micros < EARLIEST_EVENT_MICROS {
        "before 2000-01-01T00:00:00Z".to_string()
    } else {
        format!(
            "more than {} after the receiver's clock ({})",
            skew_text(max_ahead_micros),
            rfc3339(now_micros)
        )
    };
    Err(invalid(
        field,
        format!("{micros} is {when}: expected microseconds since the Unix epoch{guess}"),
    ))
}

/// `86400000000` µs as `1 day`, other skews in seconds.
fn skew_text(micros: i64) -> String {
    match micros {
        86_400_000_000 => "1 day".into(),
        m => format!("{} s", m / 1_000_000),
    }
}

/// `micros` as RFC 3339 text, or the number itself where the calendar ends.
fn rfc3339(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{micros} µs"))
}

/// Checks that `value` lies in `range`; `what` says what the field holds, for the error text
/// `"{value} is outside {start}..={end} ({what})"`. The field's name is only rendered for an
/// error (pass `format_args!`), so checking costs no allocation on the ingest path.
pub fn in_range(
    field: impl Display,
    value: i64,
    range: &RangeInclusive<i64>,
    what: &str,
) -> Result<(), InvalidMessage> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{value} is outside {}..={} ({what})",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// [`in_range`] for an optional field: absent is fine.
pub fn opt_in_range<T: Into<i64> + Copy>(
    field: impl Display,
    value: Option<T>,
    range: &RangeInclusive<i64>,
    what: &str,
) -> Result<(), InvalidMessage> {
    value.map_or(Ok(()), |v| in_range(field, v.into(), range, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000_000; // 2026-11-30T00:53:20Z

    #[test]
    fn event_times_from_2000_to_one_day_ahead_pass() {
        for t in [EARLIEST_EVENT_MICROS, NOW, NOW + MAX_AHEAD_MICROS] {
            assert_eq!(event_time("t", t, NOW), Ok(t));
        }
    }

    #[test]
    fn implausible_event_times_are_refused_with_the_likely_unit() {
        let reason = |t| event_time("envelope.event_time", t, NOW).unwrap_err();
        let e = reason(1_796_000_000);
        assert_eq!(e.field, "envelope.event_time");
        assert!(
            e.reason.contains("before 2000-01-01") && e.reason.contains("seconds"),
            "{e}"
        );
        assert!(reason(1_796_000_000_000).reason.contains("milliseconds"));
        let e = reason(1_796_000_000_000_000_000);
        assert!(
            e.reason
                .contains("more than 1 day after the receiver's clock (2026-"),
            "{e}"
        );
        assert!(e.reason.contains("nanoseconds"), "{e}");
        for t in [
            i64::MIN,
            -1,
            0,
            EARLIEST_EVENT_MICROS - 1,
            NOW + MAX_AHEAD_MICROS + 1,
            i64::MAX,
        ] {
            assert!(event_time("t", t, NOW).is_err(), "{t}");
        }
        // A receiver clock at the end of time cannot overflow the window; a time there is
        // also a plausible time in nanoseconds, so it is refused as ambiguous.
        assert!(event_time("t", i64::MAX, i64::MAX)
            .unwrap_err()
            .reason
            .contains("ambiguous"));
        assert!(event_time("t", 0, i64::MIN).is_err());
    }

    #[test]
    fn the_skew_is_configurable_and_the_unit_is_named_or_the_number_refused_as_ambiguous() {
        let hour = 3_600_000_000;
        assert_eq!(
            event_time_within("t", NOW + hour, NOW, hour),
            Ok(NOW + hour)
        );
        let e = event_time_within("t", NOW + hour + 1, NOW, hour).unwrap_err();
        assert!(e.reason.contains("more than 3600 s after"), "{e}");
        for (n, unit) in [
            (NOW / 1_000_000, "seconds"),
            (NOW / 1_000, "milliseconds"),
            (NOW * 1_000, "nanoseconds"),
        ] {
            let e = event_time_within("envelope.event_time", n, NOW, hour).unwrap_err();
            assert_eq!(e.field, "envelope.event_time");
            assert!(
                e.reason.ends_with(&format!("(this looks like {unit})")),
                "{e}"
            );
            assert_eq!(plausible_units(n, NOW), vec![unit]);
        }
        // With a receiver clock far in the future, 2e15 is a time in both milliseconds and
        // microseconds: refused, naming both.
        let far = i64::MAX / 2;
        let e = event_time_within("t", 2_000_000_000_000_000, far, 0).unwrap_err();
        assert!(
            e.reason
                .contains("ambiguous: a plausible time in milliseconds and in microseconds"),
            "{e}"
        );
    }

    #[test]
    fn range_errors_name_the_field_the_range_and_the_meaning() {
        assert_eq!(in_range("pid", 7, &(0..=9), "a pid"), Ok(()));
        let e = in_range("pid", -1, &(0..=9), "a pid").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("pid", "-1 is outside 0..=9 (a pid)")
        );
        assert_eq!(opt_in_range::<i32>("p", None, &(0..=9), "x"), Ok(()));
        assert!(opt_in_range("p", Some(10i32), &(0..=9), "x").is_err());
    }
}
