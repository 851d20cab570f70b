//! The progress display of `run` on a terminal: one line per feed (pages, objects, rate),
//! redrawn in place on standard error after each committed page. Without a terminal the
//! per-page log lines carry the same figures, so nothing is drawn.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use feedstix::local::{Progress, ProgressFn};

/// The lines drawn so far, by feed, and how many lines are on screen.
#[derive(Default)]
struct Board {
    lines: BTreeMap<String, String>,
    drawn: usize,
}

/// One feed's line.
pub fn line(p: &Progress) -> String {
    let secs = p.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        p.objects as f64 / secs
    } else {
        0.0
    };
    format!(
        "{:<28} {:>6} page(s) {:>10} object(s) {:>9.0} objects/s",
        p.feed, p.pages, p.objects, rate
    )
}

/// A progress reporter that redraws every feed's line on standard error.
pub fn terminal() -> ProgressFn {
    let board = Arc::new(Mutex::new(Board::default()));
    Arc::new(move |p: &Progress| {
        let Ok(mut board) = board.lock() else { return };
        board.lines.insert(p.feed.clone(), line(p));
        let mut out = String::new();
        if board.drawn > 0 {
            // Back to the first line drawn, then rewrite every line.
            out.push_str(&format!("\x1b[{}A", board.drawn));
        }
        for text in board.lines.values() {
            out.push_str("\x1b[2K");
            out.push_str(text);
            out.push('\n');
        }
        board.drawn = board.lines.len();
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(out.as_bytes());
        let _ = stderr.flush();
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_line_shows_pages_objects_and_rate() {
        let p = Progress {
            feed: "urlhaus".into(),
            pages: 3,
            objects: 3_000,
            elapsed: Duration::from_secs(2),
        };
        let text = line(&p);
        assert!(text.starts_with("urlhaus "), "{text}");
        assert!(
            text.contains("3 page(s)") && text.contains("3000 object(s)"),
            "{text}"
        );
        assert!(text.contains("1500 objects/s"), "{text}");
    }
}
