//! Tests of the CSV kind against the fixtures in `shared/tests/data/csv` and the mappers
//! shipped in `examples/mappers`, all compiled in (nothing is read from outside the crate
//! at run time).

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::*;
use crate::stix::ids;
use crate::stix::Tlp;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/data/csv/", $name))
    };
}

macro_rules! shipped {
    ($name:literal) => {
        include_str!(concat!("../../../../examples/mappers/", $name))
    };
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn provenance() -> Provenance {
    Provenance {
        author: Some("feedstix tests".into()),
        markings: vec![Tlp::Clear],
    }
}

/// Runs a whole body through a fresh pager; returns objects, skips and the new cursor.
fn run_with(
    body: &str,
    mapper: &Mapper,
    cursor: &CsvCursor,
) -> Result<(Vec<StixObject>, Vec<RowSkip>, CsvCursor), CsvError> {
    let mut pager = CsvPager::new(body.as_bytes(), mapper, cursor, &provenance(), None, now())?;
    let mut all = Vec::new();
    while let Some(slice) = pager.next_slice(1000)? {
        all.extend(slice);
    }
    let skips = pager.skipped().to_vec();
    Ok((all, skips, pager.finish()))
}

fn run(body: &str, mapper_json: &str) -> (Vec<StixObject>, Vec<RowSkip>) {
    let mapper = Mapper::from_json(mapper_json).unwrap();
    let (objects, skips, _) = run_with(body, &mapper, &CsvCursor::default()).unwrap();
    (objects, skips)
}

fn of_type<'a>(objects: &'a [StixObject], t: &str) -> Vec<&'a StixObject> {
    objects.iter().filter(|o| o["type"] == t).collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn c06_urlhaus_crlf_commented_header() {
    let (objects, skips) = run(
        fixture!("C06_csv_crlf_quoted_with_hash_header.csv"),
        shipped!("urlhaus.json"),
    );
    assert!(skips.is_empty(), "{skips:?}");
    let urls = of_type(&objects, "url");
    let values: Vec<&str> = urls.iter().map(|u| u["value"].as_str().unwrap()).collect();
    assert_eq!(
        values,
        [
            "http://198.51.100.7:40123/i",
            "https://files.example.test/inv.zip"
        ]
    );
    assert_eq!(
        urls[0]["id"],
        ids::value_sco_id("url", "http://198.51.100.7:40123/i")
    );
    let indicators = of_type(&objects, "indicator");
    assert_eq!(indicators.len(), 2);
    assert_eq!(
        indicators[0]["pattern"],
        "[url:value = 'http://198.51.100.7:40123/i']"
    );
    assert_eq!(
        indicators[0]["id"],
        ids::indicator_id("[url:value = 'http://198.51.100.7:40123/i']")
    );
    assert_eq!(indicators[0]["valid_from"], "2024-09-12T10:00:01.000Z");
    assert_eq!(strs(&indicators[0]["labels"]), ["32-bit", "elf", "mips"]);
    assert_eq!(strs(&indicators[1]["labels"]), ["zip"]);
    assert_eq!(
        strs(&urls[0]["x_opencti_labels"]),
        ["32-bit", "elf", "mips"]
    );
    assert_eq!(of_type(&objects, "relationship").len(), 2);
    let text = serde_json::to_string(&objects).unwrap();
    assert!(!text.contains("\\r"), "a value kept a carriage return");
}

#[test]
fn c06_empty_cell_is_absent() {
    // last_online (column E) mapped as a description: present on row 1, empty on row 2.
    let mapper = shipped!("urlhaus.json").replace(
        r#""key": "value","#,
        r#""key": "x_opencti_description", "column": {"column_name": "E"}}, {"key": "value","#,
    );
    let (objects, _) = run(
        fixture!("C06_csv_crlf_quoted_with_hash_header.csv"),
        &mapper,
    );
    let urls = of_type(&objects, "url");
    assert_eq!(urls[0]["x_opencti_description"], "2024-09-12 10:00:01");
    assert!(urls[1].get("x_opencti_description").is_none());
}

const YARA_MAPPER: &str = r#"{"name": "yara", "has_header": true, "separator": ",",
  "representations": [{"id": "i", "type": "entity", "target": {"entity_type": "Indicator"},
    "attributes": [{"key": "name", "column": {"column_name": "A"}},
                   {"key": "pattern", "column": {"column_name": "C"}},
                   {"key": "pattern_type", "column": null, "default_values": ["yara"]}]}]}"#;

#[test]
fn c07_quoted_multiline_yara_rule() {
    let mapper = Mapper::from_json(YARA_MAPPER).unwrap();
    let body = fixture!("C07_csv_quoted_field_with_newlines.csv");
    let mut pager = CsvPager::new(
        body.as_bytes(),
        &mapper,
        &CsvCursor::default(),
        &provenance(),
        None,
        now(),
    )
    .unwrap();
    let objects = pager.next_slice(100).unwrap().unwrap();
    assert!(pager.next_slice(100).unwrap().is_none());
    assert_eq!(pager.rows_read(), 1);
    assert_eq!(objects.len(), 1);
    let ind = &objects[0];
    assert_eq!(ind["name"], "ExampleDownloader");
    assert_eq!(ind["pattern_type"], "yara");
    let pattern = ind["pattern"].as_str().unwrap();
    assert_eq!(pattern.lines().count(), 9);
    assert!(pattern.contains(r#"author = "analyst""#) && pattern.contains(r#"$a = "stage2.bin""#));
    assert_eq!(ind["valid_from"], "2025-01-01T00:00:00.000Z");
}

#[test]
fn c08_skip_char_only_at_record_start() {
    let mapper = r##"{"name": "c08", "has_header": true, "separator": ",", "skipLineChar": "#",
      "representations": [{"id": "i", "type": "entity", "target": {"entity_type": "Indicator"},
        "attributes": [{"key": "name", "column": {"column_name": "A"}},
                       {"key": "pattern_type", "column": {"column_name": "B"}},
                       {"key": "pattern", "column": {"column_name": "C"}}]}]}"##;
    let (objects, skips) = run(fixture!("C08_csv_skip_hash_line_in_quoted_csv.csv"), mapper);
    assert!(skips.is_empty());
    let patterns: Vec<&str> = objects
        .iter()
        .map(|o| o["pattern"].as_str().unwrap())
        .collect();
    assert_eq!(
        patterns,
        [
            "[domain-name:value = 'bad.example.test']",
            "[ipv4-addr:value = '203.0.113.9']"
        ]
    );
    // A `#` that starts a line inside a quoted cell is data, not a comment.
    let body = "name,pattern_type,pattern\n\"multi\",\"stix\",\"[domain-name:value = 'x.example.test']\n#still the cell\"\n";
    let (objects, _) = run(body, mapper);
    assert_eq!(objects.len(), 1);
    assert!(objects[0]["pattern"]
        .as_str()
        .unwrap()
        .ends_with("#still the cell"));
}

/// One mapper, by header name, for both Feodo layouts.
const FEODO_BY_NAME: &str = r##"{"name": "feodo by name", "has_header": true, "separator": ",",
  "skipLineChar": "#", "representations": [
    {"id": "ip", "type": "entity", "target": {"entity_type": "IPv4-Addr"},
     "attributes": [{"key": "value", "column": {"column_name": "dst_ip|DstIP"}}]},
    {"id": "ind", "type": "entity", "target": {"entity_type": "Indicator"},
     "attributes": [{"key": "pattern", "column": {"column_name": "dst_ip|DstIP"}},
                    {"key": "x_opencti_main_observable_type", "default_values": ["IPv4-Addr"]},
                    {"key": "description", "column": {"column_name": "c2_status"}},
                    {"key": "valid_from", "column": {"column_name": "first_seen_utc|Firstseen",
                       "configuration": {"pattern_date": "YYYY-MM-DD HH:mm:ss"}}}]},
    {"id": "mal", "type": "entity", "target": {"entity_type": "Malware"},
     "attributes": [{"key": "name", "column": {"column_name": "malware"}}]},
    {"id": "r1", "type": "relationship", "target": {"entity_type": "based-on"},
     "attributes": [{"key": "from", "based_on": {"representations": ["ind"]}},
                    {"key": "to", "based_on": {"representations": ["ip"]}}]},
    {"id": "r2", "type": "relationship", "target": {"entity_type": "indicates"},
     "attributes": [{"key": "from", "based_on": {"representations": ["ind"]}},
                    {"key": "to", "based_on": {"representations": ["mal"]}}]}]}"##;

/// The same without `c2_status`, which the old layout lacks.
const FEODO_OLD_BY_NAME: &str = r##"{"name": "old feodo by name", "has_header": true,
  "skipLineChar": "#", "representations": [
    {"id": "ind", "type": "entity", "target": {"entity_type": "Indicator"},
     "attributes": [{"key": "pattern", "column": {"column_name": "dst_ip|DstIP"}},
                    {"key": "x_opencti_main_observable_type", "default_values": ["IPv4-Addr"]},
                    {"key": "valid_from", "column": {"column_name": "first_seen_utc|Firstseen",
                       "configuration": {"pattern_date": "YYYY-MM-DD HH:mm:ss"}}}]},
    {"id": "mal", "type": "entity", "target": {"entity_type": "Malware"},
     "attributes": [{"key": "name", "column": {"column_name": "malware"}}]},
    {"id": "r2", "type": "relationship", "target": {"entity_type": "indicates"},
     "attributes": [{"key": "from", "based_on": {"representations": ["ind"]}},
                    {"key": "to", "based_on": {"representations": ["mal"]}}]}]}"##;

#[test]
fn c09_both_feodo_layouts_by_header_name() {
    let (objects, skips) = run(
        fixture!("C09a_csv_feodo_layout_old_commented_header.csv"),
        FEODO_OLD_BY_NAME,
    );
    assert!(skips.is_empty(), "{skips:?}");
    let ind = of_type(&objects, "indicator");
    assert_eq!(ind.len(), 1);
    assert_eq!(ind[0]["pattern"], "[ipv4-addr:value = '192.0.2.10']");
    assert_eq!(ind[0]["valid_from"], "2021-01-05T08:00:00.000Z");
    assert_eq!(of_type(&objects, "malware")[0]["name"], "TrickBot");
    assert_eq!(of_type(&objects, "relationship").len(), 1);

    let (objects, skips) = run(
        fixture!("C09b_csv_feodo_layout_new_quoted_header.csv"),
        FEODO_BY_NAME,
    );
    assert!(skips.is_empty(), "{skips:?}");
    let ind = of_type(&objects, "indicator");
    assert_eq!(
        ind.len(),
        1,
        "the quoted header row must not become an indicator"
    );
    assert_eq!(ind[0]["pattern"], "[ipv4-addr:value = '192.0.2.20']");
    assert_eq!(ind[0]["description"], "online");
    assert_eq!(ind[0]["valid_from"], "2021-02-01T07:30:05.000Z");
    assert_eq!(of_type(&objects, "malware")[0]["name"], "Dridex");

    // The new-layout mapper on the old file names the missing column.
    let mapper = Mapper::from_json(FEODO_BY_NAME).unwrap();
    let err = CsvPager::new(
        fixture!("C09a_csv_feodo_layout_old_commented_header.csv").as_bytes(),
        &mapper,
        &CsvCursor::default(),
        &provenance(),
        None,
        now(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("column `c2_status`") && err.contains("line 4"),
        "{err}"
    );
}

#[test]
fn c09_shipped_feodo_mapper() {
    let (objects, skips) = run(
        fixture!("C09b_csv_feodo_layout_new_quoted_header.csv"),
        shipped!("feodo.json"),
    );
    assert!(skips.is_empty());
    assert_eq!(of_type(&objects, "ipv4-addr")[0]["value"], "192.0.2.20");
    assert_eq!(of_type(&objects, "malware")[0]["name"], "Dridex");
}

#[test]
fn feodo_blocklist_with_a_bad_row() {
    let (objects, skips) = run(fixture!("feodo_ipblocklist.csv"), shipped!("feodo.json"));
    assert_eq!(of_type(&objects, "ipv4-addr").len(), 3);
    assert_eq!(of_type(&objects, "indicator").len(), 3);
    let malware = of_type(&objects, "malware");
    assert_eq!(malware.len(), 2, "one Pikabot, one QakBot in the slice");
    assert_eq!(malware[0]["id"], ids::named_sdo_id("malware", "Pikabot"));
    assert_eq!(malware[0]["is_family"], true);
    let rels = of_type(&objects, "relationship");
    assert_eq!(
        rels.iter()
            .filter(|r| r["relationship_type"] == "based-on")
            .count(),
        3
    );
    assert_eq!(
        rels.iter()
            .filter(|r| r["relationship_type"] == "indicates")
            .count(),
        3
    );
    assert_eq!(skips.len(), 1);
    assert_eq!(skips[0].line, 11);
    assert!(
        skips[0]
            .reason
            .contains("`not-an-ip` is not a valid ipv4-addr"),
        "{}",
        skips[0].reason
    );
    let ind = of_type(&objects, "indicator");
    assert_eq!(
        ind[0]["created_by_ref"],
        ids::identity_id("feedstix tests", "organization")
    );
    assert_eq!(ind[0]["object_marking_refs"][0], Tlp::Clear.id());
    assert_eq!(strs(&ind[0]["labels"]), ["botnet-c2"]);
}

#[test]
fn urlhaus_recent_escapes_quotes_in_patterns() {
    let (objects, skips) = run(fixture!("urlhaus_recent.csv"), shipped!("urlhaus.json"));
    assert!(skips.is_empty(), "{skips:?}");
    let ind = of_type(&objects, "indicator");
    assert_eq!(ind.len(), 4);
    assert_eq!(
        ind[2]["pattern"],
        r"[url:value = 'http://203.0.113.5/it\'s\\path.exe']"
    );
    assert_eq!(ind[2]["name"], r"http://203.0.113.5/it's\path.exe");
    assert!(ind[2].get("labels").is_none(), "empty tags give no labels");
    // The backslash makes the URL an invalid URI: the observable (and its based-on) is
    // left out, the indicator stays.
    assert_eq!(of_type(&objects, "url").len(), 3);
    assert_eq!(of_type(&objects, "relationship").len(), 3);
    assert_eq!(strs(&ind[1]["labels"]), ["js", "Loader"]);
}

#[test]
fn sslbl_rows_wider_than_commented_header() {
    let (objects, skips) = run(fixture!("sslbl_ipblacklist.csv"), shipped!("sslbl.json"));
    assert!(skips.is_empty(), "{skips:?}");
    let ind = of_type(&objects, "indicator");
    assert_eq!(ind.len(), 3);
    assert_eq!(ind[0]["description"], "URLzone C&C");
    assert_eq!(ind[0]["pattern"], "[ipv4-addr:value = '192.0.2.100']");
}

#[test]
fn spamhaus_semicolons_and_ipv6() {
    let (objects, skips) = run(
        fixture!("spamhaus_drop.txt"),
        shipped!("spamhaus-drop.json"),
    );
    assert!(skips.is_empty(), "{skips:?}");
    let patterns: Vec<&str> = objects
        .iter()
        .map(|o| o["pattern"].as_str().unwrap())
        .collect();
    assert_eq!(
        patterns,
        [
            "[ipv4-addr:value = '192.0.2.0/24']",
            "[ipv4-addr:value = '198.51.100.0/25']",
            "[ipv6-addr:value = '2001:db8::/32']"
        ]
    );
    assert_eq!(objects[0]["description"], "SBL000001");
}

#[test]
fn emerging_threats_plain_list() {
    let body = fixture!("emergingthreats_compromised_ips_plain_list.txt");
    let (objects, skips) = run(body, shipped!("et-compromised.json"));
    assert!(skips.is_empty(), "{skips:?}");
    let lines = body.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(lines, 539);
    assert_eq!(of_type(&objects, "ipv4-addr").len(), lines);
    assert_eq!(of_type(&objects, "indicator").len(), lines);
    assert_eq!(
        of_type(&objects, "indicator")[0]["pattern"],
        "[ipv4-addr:value = '101.100.216.61']"
    );
}

#[test]
fn phishtank_quoted_commas() {
    let (objects, skips) = run(
        fixture!("phishtank_verified.csv"),
        shipped!("phishtank.json"),
    );
    assert!(skips.is_empty(), "{skips:?}");
    let urls = of_type(&objects, "url");
    assert_eq!(urls.len(), 3);
    assert_eq!(urls[1]["value"], "http://bank.example.test/a,b?x=1&amp;y=2");
    let ind = of_type(&objects, "indicator");
    assert_eq!(ind[1]["description"], "Example Bank, Inc.");
    assert_eq!(ind[0]["valid_from"], "2021-03-14T07:31:24.000Z");
}

#[test]
fn dshield_tab_separated_uncommented_header() {
    let mapper = r##"{"name": "dshield", "has_header": true, "separator": "\t", "skipLineChar": "#",
      "representations": [{"id": "i", "type": "entity", "target": {"entity_type": "IPv4-Addr"},
        "attributes": [{"key": "value", "column": {"column_name": "Start"}},
                       {"key": "x_opencti_description", "column": {"column_name": "Name"}}]}]}"##;
    let (objects, skips) = run(fixture!("dshield_block.txt"), mapper);
    assert!(skips.is_empty(), "{skips:?}");
    let values: Vec<&str> = objects
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["192.0.2.0", "198.51.100.0"]);
    assert_eq!(objects[0]["x_opencti_description"], "Example Net");
    assert!(objects[1].get("x_opencti_description").is_none());
}

#[test]
fn threatfox_commented_quoted_header_and_conditions() {
    let (objects, skips) = run(fixture!("threatfox_recent.csv"), shipped!("threatfox.json"));
    assert!(skips.is_empty(), "{skips:?}");
    let ind = of_type(&objects, "indicator");
    let patterns: Vec<&str> = ind.iter().map(|o| o["pattern"].as_str().unwrap()).collect();
    assert_eq!(
        patterns,
        [
            "[domain-name:value = 'bad-c2.example.test']",
            "[url:value = 'http://198.51.100.9/gate.php']",
            "[file:hashes.'MD5' = '0123456789abcdef0123456789abcdef']"
        ]
    );
    assert_eq!(ind[0]["x_opencti_score"], 75);
    assert_eq!(strs(&ind[0]["labels"]), ["RAT"]);
    assert_eq!(ind[0]["valid_from"], "2024-05-05T11:41:00.000Z");
    let malware: Vec<&str> = of_type(&objects, "malware")
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(malware, ["Cobalt Strike", "Remcos", "Lumma Stealer"]);
    assert_eq!(of_type(&objects, "relationship").len(), 3);
}

#[test]
fn opencti_test_file_comment_before_header_and_extra_column() {
    let mapper = r##"{"openCTI_version": "6.6.0", "type": "csvMapper", "configuration": {
      "name": "area and malware", "has_header": true, "separator": ",", "skipLineChar": "#",
      "representations": [{"id": "m", "type": "entity", "target": {"entity_type": "Malware"},
        "attributes": [{"key": "name", "column": {"column_name": "E"}},
                       {"key": "description", "column": {"column_name": "F"}},
                       {"key": "is_family", "column": null, "default_values": ["false"]}]}]}}"##;
    let (objects, skips) = run(
        fixture!("opencti_csvmapper_comment_before_header_extra_column.csv"),
        mapper,
    );
    assert!(skips.is_empty(), "{skips:?}");
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["name"], "tuxguitar");
    assert_eq!(objects[0]["description"], "an opensource guitar tab editor");
    assert_eq!(objects[0]["is_family"], false);
}

#[test]
fn feed_export_envelope_with_inline_mapper() {
    let feed = r#"{"openCTI_version": "6.6.6", "type": "csvFeeds", "configuration": {
      "id": "x", "name": "Test feed", "uri": "https://feed.example.test/list.csv",
      "authentication_type": "none", "markings": [], "csv_mapper_type": "inline",
      "csv_mapper": {"openCTI_version": "6.6.6", "type": "csvMapper", "configuration": {
        "id": "y", "name": "Inline CSV Feed", "has_header": false, "separator": ";",
        "representations": [
          {"id": "a", "type": "entity", "target": {"entity_type": "Url", "column_based": null},
           "attributes": [{"key": "value", "column": {"column_name": "A", "configuration": null},
                           "default_values": null, "based_on": null}]},
          {"id": "b", "type": "entity", "target": {"entity_type": "Domain-Name", "column_based": null},
           "attributes": [{"key": "value", "column": {"column_name": "B", "configuration": null},
                           "default_values": null, "based_on": null}]},
          {"id": "r", "type": "relationship", "target": {"entity_type": "related-to", "column_based": null},
           "attributes": [{"key": "from", "column": null, "default_values": null,
                           "based_on": {"representations": ["b"]}},
                          {"key": "to", "column": null, "default_values": null,
                           "based_on": {"representations": ["a"]}}]}],
        "skipLineChar": ""}}}}"#;
    let mapper = Mapper::from_json(feed).unwrap();
    assert_eq!(mapper.name(), "Inline CSV Feed");
    let (objects, _, _) = run_with(
        "http://a.example.test/x;a.example.test\n",
        &mapper,
        &CsvCursor::default(),
    )
    .unwrap();
    assert_eq!(objects.len(), 3);
    let rel = &objects[2];
    assert_eq!(
        rel["source_ref"],
        ids::value_sco_id("domain-name", "a.example.test")
    );
    assert_eq!(
        rel["target_ref"],
        ids::value_sco_id("url", "http://a.example.test/x")
    );
}

#[test]
fn multi_value_cells_fan_out() {
    let mapper = r##"{"name": "pipes", "has_header": true, "skipLineChar": "#", "representations": [
      {"id": "ip", "type": "entity", "target": {"entity_type": "IPv4-Addr"},
       "attributes": [{"key": "value", "column": {"column_name": "H",
                        "configuration": {"separator": "|"}}}]},
      {"id": "url", "type": "entity", "target": {"entity_type": "Url"},
       "attributes": [{"key": "value", "column": {"column_name": "E"}}]},
      {"id": "r", "type": "relationship", "target": {"entity_type": "related-to"},
       "attributes": [{"key": "from", "based_on": {"representations": ["url"]}},
                      {"key": "to", "based_on": {"representations": ["ip"]}}]}]}"##;
    let body = "# Firstseen (UTC),Threat,Malware,Host,URL,Status,Registrar,IP address(es),ASN(s),Country\n\
        \"2016-11-11 16:06:00\",\"Distribution Site\",\"Locky\",\"a.example.test\",\"http://a.example.test/645d5\",\"online\",\"\",\"192.0.2.1|198.51.100.2\",\"1|2\",\"RU|US\"\n";
    let (objects, _) = run(body, mapper);
    assert_eq!(of_type(&objects, "ipv4-addr").len(), 2);
    assert_eq!(of_type(&objects, "relationship").len(), 2);
}

#[test]
fn mapper_that_does_not_fit_gives_one_error() {
    // Column F on a three-column file.
    let mapper = Mapper::from_json(
        r#"{"name": "wide", "representations": [{"id": "u", "type": "entity",
          "target": {"entity_type": "Url"}, "attributes": [
            {"key": "value", "column": {"column_name": "A"}},
            {"key": "x_opencti_description", "column": {"column_name": "F"}}]}]}"#,
    )
    .unwrap();
    let err = run_with(
        "http://a.example.test/,x,y\nhttp://b.example.test/,x,y\n",
        &mapper,
        &CsvCursor::default(),
    )
    .err()
    .unwrap();
    let text = err.to_string();
    assert!(matches!(err, CsvError::Mismatch { line: 1, .. }), "{text}");
    assert!(
        text.contains("column F (field 6)") && text.contains("at most 3 fields"),
        "{text}"
    );

    // Every one of the first rows fails: the IPv4 mapper on a URL list.
    let mapper = Mapper::from_json(shipped!("et-compromised.json")).unwrap();
    let body = "http://a.example.test/\nhttp://b.example.test/\n";
    let text = run_with(body, &mapper, &CsvCursor::default())
        .err()
        .unwrap()
        .to_string();
    assert!(text.contains("none of the first 2 rows"), "{text}");
    assert!(
        text.contains("line 1") && text.contains("is not a valid ipv4-addr"),
        "{text}"
    );

    // An expected header that is missing.
    let mapper = Mapper::from_json(FEODO_BY_NAME).unwrap();
    let err = run_with("# only comments\n", &mapper, &CsvCursor::default())
        .err()
        .unwrap();
    assert!(matches!(err, CsvError::NoHeader { .. }), "{err}");
}

#[test]
fn bad_rows_are_skipped_and_bounded() {
    let mapper = Mapper::from_json(shipped!("et-compromised.json")).unwrap();
    let mut body = String::from("192.0.2.1\n");
    for i in 0..150 {
        body.push_str(&format!("not-an-address-{i}\n"));
    }
    body.push_str("192.0.2.2\n");
    let mut pager = CsvPager::new(
        body.as_bytes(),
        &mapper,
        &CsvCursor::default(),
        &provenance(),
        None,
        now(),
    )
    .unwrap();
    let mut indicators = 0;
    while let Some(slice) = pager.next_slice(7).unwrap() {
        indicators += of_type(&slice, "indicator").len();
    }
    assert_eq!(indicators, 2);
    assert_eq!(pager.rows_read(), 152);
    assert_eq!(pager.skipped().len(), 100);
    assert_eq!(pager.skipped_total(), 150);
    assert_eq!(pager.skipped()[0].line, 2);
}

#[test]
fn unchanged_file_gives_no_rows_and_changed_rows_come_again() {
    let mapper = Mapper::from_json(shipped!("feodo.json")).unwrap();
    let body = fixture!("feodo_ipblocklist.csv");
    let start = CsvCursor {
        etag: Some("\"v1\"".into()),
        ..CsvCursor::default()
    };
    let (first, _, cursor) = run_with(body, &mapper, &start).unwrap();
    assert!(!first.is_empty());
    assert_eq!(
        cursor.content_hash.as_deref(),
        Some(hex(&Sha256::digest(body.as_bytes())).as_str())
    );
    assert_eq!(cursor.etag.as_deref(), Some("\"v1\""));
    assert_eq!(cursor.fingerprints.len(), 4);

    let (again, _, cursor2) = run_with(body, &mapper, &cursor).unwrap();
    assert!(again.is_empty(), "an unchanged file emits nothing");
    assert_eq!(cursor2, cursor);

    // One row changed (status), one added: exactly those two rows come out.
    let changed = body
        .replace(
            "\"198.51.100.17\",\"2078\",\"online\"",
            "\"198.51.100.17\",\"2078\",\"offline\"",
        )
        .replace(
            "# END",
            "\"2024-04-04 01:00:00\",\"192.0.2.99\",\"80\",\"online\",\"\",\"Emotet\"\n# END",
        );
    let (delta, _, cursor3) = run_with(&changed, &mapper, &cursor).unwrap();
    let ips: Vec<&str> = of_type(&delta, "ipv4-addr")
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["198.51.100.17", "192.0.2.99"]);
    assert_eq!(cursor3.fingerprints.len(), 5);
    assert_ne!(cursor3.content_hash, cursor.content_hash);
}

#[test]
fn import_from_drops_older_rows() {
    let mapper = Mapper::from_json(shipped!("feodo.json")).unwrap();
    let from = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
    let body = fixture!("feodo_ipblocklist.csv");
    let mut pager = CsvPager::new(
        body.as_bytes(),
        &mapper,
        &CsvCursor::default(),
        &provenance(),
        Some(from),
        now(),
    )
    .unwrap();
    let mut objects = Vec::new();
    while let Some(s) = pager.next_slice(10).unwrap() {
        objects.extend(s);
    }
    let ips: Vec<&str> = of_type(&objects, "ipv4-addr")
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["203.0.113.80"]);
    assert_eq!(
        pager.finish().fingerprints.len(),
        4,
        "filtered rows are still remembered"
    );
}

#[test]
fn preview_stops_at_the_limit() {
    let mapper = Mapper::from_json(shipped!("et-compromised.json")).unwrap();
    let body = fixture!("emergingthreats_compromised_ips_plain_list.txt");
    let objects = preview(body.as_bytes(), &mapper, &provenance(), now(), 5).unwrap();
    let entities = objects
        .iter()
        .filter(|o| o["type"] != "relationship")
        .count();
    assert_eq!(entities, 5);
    for rel in of_type(&objects, "relationship") {
        for end in ["source_ref", "target_ref"] {
            assert!(
                objects.iter().any(|o| o["id"] == rel[end]),
                "dangling relationship"
            );
        }
    }
}

#[test]
fn finishing_early_keeps_the_previous_cursor() {
    let mapper = Mapper::from_json(shipped!("et-compromised.json")).unwrap();
    let previous = CsvCursor {
        content_hash: Some("old".into()),
        ..CsvCursor::default()
    };
    let body = fixture!("emergingthreats_compromised_ips_plain_list.txt");
    let mut pager = CsvPager::new(
        body.as_bytes(),
        &mapper,
        &previous,
        &provenance(),
        None,
        now(),
    )
    .unwrap();
    assert!(pager.next_slice(3).unwrap().is_some());
    assert_eq!(pager.finish(), previous);
}

/// Writes one bundle per fixture to `$FEEDSTIX_CSV_BUNDLE_DIR` (else a temporary
/// directory) for the OASIS validator: `stix-validate DIR`.
#[test]
fn write_bundles_for_validation() {
    let cases: [(&str, &str, &str); 13] = [
        (
            "c06",
            fixture!("C06_csv_crlf_quoted_with_hash_header.csv"),
            shipped!("urlhaus.json"),
        ),
        (
            "c07",
            fixture!("C07_csv_quoted_field_with_newlines.csv"),
            YARA_MAPPER,
        ),
        (
            "c09a",
            fixture!("C09a_csv_feodo_layout_old_commented_header.csv"),
            FEODO_OLD_BY_NAME,
        ),
        (
            "c09b",
            fixture!("C09b_csv_feodo_layout_new_quoted_header.csv"),
            FEODO_BY_NAME,
        ),
        (
            "feodo",
            fixture!("feodo_ipblocklist.csv"),
            shipped!("feodo.json"),
        ),
        (
            "urlhaus",
            fixture!("urlhaus_recent.csv"),
            shipped!("urlhaus.json"),
        ),
        (
            "sslbl",
            fixture!("sslbl_ipblacklist.csv"),
            shipped!("sslbl.json"),
        ),
        (
            "spamhaus",
            fixture!("spamhaus_drop.txt"),
            shipped!("spamhaus-drop.json"),
        ),
        (
            "et",
            fixture!("emergingthreats_compromised_ips_plain_list.txt"),
            shipped!("et-compromised.json"),
        ),
        (
            "phishtank",
            fixture!("phishtank_verified.csv"),
            shipped!("phishtank.json"),
        ),
        (
            "threatfox",
            fixture!("threatfox_recent.csv"),
            shipped!("threatfox.json"),
        ),
        (
            "c08",
            fixture!("C08_csv_skip_hash_line_in_quoted_csv.csv"),
            r##"{"has_header": true, "skipLineChar": "#",
          "representations": [{"id": "i", "type": "entity", "target": {"entity_type": "Indicator"},
          "attributes": [{"key": "name", "column": {"column_name": "A"}},
          {"key": "pattern_type", "column": {"column_name": "B"}},
          {"key": "pattern", "column": {"column_name": "C"}}]}]}"##,
        ),
        (
            "opencti",
            fixture!("opencti_csvmapper_comment_before_header_extra_column.csv"),
            r##"{"has_header": true,
          "skipLineChar": "#", "representations": [{"id": "m", "type": "entity",
          "target": {"entity_type": "Malware"}, "attributes": [{"key": "name", "column": {"column_name": "E"}}]}]}"##,
        ),
    ];
    let dir = std::env::var_os("FEEDSTIX_CSV_BUNDLE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("feedstix-csv-bundles"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut total = 0;
    for (name, body, mapper_json) in cases {
        let mapper = Mapper::from_json(mapper_json).unwrap();
        let (mut objects, _, _) = run_with(body, &mapper, &CsvCursor::default()).unwrap();
        objects.extend(provenance().objects());
        total += objects.len();
        let bundle = serde_json::json!({
            "type": "bundle",
            "id": format!("bundle--{}", uuid::Uuid::new_v4()),
            "objects": objects,
        });
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_vec_pretty(&bundle).unwrap(),
        )
        .unwrap();
    }
    eprintln!("wrote 13 bundles, {total} objects, to {}", dir.display());
}

/// URLhaus-shaped rows made on the fly, so the body never exists whole in memory.
struct SyntheticUrlhaus {
    rows: u64,
    next: u64,
    pending: Vec<u8>,
    pos: usize,
}

impl std::io::Read for SyntheticUrlhaus {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.pending.len() {
            self.pending.clear();
            self.pos = 0;
            if self.next == 0 {
                self.pending.extend_from_slice(
                    b"# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\r\n",
                );
            }
            while self.next < self.rows && self.pending.len() < 64 * 1024 {
                let i = self.next;
                let line = format!(
                    "\"{i}\",\"2024-09-12 10:{:02}:{:02}\",\"http://198.51.{}.{}:{}/bins/{i}.sh\",\"online\",\"\",\"malware_download\",\"32-bit,elf,mips\",\"https://urlhaus.example.test/url/{i}/\",\"reporter\"\r\n",
                    (i / 60) % 60,
                    i % 60,
                    (i >> 8) % 256,
                    i % 256,
                    1024 + i % 50000
                );
                self.pending.extend_from_slice(line.as_bytes());
                self.next += 1;
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The throughput target: `cargo test --release -p feedstix perf_million -- --ignored
/// --nocapture` (1,000,000 rows, < 10 s, < 64 MiB peak RSS).
#[test]
#[ignore = "slow in debug builds; run in release"]
fn perf_million_urlhaus_rows() {
    let rows = 1_000_000;
    let mapper = Mapper::from_json(shipped!("urlhaus.json")).unwrap();
    let body = SyntheticUrlhaus {
        rows,
        next: 0,
        pending: Vec::new(),
        pos: 0,
    };
    let started = std::time::Instant::now();
    let mut pager = CsvPager::new(
        body,
        &mapper,
        &CsvCursor::default(),
        &provenance(),
        None,
        now(),
    )
    .unwrap();
    let mut objects = 0usize;
    while let Some(slice) = pager.next_slice(2000).unwrap() {
        objects += slice.len();
    }
    assert_eq!(pager.rows_read(), rows);
    let cursor = pager.finish();
    let elapsed = started.elapsed();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: unknown");
    eprintln!(
        "{rows} rows, {objects} objects, {} fingerprints in {elapsed:?}; {peak}",
        cursor.fingerprints.len()
    );
    assert_eq!(objects, 3 * rows as usize);
}
