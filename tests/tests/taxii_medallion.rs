//! TAXII 2.1 feeds against a real server: medallion (the OASIS reference server, pinned by
//! the test command) on 127.0.0.1 with a generated collection of 1,000 objects served 100
//! per page.
//!
//! Needs `FEEDSTIX_MEDALLION` (the medallion executable); scripts/test sets it. The bundles
//! of the full run are kept in `$CARGO_TARGET_TMPDIR/taxii_medallion/` so that the test
//! command can check them with the STIX validator.

mod taxii_common;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use taxii_common::{emitted_ids, Medallion, Workspace};

const OBJECTS: usize = 1_000;
const PAGE: usize = 100;
const PASSWORD_VAR: &str = "FEEDSTIX_TEST_MEDALLION_PASSWORD";
const IMPORT_FROM: &str = "2024-02-01T00:10:00Z";

fn date(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn feeds(m: &Medallion) -> String {
    let common = format!(
        "kind = \"taxii\"\nurl = \"{}\"\ncollection = \"{}\"\npage_size = {PAGE}\n\
         allow_private_network = true\n\
         auth = {{ type = \"basic\", username = \"{}\", password = \"env:{PASSWORD_VAR}\" }}\n",
        m.api_root, m.collection, m.user
    );
    format!(
        "[[feeds]]\nname = \"med-all\"\n{common}\n\
         [[feeds]]\nname = \"med-since\"\n{common}import_from = \"{IMPORT_FROM}\"\n\n\
         [[feeds]]\nname = \"med-types\"\n{common}match_types = [\"malware\", \"identity\"]\n"
    )
}

fn posted_objects() -> Vec<Value> {
    (1..=5)
        .map(|n| {
            json!({
                "type": "indicator", "spec_version": "2.1",
                "id": format!("indicator--7e57a000-0000-4000-8000-{n:012}"),
                "created": "2024-06-01T12:00:00.000Z", "modified": "2024-06-01T12:00:00.000Z",
                "name": format!("Posted after the first run {n}"),
                "indicator_types": ["malicious-activity"],
                "pattern": format!("[ipv4-addr:value = '192.0.2.{n}']"),
                "pattern_type": "stix", "valid_from": "2024-06-01T12:00:00Z"
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medallion_collection_end_to_end() {
    let m = Medallion::start(OBJECTS, PAGE);
    std::env::set_var(PASSWORD_VAR, &m.password);
    let mut ws = Workspace::new(&feeds(&m));
    let all: BTreeSet<String> = m
        .objects
        .iter()
        .map(|(o, _)| o["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(all.len(), OBJECTS);
    let newest_added = m.objects.last().map(|(_, d)| d.clone()).expect("objects");

    // The listing a user starts from.
    listing(&m).await;

    // 1. A full run emits every object exactly once and ends on the server's last date.
    let (summaries, out) = ws.run_once(&["med-all"]).await;
    assert_eq!(summaries[0].error, None, "{summaries:?}");
    assert_eq!(summaries[0].pages, (OBJECTS / PAGE) as u64);
    assert_eq!(summaries[0].objects, OBJECTS as u64);
    assert_eq!(emitted_ids(&out), all);
    let cursor = ws.cursor("med-all");
    assert_eq!(cursor["added_after"], Value::String(newest_added.clone()));
    assert!(cursor.get("next").is_none(), "{cursor}");
    keep_for_validation(&out);

    // 2. A second run emits nothing and keeps the cursor.
    let (summaries, out) = ws.run_once(&["med-all"]).await;
    assert_eq!(summaries[0].error, None);
    assert_eq!(summaries[0].objects, 0);
    assert!(emitted_ids(&out).is_empty());
    assert_eq!(ws.cursor("med-all"), cursor);

    // 3. Objects added to the collection afterwards are exactly what the next run emits.
    let posted = posted_objects();
    let path = format!("/feedstix/collections/{}/objects/", m.collection);
    let (status, body) = m
        .request("POST", &path, Some(&json!({ "objects": posted })))
        .expect("post");
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let posted_ids: BTreeSet<String> = posted
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_string())
        .collect();
    let (summaries, out) = ws.run_once(&["med-all"]).await;
    assert_eq!(summaries[0].error, None);
    assert_eq!(emitted_ids(&out), posted_ids);
    let after_post = ws.cursor("med-all");
    let moved = after_post["added_after"].as_str().expect("added_after");
    assert!(date(moved) > date(&newest_added), "{moved}");
    keep_for_validation(&out);

    // 4. import_from: only what was added after it.
    let since = date(IMPORT_FROM);
    let expected: BTreeSet<String> = m
        .objects
        .iter()
        .filter(|(_, added)| date(added) > since)
        .map(|(o, _)| o["id"].as_str().expect("id").to_string())
        .chain(posted_ids.iter().cloned())
        .collect();
    assert!(expected.len() < OBJECTS && !expected.is_empty());
    let (summaries, out) = ws.run_once(&["med-since"]).await;
    assert_eq!(summaries[0].error, None);
    assert_eq!(emitted_ids(&out), expected);

    // 5. match_types: only those types.
    let expected: BTreeSet<String> = m
        .objects
        .iter()
        .filter(|(o, _)| matches!(o["type"].as_str(), Some("malware" | "identity")))
        .map(|(o, _)| o["id"].as_str().expect("id").to_string())
        .collect();
    let (summaries, out) = ws.run_once(&["med-types"]).await;
    assert_eq!(summaries[0].error, None);
    assert_eq!(emitted_ids(&out), expected);
    assert_eq!(
        ws.cursor("med-types")["added_after"],
        Value::String(
            m.objects
                .iter()
                .filter(|(o, _)| matches!(o["type"].as_str(), Some("malware" | "identity")))
                .map(|(_, d)| d.clone())
                .next_back()
                .expect("typed objects")
        )
    );
}

async fn listing(m: &Medallion) {
    use feedstix::config::{Auth, HttpOptions, SecretRef};
    use feedstix::http::{HttpSource, RetryPolicy};
    use feedstix::kinds::taxii::collections::list_collections;
    use feedstix::kinds::taxii::media::TaxiiVersion;
    use feedstix::ports::EnvSecrets;

    let options = HttpOptions {
        allow_private_network: true,
        auth: Auth::Basic {
            username: m.user.clone(),
            password: SecretRef::Env(PASSWORD_VAR.into()),
        },
        ..HttpOptions::default()
    };
    let source = HttpSource::new(&options, &EnvSecrets, RetryPolicy::default())
        .await
        .expect("source");
    let discovery = format!("http://127.0.0.1:{}/taxii2/", m.port);
    let listing = list_collections(&source, &discovery, TaxiiVersion::V21)
        .await
        .expect("listing");
    assert_eq!(listing.errors, Vec::<String>::new());
    assert_eq!(listing.rows.len(), 1);
    assert_eq!(listing.rows[0].api_root, m.api_root);
    assert_eq!(listing.rows[0].id, m.collection);
    assert!(listing.rows[0].can_read);
}

/// Copies a run's bundles where the test command validates them.
fn keep_for_validation(out: &std::path::Path) {
    let keep = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("taxii_medallion");
    let _ = std::fs::create_dir_all(&keep);
    let run = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for feed in std::fs::read_dir(out).into_iter().flatten().flatten() {
        for bundle in std::fs::read_dir(feed.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = format!(
                "{run}-{}-{}",
                feed.file_name().to_string_lossy(),
                bundle.file_name().to_string_lossy()
            );
            let _ = std::fs::copy(bundle.path(), keep.join(name));
        }
    }
}
