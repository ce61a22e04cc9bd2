//! Maintenance windows: open and closed around the edges, across midnight and the week's
//! end, per role, merged when they overlap, over Europe/Paris's 2026 DST changes, and an
//! unknown time zone.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use proptest::prelude::*;
use slipway::serve::window::{window_state, WindowState};
use slipway::serve::ServeError;
use slipway_model::inventory::{Role, Weekday, Window};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn window(days: &[Weekday], hh_mm: &str, hours: u64, zone: &str, roles: &[Role]) -> Window {
    let (h, m) = hh_mm.split_once(':').unwrap();
    Window {
        days: days.to_vec(),
        start_minute: h.parse::<u16>().unwrap() * 60 + m.parse::<u16>().unwrap(),
        length: Duration::from_secs(hours * 3600),
        time_zone: zone.into(),
        roles: roles.to_vec(),
    }
}

fn state(windows: &[Window], role: Role, now: &str) -> WindowState {
    window_state(windows, role, at(now)).unwrap()
}

fn open_until(s: &str) -> WindowState {
    WindowState::Open { closes_at: at(s) }
}

fn closed_until(s: &str) -> WindowState {
    WindowState::Closed {
        opens_at: Some(at(s)),
    }
}

#[test]
fn no_window_means_any_time() {
    let s = state(&[], Role::Server, "2026-06-06T12:00:00Z");
    assert_eq!(s, WindowState::AlwaysOpen);
    assert!(s.is_open());
}

#[test]
fn the_start_instant_is_open_and_the_end_instant_is_closed() {
    // Saturday 2026-06-06, 02:00–04:00 UTC.
    let w = [window(&[Weekday::Sat], "02:00", 2, "UTC", &[])];
    assert_eq!(
        state(&w, Role::Agent, "2026-06-06T01:59:59Z"),
        closed_until("2026-06-06T02:00:00Z")
    );
    assert_eq!(
        state(&w, Role::Agent, "2026-06-06T02:00:00Z"),
        open_until("2026-06-06T04:00:00Z")
    );
    assert_eq!(
        state(&w, Role::Agent, "2026-06-06T03:59:59Z"),
        open_until("2026-06-06T04:00:00Z")
    );
    let after = state(&w, Role::Agent, "2026-06-06T04:00:00Z");
    assert_eq!(after, closed_until("2026-06-13T02:00:00Z"));
    assert!(!after.is_open());
}

#[test]
fn a_window_crossing_midnight_is_open_on_the_next_day() {
    // Saturday 22:00 Paris (CET, UTC+1 in January) for 4 h: until Sunday 02:00 local.
    let w = [window(&[Weekday::Sat], "22:00", 4, "Europe/Paris", &[])];
    assert_eq!(
        state(&w, Role::Server, "2026-01-10T20:59:00Z"),
        closed_until("2026-01-10T21:00:00Z")
    );
    // Sunday 01:30 local.
    assert_eq!(
        state(&w, Role::Server, "2026-01-11T00:30:00Z"),
        open_until("2026-01-11T01:00:00Z")
    );
    assert_eq!(
        state(&w, Role::Server, "2026-01-11T01:00:00Z"),
        closed_until("2026-01-17T21:00:00Z")
    );
}

#[test]
fn a_sunday_window_runs_into_monday() {
    // Sunday 23:00 UTC for 3 h: the week wraps, Monday 00:00–02:00 is still inside.
    let w = [window(&[Weekday::Sun], "23:00", 3, "UTC", &[])];
    assert_eq!(
        state(&w, Role::Agent, "2026-06-08T01:00:00Z"),
        open_until("2026-06-08T02:00:00Z")
    );
    assert_eq!(
        state(&w, Role::Agent, "2026-06-08T02:00:00Z"),
        closed_until("2026-06-14T23:00:00Z")
    );
}

#[test]
fn a_window_may_last_several_days() {
    // Friday 18:00 UTC for 60 h: the whole weekend, until Monday 06:00.
    let w = [window(&[Weekday::Fri], "18:00", 60, "UTC", &[])];
    assert_eq!(
        state(&w, Role::Server, "2026-06-07T05:00:00Z"),
        open_until("2026-06-08T06:00:00Z")
    );
    assert_eq!(
        state(&w, Role::Server, "2026-06-08T06:00:00Z"),
        closed_until("2026-06-12T18:00:00Z")
    );
}

#[test]
fn windows_apply_per_role() {
    let w = [
        window(&[Weekday::Sat], "02:00", 2, "UTC", &[Role::Server]),
        window(&[Weekday::Tue], "02:00", 2, "UTC", &[Role::Agent]),
    ];
    let now = "2026-06-06T03:00:00Z";
    assert_eq!(
        state(&w, Role::Server, now),
        open_until("2026-06-06T04:00:00Z")
    );
    assert_eq!(
        state(&w, Role::Agent, now),
        closed_until("2026-06-09T02:00:00Z")
    );

    // A window naming only servers restricts servers, not agents.
    let servers_only = [window(&[Weekday::Sat], "02:00", 2, "UTC", &[Role::Server])];
    assert_eq!(
        state(&servers_only, Role::Agent, "2026-06-10T12:00:00Z"),
        WindowState::AlwaysOpen
    );
    assert_eq!(
        state(&servers_only, Role::Server, "2026-06-10T12:00:00Z"),
        closed_until("2026-06-13T02:00:00Z")
    );

    // A window listing both roles applies to both.
    let both = [window(
        &[Weekday::Sat],
        "02:00",
        2,
        "UTC",
        &[Role::Server, Role::Agent],
    )];
    for role in [Role::Server, Role::Agent] {
        assert_eq!(state(&both, role, now), open_until("2026-06-06T04:00:00Z"));
    }
}

#[test]
fn overlapping_windows_merge_into_one_span() {
    // Saturday 22:00–02:00 and Sunday 01:00–04:00: open without a break until 04:00.
    let w = [
        window(&[Weekday::Sat], "22:00", 4, "UTC", &[]),
        window(&[Weekday::Sun], "01:00", 3, "UTC", &[]),
    ];
    assert_eq!(
        state(&w, Role::Agent, "2026-06-06T23:00:00Z"),
        open_until("2026-06-07T04:00:00Z")
    );
    // Inside the second window only.
    assert_eq!(
        state(&w, Role::Agent, "2026-06-07T03:00:00Z"),
        open_until("2026-06-07T04:00:00Z")
    );
}

#[test]
fn touching_windows_merge_and_disjoint_ones_do_not() {
    let w = [
        window(&[Weekday::Sat], "00:00", 2, "UTC", &[]),
        window(&[Weekday::Sat], "02:00", 2, "UTC", &[]),
        window(&[Weekday::Sat], "05:00", 1, "UTC", &[]),
    ];
    assert_eq!(
        state(&w, Role::Server, "2026-06-06T01:00:00Z"),
        open_until("2026-06-06T04:00:00Z")
    );
    assert_eq!(
        state(&w, Role::Server, "2026-06-06T04:30:00Z"),
        closed_until("2026-06-06T05:00:00Z")
    );
}

#[test]
fn the_earliest_opening_across_time_zones_wins() {
    // Monday 09:00 Tokyo is Monday 00:00 UTC, before Tuesday 10:00 UTC.
    let w = [
        window(&[Weekday::Tue], "10:00", 1, "UTC", &[]),
        window(&[Weekday::Mon], "09:00", 1, "Asia/Tokyo", &[]),
    ];
    assert_eq!(
        state(&w, Role::Agent, "2026-06-07T12:00:00Z"),
        closed_until("2026-06-08T00:00:00Z")
    );
}

#[test]
fn paris_spring_forward_a_missing_start_opens_when_the_clocks_jump() {
    // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC; 02:30 does not exist.
    let w = [window(&[Weekday::Sun], "02:30", 1, "Europe/Paris", &[])];
    assert_eq!(
        state(&w, Role::Server, "2026-03-29T00:59:59Z"),
        closed_until("2026-03-29T01:00:00Z")
    );
    // Opens at 03:00 CEST, lasts one real hour.
    assert_eq!(
        state(&w, Role::Server, "2026-03-29T01:00:00Z"),
        open_until("2026-03-29T02:00:00Z")
    );
    // A week later 02:30 exists again, in CEST (UTC+2).
    assert_eq!(
        state(&w, Role::Server, "2026-03-29T02:00:00Z"),
        closed_until("2026-04-05T00:30:00Z")
    );
}

#[test]
fn paris_spring_forward_a_window_lasts_real_time_across_the_jump() {
    // Sunday 01:30 CET (00:30 UTC) for 2 h ends at 02:30 UTC, which reads 04:30 CEST.
    let w = [window(&[Weekday::Sun], "01:30", 2, "Europe/Paris", &[])];
    assert_eq!(
        state(&w, Role::Agent, "2026-03-29T02:29:59Z"),
        open_until("2026-03-29T02:30:00Z")
    );
}

#[test]
fn paris_fall_back_an_ambiguous_start_uses_the_earlier_instant() {
    // 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:30 happens twice,
    // at 00:30 UTC (CEST) and at 01:30 UTC (CET). The window starts at the first.
    let w = [window(&[Weekday::Sun], "02:30", 1, "Europe/Paris", &[])];
    assert_eq!(
        state(&w, Role::Server, "2026-10-25T00:29:59Z"),
        closed_until("2026-10-25T00:30:00Z")
    );
    assert_eq!(
        state(&w, Role::Server, "2026-10-25T00:30:00Z"),
        open_until("2026-10-25T01:30:00Z")
    );
    // The second 02:30 does not open it again; next week's 02:30 CET (UTC+1) does.
    assert_eq!(
        state(&w, Role::Server, "2026-10-25T01:30:00Z"),
        closed_until("2026-11-01T01:30:00Z")
    );
}

#[test]
fn no_start_within_the_horizon_gives_no_opening() {
    let w = [window(&[], "02:00", 2, "UTC", &[])];
    assert_eq!(
        state(&w, Role::Server, "2026-06-06T03:00:00Z"),
        WindowState::Closed { opens_at: None }
    );
}

#[test]
fn an_unknown_time_zone_is_an_error_naming_it() {
    let w = [
        window(&[Weekday::Sat], "02:00", 2, "UTC", &[Role::Server]),
        // Applies to agents only, still checked when servers are asked about.
        window(&[Weekday::Sat], "02:00", 2, "Europe/Pariss", &[Role::Agent]),
    ];
    for role in [Role::Server, Role::Agent] {
        let err = window_state(&w, role, at("2026-06-06T03:00:00Z")).unwrap_err();
        assert!(
            matches!(&err, ServeError::UnknownTimeZone { zone } if zone == "Europe/Pariss"),
            "{err:?}"
        );
        assert!(err.to_string().contains("\"Europe/Pariss\""), "{err}");
    }
}

fn dst_fixture() -> Vec<Window> {
    vec![
        window(&[Weekday::Sun], "02:30", 1, "Europe/Paris", &[]),
        window(
            &[Weekday::Sat, Weekday::Sun],
            "23:00",
            4,
            "Europe/Paris",
            &[],
        ),
        window(
            &[Weekday::Wed],
            "12:00",
            30,
            "America/New_York",
            &[Role::Agent],
        ),
        window(&[Weekday::Mon], "00:00", 1, "UTC", &[Role::Server]),
    ]
}

proptest! {
    // The two answers agree with each other at any instant of 2026 (both DST changes
    // included): an opening really opens, a closing really closes.
    #[test]
    fn the_announced_edges_are_real(secs in 0i64..365 * 24 * 3600, agent in any::<bool>()) {
        let windows = dst_fixture();
        let role = if agent { Role::Agent } else { Role::Server };
        let now = at("2026-01-01T00:00:00Z") + ChronoDuration::seconds(secs);
        let one = ChronoDuration::seconds(1);
        match window_state(&windows, role, now).unwrap() {
            WindowState::Open { closes_at } => {
                prop_assert!(closes_at > now);
                prop_assert!(window_state(&windows, role, closes_at - one).unwrap().is_open());
                prop_assert!(!window_state(&windows, role, closes_at).unwrap().is_open());
            }
            WindowState::Closed { opens_at } => {
                let opens_at = opens_at.expect("these windows open every week");
                prop_assert!(opens_at > now);
                prop_assert!(opens_at <= now + ChronoDuration::days(7));
                prop_assert!(!window_state(&windows, role, opens_at - one).unwrap().is_open());
                prop_assert!(window_state(&windows, role, opens_at).unwrap().is_open());
            }
            WindowState::AlwaysOpen => prop_assert!(false, "windows apply to both roles"),
        }
    }
}
