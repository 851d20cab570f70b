//! Interval parsing: the `interval` and `timeout` keys accept `90s`, `30m`, `1h`, `1d`,
//! combinations such as `1h30m`, and ISO-8601 durations such as `PT1H` or `P1DT12H`.

use std::time::Duration;

/// Parses a human or ISO-8601 duration. Returns a message saying what is expected on error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("an empty duration; expected e.g. \"30m\", \"1h\" or \"PT1H\"".into());
    }
    let secs = if t.starts_with(['P', 'p']) {
        parse_iso(&t[1..])
    } else {
        parse_human(t)
    }
    .ok_or_else(|| {
        format!(
            "\"{t}\" is not a duration; expected e.g. \"90s\", \"30m\", \"1h\", \"1d\" or \"PT1H\""
        )
    })?;
    if secs == 0 {
        return Err(format!("\"{t}\" is zero; expected a positive duration"));
    }
    Ok(Duration::from_secs(secs))
}

/// Formats a duration the short way (`1h30m`), for status lines and messages.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

fn parse_human(t: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut seen_unit = false;
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let size = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            ' ' => continue,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(size)?)?;
        number.clear();
        seen_unit = true;
    }
    // A bare number has no unit: refuse it rather than guess seconds or minutes.
    if !number.is_empty() || !seen_unit {
        return None;
    }
    Some(total)
}

fn parse_iso(t: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut in_time = false;
    let mut any = false;
    for c in t.chars() {
        match c.to_ascii_uppercase() {
            d if d.is_ascii_digit() => number.push(d),
            'T' if !in_time && number.is_empty() => in_time = true,
            unit => {
                let size = match (unit, in_time) {
                    ('W', false) => 604_800,
                    ('D', false) => 86_400,
                    ('H', true) => 3_600,
                    ('M', true) => 60,
                    ('S', true) => 1,
                    _ => return None,
                };
                let n: u64 = number.parse().ok()?;
                total = total.checked_add(n.checked_mul(size)?)?;
                number.clear();
                any = true;
            }
        }
    }
    (any && number.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_human_and_iso_forms() {
        let cases = [
            ("30m", 1_800),
            ("1h", 3_600),
            ("1h30m", 5_400),
            ("90s", 90),
            ("2d", 172_800),
            ("PT1H", 3_600),
            ("PT15M", 900),
            ("P1DT12H", 129_600),
            ("pt30s", 30),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_bad_forms() {
        for text in ["", "10", "1x", "PT", "P1H", "-5m", "0m", "h"] {
            assert!(parse_duration(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn formats_short() {
        assert_eq!(format_duration(Duration::from_secs(5_400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(86_401)), "1d1s");
    }
}
