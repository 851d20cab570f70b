//! Fixture tests: every RSS/Atom file of `tests/data/rss` through the pager, with the
//! outcomes asserted item by item, and the cursor behaviour across runs.

use super::*;
use crate::stix::Tlp;
use chrono::TimeZone;
use serde_json::Value;

/// The fixed "now" of every run, so first-seen dates are reproducible.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/rss")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

struct Run {
    outcomes: Vec<ItemOutcome>,
    cursor: RssCursor,
}

impl Run {
    fn reports(&self) -> Vec<&StixObject> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                ItemOutcome::New(objects) => objects.last(),
                _ => None,
            })
            .collect()
    }
    fn names(&self) -> Vec<&str> {
        self.reports()
            .iter()
            .map(|r| r["name"].as_str().unwrap_or_default())
            .collect()
    }
    fn published(&self) -> Vec<&str> {
        self.reports()
            .iter()
            .map(|r| r["published"].as_str().unwrap_or_default())
            .collect()
    }
    fn skipped(&self) -> Vec<(&str, &str)> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                ItemOutcome::Skipped { item, reason } => Some((item.as_str(), reason.as_str())),
                _ => None,
            })
            .collect()
    }
    fn old(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, ItemOutcome::Old))
            .count()
    }
}

fn run_with(
    body: &[u8],
    cursor: &RssCursor,
    provenance: &Provenance,
    import_from: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Run, RssError> {
    let settings = RssSettings::default();
    let mut pager = RssPager::new(body, cursor, &settings, provenance, import_from, now)?;
    let mut outcomes = Vec::new();
    while let Some(outcome) = pager.next_item() {
        outcomes.push(outcome?);
    }
    Ok(Run {
        outcomes,
        cursor: pager.finish(),
    })
}

fn run(name: &str) -> Run {
    run_with(
        &fixture(name),
        &RssCursor::default(),
        &Provenance::default(),
        None,
        now(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn dump_all() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rss");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names {
        println!("=== {name}");
        match run_with(
            &fixture(&name),
            &RssCursor::default(),
            &Provenance::default(),
            None,
            now(),
        ) {
            Err(e) => println!("ERR {e}"),
            Ok(r) => {
                for o in &r.outcomes {
                    match o {
                        ItemOutcome::New(objs) => {
                            for ob in objs {
                                println!("{}", serde_json::to_string(ob).unwrap());
                            }
                        }
                        other => println!("{other:?}"),
                    }
                }
                println!("cursor {:?}", r.cursor);
            }
        }
    }
}
