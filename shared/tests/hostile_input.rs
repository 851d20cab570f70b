//! Hostile input for every parser: property tests over random bytes and over random
//! mutations of valid documents (RSS/Atom, CSV with a mapper, TAXII envelopes and bundles,
//! SSE), and named attacks (entity expansion, deep nesting, very wide rows).
//!
//! The property for all of them: no panic, an answer (objects or an error) in bounded
//! time. For SSE also: how the bytes are split across reads never changes the events.
//! proptest keeps any failing input it finds under `proptest-regressions/`, and every run
//! replays those first, so a crash found once stays a test.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use feedstix::kinds::csv::{CsvCursor, CsvPager, Mapper};
use feedstix::kinds::rss::{ItemOutcome, RssCursor, RssPager, RssSettings};
use feedstix::kinds::stream::sse::SseReader;
use feedstix::kinds::taxii::document;
use feedstix::stix::Provenance;
use proptest::prelude::*;

const RSS: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Feed &amp; co</title><link>https://a.example.test/</link>
<item><title>CVE-2024-1234 in <![CDATA[Example]]></title><link>https://a.example.test/1</link>
<guid>g-1</guid><pubDate>Tue, 05 Mar 2024 09:30:00 +0100</pubDate>
<description>&lt;p&gt;Patch &amp;nbsp;now&lt;/p&gt;</description><category>x</category></item>
<item><title>Second</title><guid>g-2</guid><dc:date xmlns:dc="http://purl.org/dc/elements/1.1/">2024-03-06T10:00:00Z</dc:date></item>
</channel></rss>"#;

const CSV: &str = "# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n\
\"1\",\"2024-09-12 10:00:01\",\"http://198.51.100.7/i\",\"online\",\"\",\"malware_download\",\"elf,mips\",\"https://u.example.test/1\",\"r\"\n\
\"2\",\"2024-09-12 10:00:05\",\"https://files.example.test/a.zip\",\"offline\",\"\",\"malware_download\",\"zip\",\"https://u.example.test/2\",\"r\"\n";

const ENVELOPE: &str = r#"{"more":true,"next":"abc","objects":[{"type":"indicator","spec_version":"2.1","id":"indicator--00000000-0000-4000-8000-000000000001","created":"2024-01-01T00:00:00.000Z","modified":"2024-01-01T00:00:00.000Z","pattern":"[ipv4-addr:value = '192.0.2.1']","pattern_type":"stix","valid_from":"2024-01-01T00:00:00Z"}]}"#;

const SSE: &str = "event: connected\ndata: {\"lastEventId\":\"1-0\"}\n\nid: 2-0\nevent: create\ndata: {\"type\":\"create\",\"data\":{\"id\":\"x--1\"}}\n\n: comment\r\nid: 3-0\r\nevent: heartbeat\r\ndata: \"ok\"\r\n\r\n";

fn mapper() -> Mapper {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mappers/urlhaus.json");
    Mapper::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Drives the RSS pager to its end; returns the number of outcomes.
fn run_rss(bytes: &[u8]) -> usize {
    let settings = RssSettings {
        report_types: vec![],
    };
    let provenance = Provenance::default();
    let Ok(mut pager) = RssPager::new(
        bytes,
        &RssCursor::default(),
        &settings,
        &provenance,
        None,
        Utc::now(),
    ) else {
        return 0;
    };
    let mut n = 0;
    while let Some(item) = pager.next_item() {
        n += 1;
        if item.is_err() {
            break;
        }
        assert!(n < 1_000_000, "the pager does not end");
    }
    n
}

fn run_csv(bytes: &[u8], mapper: &Mapper) -> usize {
    let provenance = Provenance::default();
    let Ok(mut pager) = CsvPager::new(
        bytes,
        mapper,
        &CsvCursor::default(),
        &provenance,
        None,
        Utc::now(),
    ) else {
        return 0;
    };
    let mut n = 0;
    while let Ok(Some(slice)) = pager.next_slice(100) {
        n += slice.len();
    }
    n
}

/// Events of a body fed in the given chunk sizes, as (event, id, data) triples.
fn sse_events(
    body: &[u8],
    cuts: &[usize],
) -> Result<Vec<(String, Option<String>, String)>, String> {
    let mut reader = SseReader::new(1 << 20);
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        for e in reader.feed(&rest[..n]).map_err(|e| e.to_string())? {
            out.push((e.event.clone(), e.id.clone(), e.data.clone()));
        }
        rest = &rest[n..];
    }
    Ok(out)
}

/// A valid document with random bytes replaced, inserted or removed.
fn mutated(valid: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    proptest::collection::vec((0..len, any::<u8>(), 0..3u8), 1..12).prop_map(move |edits| {
        let mut bytes = valid.as_bytes().to_vec();
        for (at, byte, how) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match how {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn rss_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        run_rss(&bytes);
    }

    #[test]
    fn rss_survives_mutations(bytes in mutated(RSS)) {
        run_rss(&bytes);
    }

    #[test]
    fn csv_survives_random_bytes_and_mutations(
        noise in proptest::collection::vec(any::<u8>(), 0..2048),
        bytes in mutated(CSV),
    ) {
        let m = mapper();
        run_csv(&noise, &m);
        run_csv(&bytes, &m);
    }

    #[test]
    fn taxii_documents_survive_random_bytes_and_mutations(
        noise in proptest::collection::vec(any::<u8>(), 0..1024),
        bytes in mutated(ENVELOPE),
    ) {
        for body in [&noise, &bytes] {
            let _ = document::envelope(body);
            let _ = document::bundle(body);
            let _ = document::error_detail(body);
        }
    }

    #[test]
    fn sse_events_do_not_depend_on_how_the_bytes_are_split(
        bytes in mutated(SSE),
        cuts in proptest::collection::vec(1usize..40, 1..8),
    ) {
        let whole = sse_events(&bytes, &[bytes.len().max(1)]);
        let split = sse_events(&bytes, &cuts);
        prop_assert_eq!(whole, split);
    }
}

#[test]
fn the_valid_seeds_really_parse() {
    // Guards the properties above: mutations start from documents that give results.
    assert_eq!(run_rss(RSS.as_bytes()), 2);
    assert!(run_csv(CSV.as_bytes(), &mapper()) >= 6);
    assert_eq!(
        document::envelope(ENVELOPE.as_bytes())
            .unwrap()
            .objects
            .len(),
        1
    );
    let events = sse_events(SSE.as_bytes(), &[7]).unwrap();
    assert_eq!(
        events.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["connected", "create", "heartbeat"]
    );
}

#[test]
fn entity_expansion_is_refused() {
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>
<rss version="2.0"><channel><title>&c;</title><item><title>&c;</title></item></channel></rss>"#;
    let settings = RssSettings {
        report_types: vec![],
    };
    let provenance = Provenance::default();
    let result = RssPager::new(
        bomb.as_bytes(),
        &RssCursor::default(),
        &settings,
        &provenance,
        None,
        Utc::now(),
    )
    .and_then(|mut p| p.next_item().unwrap_or(Ok(ItemOutcome::Old)));
    let err = result
        .expect_err("a document declaring entities must be refused")
        .to_string();
    assert!(err.contains("entit"), "{err}");
}

#[test]
fn deep_nesting_is_refused_quickly() {
    let depth = 200_000;
    let mut doc = String::from(
        r#"<?xml version="1.0"?><rss version="2.0"><channel><item><title>t</title><description>"#,
    );
    doc.push_str(&"<div>".repeat(depth));
    doc.push_str(&"</div>".repeat(depth));
    doc.push_str("</description></item></channel></rss>");
    let started = Instant::now();
    let settings = RssSettings {
        report_types: vec![],
    };
    let provenance = Provenance::default();
    let mut pager = RssPager::new(
        doc.as_bytes(),
        &RssCursor::default(),
        &settings,
        &provenance,
        None,
        Utc::now(),
    )
    .unwrap();
    let err = loop {
        match pager.next_item() {
            Some(Err(e)) => break e.to_string(),
            Some(Ok(_)) => {}
            None => panic!("a document nested {depth} deep was accepted"),
        }
    };
    assert!(err.contains("nested more than 256 levels"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_very_wide_row_is_handled_in_bounded_time() {
    let mut body = CSV.to_string();
    body.push_str(&"\"x\",".repeat(200_000));
    body.push('\n');
    let started = Instant::now();
    let n = run_csv(body.as_bytes(), &mapper());
    assert!(n >= 6, "the good rows still map ({n})");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
