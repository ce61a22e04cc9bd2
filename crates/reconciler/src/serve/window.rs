//! Maintenance windows: may a disruptive action start now for a node of a given role, and
//! until when?
//!
//! Pure: the instant is an argument, no clock is read, so the daemon's scheduler is tested
//! with any `now` it likes.
//!
//! Semantics, in the order they are applied:
//!
//! - A window *applies* to a role when its `roles` list is empty or names the role.
//! - No window at all in `cluster.yaml` means "any time": [`WindowState::AlwaysOpen`]. So does
//!   a list in which no window applies to the role asked about: a window restricts the roles
//!   it names, and says nothing about the others.
//! - A window starts on each listed weekday at `start_minute` local time in its `time_zone`
//!   and lasts `length` of real time (a 4 h window over a DST change is still 4 h long). It may
//!   cross midnight, even several days; Sunday's window runs into Monday.
//! - The start instant is open, the end instant is closed: `[start, start + length)`.
//! - Windows that overlap or touch merge: `closes_at` is the end of the whole open span.
//!   Spans are computed up to [`HORIZON_DAYS`] ahead, so windows that chain forever without a
//!   gap report a `closes_at` at least that far away.
//! - DST: a start that does not exist locally (the spring-forward gap) starts at the first
//!   instant after the gap; a start that exists twice (fall-back) uses the earlier one.
//! - `opens_at` is the next start within [`HORIZON_DAYS`] days, `None` if there is none.

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use slipway_model::inventory::{Role, Weekday, Window};

use super::ServeError;

/// How far ahead the next opening is searched, in days.
pub const HORIZON_DAYS: i64 = 14;

/// Whether disruptive actions may start, for one role at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// No maintenance window restricts this role: any time is fine.
    AlwaysOpen,
    /// Inside a window.
    Open {
        /// When the (merged) window closes.
        closes_at: DateTime<Utc>,
    },
    /// Outside every window.
    Closed {
        /// The next opening within [`HORIZON_DAYS`] days, if any.
        opens_at: Option<DateTime<Utc>>,
    },
}

impl WindowState {
    /// True when a disruptive action may start now.
    pub fn is_open(&self) -> bool {
        !matches!(self, WindowState::Closed { .. })
    }
}

/// Whether a window is open for `role` at `now`, given `cluster.yaml`'s windows.
///
/// Every window's time zone is checked, also those of windows that do not apply to `role`,
/// so a typo is reported whatever role is asked about.
pub fn window_state(
    windows: &[Window],
    role: Role,
    now: DateTime<Utc>,
) -> Result<WindowState, ServeError> {
    let zones = windows
        .iter()
        .map(|w| parse_zone(&w.time_zone))
        .collect::<Result<Vec<_>, _>>()?;
    let applicable: Vec<(&Window, Tz)> = windows
        .iter()
        .zip(zones)
        .filter(|(w, _)| w.roles.is_empty() || w.roles.contains(&role))
        .collect();
    if applicable.is_empty() {
        return Ok(WindowState::AlwaysOpen);
    }

    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = applicable
        .iter()
        .flat_map(|(w, tz)| occurrences(w, *tz, now))
        .collect();
    spans.sort();
    let merged = merge(spans);

    if let Some(&(_, end)) = merged
        .iter()
        .find(|(start, end)| *start <= now && now < *end)
    {
        return Ok(WindowState::Open { closes_at: end });
    }
    let horizon = now + ChronoDuration::days(HORIZON_DAYS);
    let opens_at = merged
        .iter()
        .map(|(start, _)| *start)
        .find(|start| *start > now && *start <= horizon);
    Ok(WindowState::Closed { opens_at })
}

fn parse_zone(zone: &str) -> Result<Tz, ServeError> {
    zone.parse::<Tz>()
        .map_err(|_| ServeError::UnknownTimeZone { zone: zone.into() })
}

/// Every `[start, end)` of `w` that could contain `now` or start within the horizon.
fn occurrences(w: &Window, tz: Tz, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let Ok(length) = ChronoDuration::from_std(w.length) else {
        // Longer than chrono can represent (hundreds of millions of years): treat as
        // never closing within any horizon we compute.
        return Vec::new();
    };
    if length <= ChronoDuration::zero() {
        return Vec::new();
    }
    let today = now.with_timezone(&tz).date_naive();
    // Look back far enough to catch a long window that started days ago and is still open.
    let back = length.num_days() + 2;
    let ahead = HORIZON_DAYS + 2;
    (-back..=ahead)
        .filter_map(|offset| today.checked_add_signed(ChronoDuration::days(offset)))
        .filter(|day| w.days.iter().any(|d| same_day(*d, day)))
        .filter_map(|day| start_instant(tz, day, w.start_minute))
        .filter_map(|start| start.checked_add_signed(length).map(|end| (start, end)))
        .collect()
}

fn same_day(d: Weekday, day: &NaiveDate) -> bool {
    use chrono::Datelike;
    let want = match d {
        Weekday::Mon => chrono::Weekday::Mon,
        Weekday::Tue => chrono::Weekday::Tue,
        Weekday::Wed => chrono::Weekday::Wed,
        Weekday::Thu => chrono::Weekday::Thu,
        Weekday::Fri => chrono::Weekday::Fri,
        Weekday::Sat => chrono::Weekday::Sat,
        Weekday::Sun => chrono::Weekday::Sun,
    };
    day.weekday() == want
}

/// The UTC instant a window starting on local `day` at `start_minute` begins.
fn start_instant(tz: Tz, day: NaiveDate, start_minute: u16) -> Option<DateTime<Utc>> {
    let local: NaiveDateTime =
        day.and_hms_opt(0, 0, 0)? + ChronoDuration::minutes(i64::from(start_minute));
    if let Some(t) = tz.from_local_datetime(&local).earliest() {
        return Some(t.with_timezone(&Utc));
    }
    // In a spring-forward gap: the first local minute after it that exists is the instant
    // the clocks jumped. Gaps are at most a day long (Samoa, 2011).
    (1..=2 * 24 * 60).find_map(|m| {
        tz.from_local_datetime(&(local + ChronoDuration::minutes(m)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// Merge sorted spans that overlap or touch.
fn merge(spans: Vec<(DateTime<Utc>, DateTime<Utc>)>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn merge_joins_overlapping_and_touching_spans_only() {
        let spans = vec![
            (at("2026-01-01T00:00:00Z"), at("2026-01-01T02:00:00Z")),
            (at("2026-01-01T01:00:00Z"), at("2026-01-01T03:00:00Z")),
            (at("2026-01-01T03:00:00Z"), at("2026-01-01T04:00:00Z")),
            (at("2026-01-01T05:00:00Z"), at("2026-01-01T06:00:00Z")),
        ];
        assert_eq!(
            merge(spans),
            vec![
                (at("2026-01-01T00:00:00Z"), at("2026-01-01T04:00:00Z")),
                (at("2026-01-01T05:00:00Z"), at("2026-01-01T06:00:00Z")),
            ]
        );
    }

    #[test]
    fn a_gap_start_moves_to_the_end_of_the_gap() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        // 02:30 does not exist that night; clocks jumped at 01:00 UTC (02:00 CET → 03:00 CEST).
        assert_eq!(
            start_instant(paris, day, 2 * 60 + 30),
            Some(at("2026-03-29T01:00:00Z"))
        );
    }
}
