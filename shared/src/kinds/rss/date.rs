//! Lenient date parsing for feed items.
//!
//! Feeds are supposed to write RFC 822 (RSS) or RFC 3339 (Atom, `dc:date`) dates, and a
//! large share do neither exactly: named zones such as CEST, single-digit days, missing
//! seconds or weekdays, a 12-hour clock, month before day, RFC 822 inside Atom. The parser
//! below reads all of those by tokens instead of by one fixed pattern, and returns `None`
//! for text it cannot read (the item then counts as dateless; it is never dropped).

use chrono::{DateTime, NaiveDate, Utc};

/// UTC offsets, in minutes, of the zone names feeds use. Where a name is ambiguous the
/// reading most feeds mean wins: IST is India, CST is US Central, BST is British Summer.
const ZONES: &[(&str, i32)] = &[
    ("GMT", 0),
    ("UT", 0),
    ("UTC", 0),
    ("Z", 0),
    ("WET", 0),
    ("WEST", 60),
    ("BST", 60),
    ("CET", 60),
    ("MET", 60),
    ("CEST", 120),
    ("MEST", 120),
    ("EET", 120),
    ("EEST", 180),
    ("MSK", 180),
    ("IST", 330),
    ("ICT", 420),
    ("WIB", 420),
    ("SGT", 480),
    ("HKT", 480),
    ("PHT", 480),
    ("AWST", 480),
    ("CST", -360),
    ("JST", 540),
    ("KST", 540),
    ("ACST", 570),
    ("AEST", 600),
    ("ACDT", 630),
    ("AEDT", 660),
    ("NZST", 720),
    ("NZDT", 780),
    ("EST", -300),
    ("EDT", -240),
    ("CDT", -300),
    ("MST", -420),
    ("MDT", -360),
    ("PST", -480),
    ("PDT", -420),
    ("AKST", -540),
    ("AKDT", -480),
    ("HST", -600),
    ("AST", -240),
    ("ADT", -180),
    ("NST", -210),
    ("NDT", -150),
    ("BRT", -180),
    ("ART", -180),
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Parses a feed date; `None` when the text is not a date this parser can read.
pub(crate) fn parse(raw: &str) -> Option<DateTime<Utc>> {
    let text = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    let b = text.as_bytes();
    if b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        parse_iso(text)
    } else {
        parse_rfc822ish(text)
    }
}

/// RFC 3339 and the ISO 8601 shapes feeds use: date only, `T` or space, optional seconds,
/// any fraction, `Z`, `±hh:mm`, `±hhmm`, `±hh`, or no zone (read as UTC).
fn parse_iso(text: &str) -> Option<DateTime<Utc>> {
    let mut s = Scanner::new(text);
    let year = s.digits(4, 4)? as i32;
    s.expect(b'-')?;
    let month = s.digits(1, 2)?;
    s.expect(b'-')?;
    let day = s.digits(1, 2)?;
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    if s.at_end() {
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc());
    }
    if !matches!(s.next(), Some(b'T' | b't' | b' ')) {
        return None;
    }
    s.skip_spaces();
    let hour = s.digits(1, 2)?;
    s.expect(b':')?;
    let minute = s.digits(2, 2)?;
    let mut second = 0;
    let mut nanos = 0;
    if s.peek() == Some(b':') {
        s.next();
        second = s.digits(2, 2)?;
        if matches!(s.peek(), Some(b'.' | b',')) {
            s.next();
            nanos = s.fraction()?;
        }
    }
    s.skip_spaces();
    let offset = if s.at_end() {
        0
    } else {
        zone_offset(s.rest())?
    };
    build(date, hour, minute, second, nanos, offset)
}

/// RFC 822/1123 and its relatives, read token by token: optional weekday, day and month in
/// either order, 2- or 4-digit year, `hh:mm[:ss]`, optional AM/PM, optional zone.
fn parse_rfc822ish(text: &str) -> Option<DateTime<Utc>> {
    let (mut day, mut month, mut year) = (None, None, None);
    let mut time: Option<(u32, u32, u32)> = None;
    let mut pm: Option<bool> = None;
    let mut offset: Option<i32> = None;

    for token in text
        .split(|c: char| c.is_ascii_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
    {
        let first = token.as_bytes()[0];
        if first.is_ascii_digit() && token.contains(':') {
            time = Some(parse_clock(token)?);
        } else if first.is_ascii_digit() {
            let value: u32 = token.trim_end_matches('.').parse().ok()?;
            if token.len() >= 3 || (day.is_some() && year.is_none()) {
                year = Some(value);
            } else if day.is_none() {
                day = Some(value);
            } else {
                return None;
            }
        } else if first == b'+' || first == b'-' {
            offset = Some(zone_offset(token)?);
        } else if let Some(m) = month_number(token) {
            month = Some(m);
        } else if is_weekday(token) {
            // The weekday adds nothing and is often wrong; it is not checked.
        } else if token.eq_ignore_ascii_case("am") || token.eq_ignore_ascii_case("pm") {
            pm = Some(token.eq_ignore_ascii_case("pm"));
        } else if time.is_some()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'+' || b == b'-' || b.is_ascii_digit())
        {
            offset = Some(zone_offset(token)?);
        } else {
            return None;
        }
    }

    let year = match year? {
        y if y < 50 => 2000 + y,
        y if y < 100 => 1900 + y,
        y => y,
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month?, day?)?;
    let (mut hour, minute, second) = time.unwrap_or((0, 0, 0));
    match pm {
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        _ => {}
    }
    build(date, hour, minute, second, 0, offset.unwrap_or(0))
}

fn build(
    date: NaiveDate,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    offset_minutes: i32,
) -> Option<DateTime<Utc>> {
    // A leap second (":60") is read as the last second of the minute rather than refused.
    let local = date.and_hms_nano_opt(hour, minute, second.min(59), nanos)?;
    let utc = local.and_utc() - chrono::Duration::minutes(i64::from(offset_minutes));
    Some(utc)
}

fn parse_clock(token: &str) -> Option<(u32, u32, u32)> {
    let mut parts = token.split(':');
    let hour = parts.next()?.parse().ok()?;
    let minute = parts.next()?.parse().ok()?;
    let second = match parts.next() {
        // Fractions of a second in RFC 822 dates are rare and dropped.
        Some(s) => s.split('.').next()?.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((hour, minute, second))
}

/// Minutes east of UTC for `Z`, `±hh:mm`, `±hhmm`, `±hh`, a zone name, or a name followed
/// by an offset (`GMT+0200`). An unknown name is read as UTC with a warning: the item is
/// worth more with a date off by a few hours than without one.
fn zone_offset(token: &str) -> Option<i32> {
    let token = token.trim();
    if let Some(sign_at) = token.find(['+', '-']) {
        let (name, numeric) = token.split_at(sign_at);
        let base = if name.is_empty() { 0 } else { named_zone(name) };
        let sign = if numeric.starts_with('-') { -1 } else { 1 };
        let digits: String = numeric[1..].chars().filter(|c| *c != ':').collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (h, m) = match digits.len() {
            1 | 2 => (digits.parse::<i32>().ok()?, 0),
            4 => (
                digits[..2].parse::<i32>().ok()?,
                digits[2..].parse::<i32>().ok()?,
            ),
            _ => return None,
        };
        if h > 23 || m > 59 {
            return None;
        }
        return Some(base + sign * (h * 60 + m));
    }
    if !token.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    Some(named_zone(token))
}

fn named_zone(name: &str) -> i32 {
    match ZONES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        Some((_, minutes)) => *minutes,
        None => {
            tracing::warn!(
                zone = name,
                "unknown time zone name, reading the date as UTC"
            );
            0
        }
    }
}

fn month_number(token: &str) -> Option<u32> {
    let lower = token.trim_end_matches('.').to_ascii_lowercase();
    if lower.len() < 3 {
        return None;
    }
    let position = MONTHS.iter().position(|m| lower.starts_with(m))?;
    // Accept "Dec", "Dec." and "December"; refuse words that merely start alike.
    const FULL: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let ok = lower.len() == 3 || FULL[position].starts_with(&lower) || lower == "sept";
    ok.then_some(position as u32 + 1)
}

fn is_weekday(token: &str) -> bool {
    let lower = token.trim_end_matches('.').to_ascii_lowercase();
    lower.len() >= 3 && WEEKDAYS.iter().any(|d| lower.starts_with(d))
}

/// A byte cursor for the ISO parser.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            bytes: text.as_bytes(),
            at: 0,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }
    fn at_end(&self) -> bool {
        self.at >= self.bytes.len()
    }
    fn rest(&self) -> &'a str {
        std::str::from_utf8(&self.bytes[self.at..]).unwrap_or("?")
    }
    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }
    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }
    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.at;
        while self.at - start < max && self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        if self.at - start < min {
            return None;
        }
        std::str::from_utf8(&self.bytes[start..self.at])
            .ok()?
            .parse()
            .ok()
    }
    /// A decimal fraction as nanoseconds; digits beyond the ninth are dropped.
    fn fraction(&mut self) -> Option<u32> {
        let mut nanos = 0u32;
        let mut count = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            if count < 9 {
                nanos = nanos * 10 + u32::from(b - b'0');
                count += 1;
            }
            self.at += 1;
        }
        if count == 0 {
            return None;
        }
        Some(nanos * 10u32.pow(9 - count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> String {
        parse(text)
            .map(crate::stix::object::timestamp)
            .unwrap_or_else(|| "none".into())
    }

    fn micros(text: &str) -> String {
        parse(text)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_else(|| "none".into())
    }

    #[test]
    fn rfc822_zones() {
        assert_eq!(
            p("Thu, 14 Oct 2021 12:59:53 GMT"),
            "2021-10-14T12:59:53.000Z"
        );
        assert_eq!(
            p("Thu, 13 Aug 2020 06:57:55 -0300"),
            "2020-08-13T09:57:55.000Z"
        );
        assert_eq!(
            p("Thu, 29 Jun 2023 16:37:40 +0200"),
            "2023-06-29T14:37:40.000Z"
        );
        assert_eq!(p("Tue, 15 Nov 2022 20:15:04 Z"), "2022-11-15T20:15:04.000Z");
        assert_eq!(
            p("Mon, 15 Jan 2024 18:00:00 UT"),
            "2024-01-15T18:00:00.000Z"
        );
        assert_eq!(
            p("Mon, 15 Jan 2024 18:00:00 EST"),
            "2024-01-15T23:00:00.000Z"
        );
        assert_eq!(
            p("Mon, 15 Jan 2024 18:00:00 PDT"),
            "2024-01-16T01:00:00.000Z"
        );
        assert_eq!(
            p("Mon, 04 Dec 2023 10:25:00 CEST"),
            "2023-12-04T08:25:00.000Z"
        );
        assert_eq!(
            p("Mon, 04 Dec 2023 10:25:00 CET"),
            "2023-12-04T09:25:00.000Z"
        );
        assert_eq!(
            p("Mon, 04 Dec 2023 10:25:00 BST"),
            "2023-12-04T09:25:00.000Z"
        );
        assert_eq!(
            p("Mon, 04 Dec 2023 10:25:00 IST"),
            "2023-12-04T04:55:00.000Z"
        );
        assert_eq!(
            p("Mon, 04 Dec 2023 10:25:00 JST"),
            "2023-12-04T01:25:00.000Z"
        );
        assert_eq!(
            p("Mon, 04 Dec 2023 10:25:00 AEST"),
            "2023-12-04T00:25:00.000Z"
        );
        assert_eq!(
            p("Mon, 04 Dec 2023 10:25:00 +05:30"),
            "2023-12-04T04:55:00.000Z"
        );
        assert_eq!(
            p("Mon, 04 Dec 2023 10:25:00 GMT+0200"),
            "2023-12-04T08:25:00.000Z"
        );
    }

    #[test]
    fn unknown_zone_is_utc() {
        assert_eq!(
            p("Mon, 04 Dec 2023 10:25:00 XYZT"),
            "2023-12-04T10:25:00.000Z"
        );
    }

    #[test]
    fn rfc822_variants() {
        assert_eq!(
            p("Wed, 1 Mar 2023 13:42:09 +0100"),
            "2023-03-01T12:42:09.000Z"
        );
        assert_eq!(
            p("Wed, 01 Mar 2023 13:42 +0100"),
            "2023-03-01T12:42:00.000Z"
        );
        assert_eq!(p("01 Mar 2023 13:42:09 GMT"), "2023-03-01T13:42:09.000Z");
        assert_eq!(
            p("  Sat, 03 Jun 2017\n\t 15:15:44   -0500  "),
            "2017-06-03T20:15:44.000Z"
        );
        assert_eq!(p("Wed, 01 Mar 23 13:42:09 GMT"), "2023-03-01T13:42:09.000Z");
        assert_eq!(
            p("Wednesday, 01 March 2023 13:42:09 GMT"),
            "2023-03-01T13:42:09.000Z"
        );
        assert_eq!(
            p("Sat, Dec 16 2023 02:02:33 PM"),
            "2023-12-16T14:02:33.000Z"
        );
        assert_eq!(
            p("Sat, Dec 16 2023 12:02:33 AM"),
            "2023-12-16T00:02:33.000Z"
        );
        assert_eq!(p("16 Dec 2023"), "2023-12-16T00:00:00.000Z");
    }

    #[test]
    fn iso_variants() {
        assert_eq!(p("2023-01-03T15:00:00Z"), "2023-01-03T15:00:00.000Z");
        assert_eq!(p("2023-01-25T19:03:02+01:00"), "2023-01-25T18:03:02.000Z");
        assert_eq!(p("2023-01-25T19:03:02+0100"), "2023-01-25T18:03:02.000Z");
        assert_eq!(p("2023-01-25T19:03:02-05"), "2023-01-26T00:03:02.000Z");
        assert_eq!(p("2023-01-25T19:03:02"), "2023-01-25T19:03:02.000Z");
        assert_eq!(p("2023-01-25 19:03"), "2023-01-25T19:03:00.000Z");
        assert_eq!(p("2023-01-25"), "2023-01-25T00:00:00.000Z");
        assert_eq!(
            micros("2023-09-11T14:59:07.818162+00:00"),
            "2023-09-11T14:59:07.818162Z"
        );
        assert_eq!(
            micros("2023-09-11T14:59:07.5Z"),
            "2023-09-11T14:59:07.500000Z"
        );
        assert_eq!(
            micros("2023-09-11T14:59:07.1234567891Z"),
            "2023-09-11T14:59:07.123456Z"
        );
    }

    #[test]
    fn garbage_is_no_date() {
        for text in [
            "",
            "   ",
            "\u{3a4}\u{3c1}\u{3b9}, 29 \u{399}\u{3bf}\u{3cd}\u{3bd} 2004 12:53:00 GMT",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-02-30",
            "Mon, 32 Dec 2023 10:00:00 GMT",
            "Mon, 04 Dec 2023 25:00:00 GMT",
            "Mon, 04 Dec 2023 10:00:00 +9999",
            "2023-01-25T19:03:02 nonsense!",
            "12:00:00",
        ] {
            assert_eq!(p(text), "none", "{text:?}");
        }
    }
}
