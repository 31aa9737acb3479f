//! Which snapshots `strata forget` keeps: a pure function of the snapshot list and a policy.
//!
//! The rules follow restic's so that people who know one know the other. Snapshots are grouped (by host and
//! paths unless told otherwise) and each group is judged on its own, newest first:
//! - `keep_last n` keeps the n newest;
//! - `keep_hourly/daily/weekly/monthly/yearly n` keep the newest snapshot of each of the n most recent hours
//!   (days, ISO weeks, months, years) that have a snapshot;
//! - `keep_within d` keeps every snapshot taken within d of the group's newest one, where d is written as
//!   restic writes it (`1y5m7d2h`: years, **months**, days, hours) and subtracted on the calendar as restic does;
//! - `keep_tags` keeps every snapshot carrying one of the tags.
//!
//! Calendar buckets are computed in UTC. A snapshot is kept if any rule keeps it, and the reasons are returned
//! so `--dry-run` can explain each decision. A policy with no rule at all keeps everything: forgetting
//! everything must be asked for explicitly, never be the result of a missing flag.

use std::collections::{BTreeMap, BTreeSet};

/// The fields of a snapshot the policy looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Snapshot id (opaque here).
    pub id: String,
    /// Time the snapshot was taken, milliseconds since the Unix epoch (snapshots seconds apart must still
    /// order correctly).
    pub time_ms: i64,
    /// Host it was taken on.
    pub host: String,
    /// Paths it covers.
    pub paths: Vec<String>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// What to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep the n newest.
    pub keep_last: Option<usize>,
    /// Keep the newest of each of the n most recent hours with snapshots.
    pub keep_hourly: Option<usize>,
    /// Likewise per day.
    pub keep_daily: Option<usize>,
    /// Likewise per ISO week.
    pub keep_weekly: Option<usize>,
    /// Likewise per month.
    pub keep_monthly: Option<usize>,
    /// Likewise per year.
    pub keep_yearly: Option<usize>,
    /// Keep everything taken within this long of the group's newest snapshot.
    pub keep_within: Option<RetentionDuration>,
    /// Keep every snapshot with one of these tags.
    pub keep_tags: Vec<String>,
}

impl Policy {
    /// Whether no rule is set (such a policy keeps everything).
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// A calendar duration as restic's `--keep-within` takes it: `1y5m7d2h` is one year, five months, seven days
/// and two hours. `m` is months, as in restic; minutes are not a retention unit (a restic user's `6m` must
/// never keep six minutes of history).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionDuration {
    /// Years.
    pub years: i64,
    /// Months.
    pub months: i64,
    /// Days.
    pub days: i64,
    /// Hours.
    pub hours: i64,
}

impl RetentionDuration {
    /// Parses `1y5m7d2h` (any of the parts, each at most once, in that order).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let bad = |why: &str| {
            format!("invalid retention duration {text:?}: {why} (write it as restic does, e.g. 1y5m7d2h: years, months, days, hours)")
        };
        if t.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut out = RetentionDuration::default();
        let mut rest = t;
        let mut last_unit = 0usize;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| bad("a number needs a unit"))?;
            if digits == 0 {
                return Err(bad("each part starts with a number"));
            }
            let n: i64 = rest[..digits].parse().map_err(|_| bad("a number is too large"))?;
            let unit = rest[digits..].chars().next().expect("a unit follows the digits");
            let (slot, order) = match unit {
                'y' => (&mut out.years, 1),
                'm' => (&mut out.months, 2),
                'd' => (&mut out.days, 3),
                'h' => (&mut out.hours, 4),
                'w' | 's' => return Err(bad(&format!("{unit:?} is not a unit here; use days"))),
                other => return Err(bad(&format!("unknown unit {other:?}"))),
            };
            if order <= last_unit {
                return Err(bad("units must appear once each, in the order y, m, d, h"));
            }
            if n > 100_000 {
                return Err(bad("a number is too large"));
            }
            *slot = n;
            last_unit = order;
            rest = &rest[digits + unit.len_utf8()..];
        }
        Ok(out)
    }

    /// The time `self` before `time_ms`, on the calendar (UTC): years and months first (a day that does not
    /// exist in the target month rolls over into the next, as restic's Go `AddDate` does), then days, then hours.
    pub fn before(&self, time_ms: i64) -> i64 {
        // Snapshot times come from clients' clocks; anything beyond ±100,000 years is clamped, so the
        // arithmetic below cannot overflow.
        const LIMIT_MS: i64 = 100_000 * 366 * 86_400_000;
        let time_ms = time_ms.clamp(-LIMIT_MS, LIMIT_MS);
        let secs = time_ms.div_euclid(1000);
        let (days, in_day_ms) = (secs.div_euclid(86_400), time_ms - secs.div_euclid(86_400) * 86_400_000);
        let (y, m, d) = civil_from_days(days);
        let months = y * 12 + i64::from(m) - 1 - (self.years * 12 + self.months);
        let (ny, nm) = (months.div_euclid(12), months.rem_euclid(12) as u32 + 1);
        let day = days_from_civil(ny, nm, 1) + i64::from(d) - 1 - self.days;
        day * 86_400_000 + in_day_ms - self.hours * 3_600_000
    }
}

impl std::fmt::Display for RetentionDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, unit) in [(self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h")] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// Days since 1970-01-01 of a (year, month, day) of the proleptic Gregorian calendar.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    // Howard Hinnant's algorithm, the inverse of `civil_from_days`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How snapshots are grouped before the policy is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupBy {
    /// Separate groups per host.
    pub host: bool,
    /// Separate groups per set of paths.
    pub paths: bool,
}

impl GroupBy {
    /// restic's default: host and paths.
    pub const HOST_AND_PATHS: GroupBy = GroupBy { host: true, paths: true };
}

/// The decision for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot.
    pub snapshot: SnapshotInfo,
    /// Why it is kept; empty means it is forgotten.
    pub reasons: Vec<String>,
}

impl Decision {
    /// Whether the snapshot is kept.
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// Days since 1970-01-01 to the (year, month, day) of the proleptic Gregorian calendar.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm: days since 1970-01-01 to (year, month, day).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn bucket(time_ms: i64, unit: &str) -> i64 {
    let time_secs = time_ms.div_euclid(1000);
    let days = time_secs.div_euclid(86_400);
    let (y, m, _) = civil_from_days(days);
    match unit {
        "hour" => time_secs.div_euclid(3600),
        "day" => days,
        // ISO weeks start on Monday; 1970-01-01 was a Thursday, so shift by 3 days.
        "week" => (days + 3).div_euclid(7),
        "month" => y * 12 + i64::from(m),
        _ => y,
    }
}

/// Applies `policy` to `snapshots`; returns one decision per snapshot, newest first within each group.
pub fn apply(snapshots: &[SnapshotInfo], policy: &Policy, group_by: GroupBy) -> Vec<Decision> {
    let mut groups: BTreeMap<(String, Vec<String>), Vec<&SnapshotInfo>> = BTreeMap::new();
    for s in snapshots {
        let mut paths = s.paths.clone();
        paths.sort();
        let key = (if group_by.host { s.host.clone() } else { String::new() }, if group_by.paths { paths } else { Vec::new() });
        groups.entry(key).or_default().push(s);
    }
    let mut out = Vec::with_capacity(snapshots.len());
    for (_, mut group) in groups {
        group.sort_by(|a, b| b.time_ms.cmp(&a.time_ms).then_with(|| a.id.cmp(&b.id)));
        out.extend(judge_group(&group, policy));
    }
    out
}

fn judge_group(group: &[&SnapshotInfo], policy: &Policy) -> Vec<Decision> {
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); group.len()];
    if policy.is_empty() {
        for r in &mut reasons {
            r.push("no policy given: keeping everything".into());
        }
    }
    if let Some(n) = policy.keep_last {
        for r in reasons.iter_mut().take(n) {
            r.push("last".into());
        }
    }
    let calendar = [
        (policy.keep_hourly, "hour", "hourly"),
        (policy.keep_daily, "day", "daily"),
        (policy.keep_weekly, "week", "weekly"),
        (policy.keep_monthly, "month", "monthly"),
        (policy.keep_yearly, "year", "yearly"),
    ];
    for (count, unit, label) in calendar {
        let Some(n) = count else { continue };
        let mut seen = BTreeSet::new();
        for (i, s) in group.iter().enumerate() {
            if seen.len() >= n {
                break;
            }
            // Newest first, so the first snapshot met in a bucket is that bucket's newest.
            if seen.insert(bucket(s.time_ms, unit)) {
                reasons[i].push(format!("{label} {}", seen.len()));
            }
        }
    }
    if let (Some(within), Some(newest)) = (policy.keep_within, group.first()) {
        let cutoff = within.before(newest.time_ms);
        // Inclusive: a snapshot exactly at the cutoff is kept (restic keeps only those strictly after it;
        // when in doubt, keeping one more is the safe side).
        for (i, s) in group.iter().enumerate() {
            if s.time_ms >= cutoff {
                reasons[i].push(format!("within {within}"));
            }
        }
    }
    for (i, s) in group.iter().enumerate() {
        if let Some(t) = s.tags.iter().find(|t| policy.keep_tags.contains(t)) {
            reasons[i].push(format!("tag {t}"));
        }
    }
    group.iter().zip(reasons).map(|(s, reasons)| Decision { snapshot: (*s).clone(), reasons }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 86_400_000;

    fn snap(id: &str, time_ms: i64) -> SnapshotInfo {
        SnapshotInfo { id: id.into(), time_ms, host: "laptop".into(), paths: vec!["/home".into()], tags: vec![] }
    }

    fn kept(decisions: &[Decision]) -> Vec<String> {
        decisions.iter().filter(|d| d.keep()).map(|d| d.snapshot.id.clone()).collect()
    }

    #[test]
    fn retention_durations_read_m_as_months_like_restic() {
        let d = RetentionDuration::parse("1y5m7d2h").unwrap();
        assert_eq!(d, RetentionDuration { years: 1, months: 5, days: 7, hours: 2 });
        assert_eq!(RetentionDuration::parse("6m").unwrap(), RetentionDuration { months: 6, ..Default::default() });
        assert_eq!(RetentionDuration::parse("30d").unwrap().to_string(), "30d");
        for bad in ["", "6", "m", "3w", "90s", "5d1y", "1m1m", "-3d", "7 days"] {
            assert!(RetentionDuration::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RetentionDuration::parse("10s").unwrap_err().contains("restic"), "the error says how to write it");
    }

    #[test]
    fn retention_durations_are_subtracted_on_the_calendar() {
        let at = |y, m, d, h: i64| days_from_civil(y, m, d) * DAY + h * HOUR;
        let six_months = RetentionDuration::parse("6m").unwrap();
        assert_eq!(six_months.before(at(2026, 12, 3, 10)), at(2026, 6, 3, 10));
        // 31 March minus one month is "31 February", which rolls over to 3 March (as Go's AddDate does).
        assert_eq!(RetentionDuration::parse("1m").unwrap().before(at(2026, 3, 31, 0)), at(2026, 3, 3, 0));
        assert_eq!(RetentionDuration::parse("1y2d5h").unwrap().before(at(2025, 1, 1, 3)), at(2023, 12, 29, 22));
        for days in [-1000, 0, 19_723, 20_513] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn keep_within_six_months_keeps_six_months() {
        let newest = days_from_civil(2026, 12, 1) * DAY;
        let snaps: Vec<_> = (0..400).map(|i| snap(&format!("d{i}"), newest - i * DAY)).collect();
        let policy = Policy { keep_within: Some(RetentionDuration::parse("6m").unwrap()), ..Policy::default() };
        let kept = kept(&apply(&snaps, &policy, GroupBy::HOST_AND_PATHS));
        // 1 June to 1 December 2026: 183 days, both ends included.
        assert_eq!(kept.len(), 184, "six months of daily snapshots, not six minutes");
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn snapshots_within_one_second_still_order() {
        let snaps = vec![snap("older", 1_000_100), snap("newer", 1_000_900)];
        let d = apply(&snaps, &Policy { keep_last: Some(1), ..Policy::default() }, GroupBy::HOST_AND_PATHS);
        assert_eq!(kept(&d), vec!["newer"]);
    }

    #[test]
    fn empty_policy_keeps_everything() {
        let snaps = vec![snap("a", 0), snap("b", DAY)];
        assert_eq!(kept(&apply(&snaps, &Policy::default(), GroupBy::HOST_AND_PATHS)).len(), 2);
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let snaps: Vec<_> = (0..5).map(|i| snap(&format!("s{i}"), i * HOUR)).collect();
        let d = apply(&snaps, &Policy { keep_last: Some(2), ..Policy::default() }, GroupBy::HOST_AND_PATHS);
        assert_eq!(kept(&d), vec!["s4", "s3"]);
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_recent_day() {
        // Three snapshots a day for four days.
        let mut snaps = Vec::new();
        for day in 0..4 {
            for h in [1, 9, 20] {
                snaps.push(snap(&format!("d{day}h{h}"), 20_000 * DAY + day * DAY + h * HOUR));
            }
        }
        let d = apply(&snaps, &Policy { keep_daily: Some(3), ..Policy::default() }, GroupBy::HOST_AND_PATHS);
        assert_eq!(kept(&d), vec!["d3h20", "d2h20", "d1h20"]);
        let reasons: Vec<_> = d.iter().filter(|d| d.keep()).flat_map(|d| d.reasons.clone()).collect();
        assert_eq!(reasons, vec!["daily 1", "daily 2", "daily 3"]);
    }

    #[test]
    fn days_without_snapshots_do_not_use_up_the_count() {
        let snaps = vec![snap("new", 100 * DAY), snap("old", 10 * DAY), snap("older", 9 * DAY)];
        let d = apply(&snaps, &Policy { keep_daily: Some(2), ..Policy::default() }, GroupBy::HOST_AND_PATHS);
        assert_eq!(kept(&d), vec!["new", "old"]);
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-23 is a Monday, 2026-11-22 a Sunday.
        let monday = 20_780 * DAY;
        assert_ne!(bucket(0, "hour"), bucket(HOUR, "hour"));
        assert_eq!(civil_from_days(20_780), (2026, 11, 23));
        assert_ne!(bucket(monday, "week"), bucket(monday - HOUR, "week"));
        assert_eq!(bucket(monday, "week"), bucket(monday + 6 * DAY, "week"));
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let d = RetentionDuration::parse("100000y100000m100000d100000h").unwrap();
        assert!(d.before(i64::MAX) < i64::MAX);
        assert!(d.before(i64::MIN) <= 0);
    }

    #[test]
    fn within_is_relative_to_the_newest_snapshot() {
        let snaps = vec![snap("a", 1000 * DAY), snap("b", 999 * DAY), snap("c", 990 * DAY)];
        let two_days = RetentionDuration { days: 2, ..RetentionDuration::default() };
        let d = apply(&snaps, &Policy { keep_within: Some(two_days), ..Policy::default() }, GroupBy::HOST_AND_PATHS);
        assert_eq!(kept(&d), vec!["a", "b"]);
    }

    #[test]
    fn groups_are_judged_separately_and_tags_protect() {
        let mut other = snap("desktop-1", 5 * DAY);
        other.host = "desktop".into();
        let mut tagged = snap("tagged", DAY);
        tagged.tags = vec!["keep-forever".into()];
        let snaps = vec![snap("laptop-2", 6 * DAY), snap("laptop-1", 4 * DAY), tagged, other];
        let policy = Policy { keep_last: Some(1), keep_tags: vec!["keep-forever".into()], ..Policy::default() };
        let mut k = kept(&apply(&snaps, &policy, GroupBy::HOST_AND_PATHS));
        k.sort();
        assert_eq!(k, vec!["desktop-1", "laptop-2", "tagged"]);
        let mut k = kept(&apply(&snaps, &Policy { keep_last: Some(1), ..Policy::default() }, GroupBy::default()));
        k.sort();
        assert_eq!(k, vec!["laptop-2"], "one group when not grouping by host");
    }
}
