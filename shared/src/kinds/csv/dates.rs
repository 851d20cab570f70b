//! Dates found in CSV cells.
//!
//! OpenCTI mappers name a date's shape with a moment.js-style `pattern_date`
//! (`YYYY-MM-DD HH:mm:ss`). Such a pattern is translated once, at mapper load, into a chrono
//! format string, and that string into chrono's parsed format items, so a row costs one
//! parse and nothing is interpreted per row.
//! Without a pattern, a short list of shapes common in feeds is tried. A time without a zone
//! is taken in the attribute's `timezone` (UTC unless the mapper says otherwise).

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// A compiled `pattern_date`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DatePattern {
    /// The pattern as the mapper wrote it, for error messages.
    pub(crate) source: String,
    /// The chrono format string.
    format: String,
    /// `format` as chrono's items: reading the format string again for every row cost more
    /// than the date itself.
    items: Vec<Item<'static>>,
    shape: Shape,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// Date and time without a zone: interpreted in the attribute's offset.
    Local,
    /// Date and time with an offset token.
    Zoned,
    /// A date alone: midnight in the attribute's offset.
    DateOnly,
    /// Seconds since the Unix epoch (`X`).
    UnixSeconds,
    /// Milliseconds since the Unix epoch (`x`).
    UnixMillis,
}

/// Translates a moment.js-style pattern into a chrono format.
///
/// Supported tokens: `YYYY YY M MM MMM MMMM D DD DDDD ddd dddd H HH h hh m mm s ss
/// S… (fractions: 3, 6 or 9 digits) A a Z ZZ X x`, and `[literal]` text. Other letters are
/// literals, as in moment.
pub(crate) fn compile(pattern: &str) -> Result<DatePattern, String> {
    let trimmed = pattern.trim();
    if trimmed == "X" || trimmed == "x" {
        let shape = if trimmed == "X" {
            Shape::UnixSeconds
        } else {
            Shape::UnixMillis
        };
        return Ok(DatePattern {
            source: trimmed.to_string(),
            format: String::new(),
            items: Vec::new(),
            shape,
        });
    }
    let chars: Vec<char> = trimmed.chars().collect();
    let mut format = String::with_capacity(trimmed.len() * 2);
    let (mut has_time, mut has_zone) = (false, false);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '[' {
            // Bracketed text is literal in moment.
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == ']')
                .ok_or_else(|| format!("unclosed `[` in date pattern `{trimmed}`"))?;
            for &l in &chars[i + 1..i + 1 + end] {
                push_literal(&mut format, l);
            }
            i += end + 2;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let token: Option<&str> = match (c, run) {
            ('Y', 4) => Some("%Y"),
            ('Y', 2) => Some("%y"),
            ('M', 1 | 2) => Some("%m"),
            ('M', 3) => Some("%b"),
            ('M', 4) => Some("%B"),
            ('D', 1 | 2) => Some("%d"),
            ('D', 3 | 4) => Some("%j"),
            ('d', 3) => Some("%a"),
            ('d', 4) => Some("%A"),
            ('H', 1 | 2) => Some("%H"),
            ('h', 1 | 2) => Some("%I"),
            ('m', 1 | 2) => Some("%M"),
            ('s', 1 | 2) => Some("%S"),
            ('A' | 'a', 1) => Some("%p"),
            ('Z', 1) => Some("%:z"),
            ('Z', 2) => Some("%z"),
            ('S', 3) => Some("%3f"),
            ('S', 6) => Some("%6f"),
            ('S', 9) => Some("%9f"),
            ('Y' | 'M' | 'D' | 'd' | 'H' | 'h' | 'm' | 's' | 'S' | 'A' | 'a' | 'Z', n) => {
                return Err(format!(
                    "unsupported token `{}` in date pattern `{trimmed}`",
                    c.to_string().repeat(n)
                ))
            }
            ('X' | 'x', _) => {
                return Err(format!(
                    "`{c}` (epoch time) must be the whole date pattern, not part of `{trimmed}`"
                ))
            }
            _ => None,
        };
        match token {
            Some(t) => {
                has_time |= matches!(c, 'H' | 'h' | 'm' | 's' | 'S');
                has_zone |= c == 'Z';
                format.push_str(t);
            }
            None => {
                for _ in 0..run {
                    push_literal(&mut format, c);
                }
            }
        }
        i += run;
    }
    let shape = match (has_zone, has_time) {
        (true, _) => Shape::Zoned,
        (false, true) => Shape::Local,
        (false, false) => Shape::DateOnly,
    };
    let items = StrftimeItems::new(&format)
        .parse_to_owned()
        .map_err(|e| format!("date pattern `{trimmed}`: {e}"))?;
    Ok(DatePattern {
        source: trimmed.to_string(),
        format,
        items,
        shape,
    })
}

fn push_literal(format: &mut String, c: char) {
    if c == '%' {
        format.push_str("%%");
    } else {
        format.push(c);
    }
}

/// Parses `text` with a compiled pattern; zone-less times are taken in `offset`.
pub(crate) fn parse_with(
    pattern: &DatePattern,
    text: &str,
    offset: FixedOffset,
) -> Option<DateTime<Utc>> {
    let text = text.trim();
    // What `parse_from_str` of each type does, with the format's items read once.
    let parsed = || {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, text, pattern.items.iter())
            .ok()
            .map(|()| parsed)
    };
    match pattern.shape {
        Shape::Zoned => parsed()?.to_datetime().ok().map(|d| d.with_timezone(&Utc)),
        Shape::Local => parsed()?
            .to_naive_datetime_with_offset(0)
            .ok()
            .and_then(|n| local(n, offset)),
        Shape::DateOnly => parsed()?
            .to_naive_date()
            .ok()
            .and_then(|d| local(d.and_hms_opt(0, 0, 0)?, offset)),
        Shape::UnixSeconds => text
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0)),
        Shape::UnixMillis => text
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis),
    }
}

fn local(naive: NaiveDateTime, offset: FixedOffset) -> Option<DateTime<Utc>> {
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|d| d.with_timezone(&Utc))
}

/// Zone-less shapes tried, in order, when the mapper gives no pattern.
const NAIVE_FORMATS: [&str; 6] = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
];

/// Shapes with an explicit offset that RFC 3339 does not cover (a space before the offset).
const ZONED_FORMATS: [&str; 2] = ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f %z"];

/// Date-only shapes.
const DATE_FORMATS: [&str; 2] = ["%Y-%m-%d", "%Y/%m/%d"];

/// Recognises the date shapes feeds commonly use: RFC 3339, `2024-09-12 10:00:01` (with an
/// optional fraction and an optional `Z`, ` UTC` or ` GMT` suffix), a date alone, RFC 2822,
/// and 10- or 13-digit epoch times. Zone-less times are taken in `offset`.
pub(crate) fn guess(text: &str, offset: FixedOffset) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if !text.as_bytes()[0].is_ascii_digit() {
        return DateTime::parse_from_rfc2822(text)
            .ok()
            .map(|d| d.with_timezone(&Utc));
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Some(d.with_timezone(&Utc));
    }
    if text.len() == 10 || text.len() == 13 {
        if let Ok(n) = text.parse::<i64>() {
            return if text.len() == 10 {
                DateTime::from_timestamp(n, 0)
            } else {
                DateTime::from_timestamp_millis(n)
            };
        }
    }
    // A trailing UTC designator fixes the zone whatever the attribute's default is.
    let (body, zone) = match ["Z", " UTC", " GMT", " (UTC)"]
        .iter()
        .find_map(|suffix| text.strip_suffix(suffix))
    {
        Some(rest) => (rest.trim_end(), FixedOffset::east_opt(0)?),
        None => (text, offset),
    };
    for f in NAIVE_FORMATS {
        if let Ok(n) = NaiveDateTime::parse_from_str(body, f) {
            return local(n, zone);
        }
    }
    for f in ZONED_FORMATS {
        if let Ok(d) = DateTime::parse_from_str(body, f) {
            return Some(d.with_timezone(&Utc));
        }
    }
    for f in DATE_FORMATS {
        if let Ok(d) = NaiveDate::parse_from_str(body, f) {
            return local(d.and_hms_opt(0, 0, 0)?, zone);
        }
    }
    None
}

/// Reads a mapper's `timezone`: `UTC`, `GMT`, `Z`, or an offset such as `+02:00` / `-0500`.
///
/// Named zones (`Europe/Paris`) would need the tz database, which this crate does not carry;
/// they are refused at mapper load rather than silently read as UTC.
pub(crate) fn parse_timezone(text: &str) -> Result<FixedOffset, String> {
    let t = text.trim();
    let utc = FixedOffset::east_opt(0).ok_or("offset 0 is valid")?;
    if t.is_empty()
        || ["utc", "gmt", "z", "etc/utc", "etc/gmt"].contains(&t.to_ascii_lowercase().as_str())
    {
        return Ok(utc);
    }
    let rest = t
        .strip_prefix("UTC")
        .or_else(|| t.strip_prefix("GMT"))
        .unwrap_or(t);
    let bad =
        || format!("unknown time zone `{t}`: use UTC or a fixed offset such as +02:00 or -0500");
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'+') => (1, &rest[1..]),
        Some(b'-') => (-1, &rest[1..]),
        _ => return Err(bad()),
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.is_empty() || digits.len() > 4 {
        return Err(bad());
    }
    let (h, m) = if digits.len() <= 2 {
        (digits.parse::<i32>().map_err(|_| bad())?, 0)
    } else {
        let split = digits.len() - 2;
        (
            digits[..split].parse::<i32>().map_err(|_| bad())?,
            digits[split..].parse::<i32>().map_err(|_| bad())?,
        )
    };
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn utc() -> FixedOffset {
        FixedOffset::east_opt(0).unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn moment_patterns() {
        let p = compile("YYYY-MM-DD HH:mm:ss").unwrap();
        assert_eq!(
            parse_with(&p, "2024-09-12 10:00:01", utc()),
            Some(at("2024-09-12T10:00:01Z"))
        );
        let p = compile("DD/MM/YYYY").unwrap();
        assert_eq!(
            parse_with(&p, "05/01/2021", utc()),
            Some(at("2021-01-05T00:00:00Z"))
        );
        let p = compile("YYYY-MM-DD[T]HH:mm:ss.SSSZ").unwrap();
        assert_eq!(
            parse_with(&p, "2024-01-02T03:04:05.678+02:00", utc()),
            Some(at("2024-01-02T01:04:05.678Z"))
        );
        let p = compile("MMM D, YYYY h:mm A").unwrap();
        assert_eq!(
            parse_with(&p, "Mar 4, 2024 1:05 PM", utc()),
            Some(at("2024-03-04T13:05:00Z"))
        );
        let p = compile("X").unwrap();
        assert_eq!(
            parse_with(&p, "1700000000", utc()),
            Some(at("2023-11-14T22:13:20Z"))
        );
        assert!(compile("YYY").is_err());
        assert!(compile("YYYY [oops").is_err());
    }

    #[test]
    fn offsets_apply_to_local_times() {
        let p = compile("YYYY-MM-DD HH:mm").unwrap();
        let tz = parse_timezone("+02:00").unwrap();
        assert_eq!(
            parse_with(&p, "2024-01-01 12:00", tz),
            Some(at("2024-01-01T10:00:00Z"))
        );
        assert_eq!(
            parse_timezone("UTC-0500").unwrap().local_minus_utc(),
            -5 * 3600
        );
        assert!(parse_timezone("Europe/Paris").is_err());
    }

    #[test]
    fn guessed_shapes() {
        let want = at("2024-09-12T10:00:01Z");
        for text in [
            "2024-09-12 10:00:01",
            "2024-09-12T10:00:01Z",
            "2024-09-12T10:00:01+00:00",
            "2024-09-12 10:00:01Z",
            "2024-09-12 10:00:01 UTC",
            "1726135201",
        ] {
            assert_eq!(guess(text, utc()), Some(want), "{text}");
        }
        assert_eq!(guess("2021-01-10", utc()), Some(at("2021-01-10T00:00:00Z")));
        assert_eq!(
            guess("Tue, 15 Dec 2015 15:33:38 +0000", utc()),
            Some(at("2015-12-15T15:33:38Z"))
        );
        assert_eq!(guess("not a date", utc()), None);
        assert_eq!(guess("", utc()), None);
    }
}
