//! The shipped mapper library: every mapper in examples/mappers loads, and the CISA Known
//! Exploited Vulnerabilities mapper turns a catalog in its real layout into one
//! vulnerability per row. The other mappers are exercised on inputs of their feeds'
//! shapes by the csv kind's own tests.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use chrono::Utc;
use feedstix::kinds::csv::{CsvCursor, CsvPager, Mapper};
use feedstix::stix::{Provenance, Tlp};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_shipped_mapper_loads() {
    let dir = root().join("../examples/mappers");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mapper = Mapper::from_json(&text)
            .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
        assert!(!mapper.name().is_empty());
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    for expected in [
        "cisa-kev.json",
        "et-compromised.json",
        "feodo.json",
        "phishtank.json",
        "spamhaus-drop.json",
        "sslbl.json",
        "threatfox.json",
        "urlhaus.json",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} missing from {names:?}"
        );
    }
}

#[test]
fn cisa_kev_catalog_gives_one_vulnerability_per_row() {
    let mapper = Mapper::from_json(
        &std::fs::read_to_string(root().join("../examples/mappers/cisa-kev.json")).unwrap(),
    )
    .unwrap();
    let body = std::fs::read(root().join("tests/data/csv/cisa_kev.csv")).unwrap();
    let provenance = Provenance {
        author: Some("CISA".into()),
        markings: vec![Tlp::Clear],
    };
    let mut pager = CsvPager::new(
        &body[..],
        &mapper,
        &CsvCursor::default(),
        &provenance,
        None,
        Utc::now(),
    )
    .unwrap();
    let mut objects = Vec::new();
    while let Some(slice) = pager.next_slice(100).unwrap() {
        objects.extend(slice);
    }
    assert!(pager.skipped().is_empty(), "{:?}", pager.skipped());
    let vulns: Vec<_> = objects
        .iter()
        .filter(|o| o["type"] == "vulnerability")
        .collect();
    let names: Vec<&str> = vulns.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["CVE-2024-3400", "CVE-2023-46805", "CVE-2021-44228"]);
    for v in &vulns {
        assert_eq!(
            v["id"],
            feedstix::stix::ids::named_sdo_id("vulnerability", v["name"].as_str().unwrap())
        );
        assert_eq!(v["labels"][0], "known-exploited");
        assert!(v["description"].as_str().unwrap().len() > 20);
        assert_eq!(v["external_references"][0]["external_id"], v["name"]);
    }
    // The header row is not data.
    assert!(!names.contains(&"cveID"));
}

/// The example configuration names a real feed for every shipped mapper, and each of those
/// sections is a valid feed definition once uncommented.
#[test]
fn the_example_configuration_has_a_real_feed_for_every_mapper() {
    let text = std::fs::read_to_string(root().join("../examples/feeds.toml")).unwrap();
    let real = text.split("# --- Real feeds").nth(1).unwrap();
    let uncommented: String = real
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| !l.starts_with(' ') && (l.starts_with('[') || l.contains(" = ")))
        .map(|l| format!("{l}\n"))
        .collect();
    let (_, feeds) = feedstix::config::parse(&uncommented, &root().join("../examples"))
        .unwrap_or_else(|e| panic!("{e:?}\n{uncommented}"));
    for mapper in std::fs::read_dir(root().join("../examples/mappers")).unwrap() {
        let name = mapper.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            feeds.iter().any(|f| matches!(&f.kind, feedstix::config::KindConfig::Csv { mapper_path: Some(p), .. } if p.ends_with(&name))),
            "no real feed uses {name}"
        );
    }
    assert!(feeds.iter().all(|f| f.url.starts_with("https://")));
}
