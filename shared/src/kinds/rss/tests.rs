//! Fixture tests: every RSS/Atom file of `tests/data/rss` through the pager, with the
//! outcomes asserted item by item, and the cursor behaviour across runs.

use super::*;
use crate::stix::ids::report_id;
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

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default()
}

/// Asserts one new report per item with these names and published times, ids following
/// from both.
fn assert_reports(run: &Run, expected: &[(&str, &str)]) {
    assert_eq!(
        run.names(),
        expected.iter().map(|e| e.0).collect::<Vec<_>>()
    );
    assert_eq!(
        run.published(),
        expected.iter().map(|e| e.1).collect::<Vec<_>>()
    );
    for (report, (name, published)) in run.reports().iter().zip(expected) {
        assert_eq!(report["id"], report_id(name, published));
        assert_eq!(report["created"], *published);
        assert_eq!(report["modified"], *published);
        assert_eq!(report["type"], "report");
        assert_eq!(report["spec_version"], "2.1");
        assert_eq!(report["report_types"], serde_json::json!(["threat-report"]));
        let refs = report["object_refs"].as_array().map_or(0, Vec::len);
        assert!(refs > 0, "object_refs of {name}");
    }
}

fn external_url(report: &StixObject) -> Option<&str> {
    report.get("external_references")?[0]["url"].as_str()
}

fn description(report: &StixObject) -> &str {
    report
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[test]
fn c01_named_zone_cest() {
    let run = run("C01_rss_pubdate_tz_abbreviation_cest.xml");
    assert_reports(
        &run,
        &[(
            "Advisory 2023-042: exploited VPN appliance flaw",
            "2023-12-04T08:25:00.000Z",
        )],
    );
    let report = run.reports()[0];
    assert_eq!(report["id"], "report--e5e6f55d-d956-5f95-a1fc-7a4b984cf56a");
    assert_eq!(
        report["external_references"],
        serde_json::json!([{"source_name": "cert.example.org",
            "url": "https://cert.example.org/publications/2023-042"}])
    );
    assert_eq!(run.cursor.newest, Some(at("2023-12-04T08:25:00Z")));
    assert_eq!(run.cursor.ids_at_newest, ["cert-2023-042"]);
}

#[test]
fn c02_item_without_title_is_named_after_its_link() {
    let run = run("C02_rss_item_without_title.xml");
    assert_reports(
        &run,
        &[(
            "https://social.example.net/@monitor/111",
            "2025-04-24T09:00:00.000Z",
        )],
    );
    assert_eq!(
        description(run.reports()[0]),
        "New phishing kit hosted at hxxp://login-portal[.]example[.]test"
    );
}

#[test]
fn c02_without_title_or_link_uses_the_first_words() {
    let body = br#"<rss><channel><item><description>&lt;p&gt;New phishing kit hosted at
        hxxp://login-portal[.]example[.]test, see the thread for the other twenty hosts&lt;/p&gt;
        </description><pubDate>Thu, 24 Apr 2025 09:00:00 +0000</pubDate></item></channel></rss>"#;
    let run = run_with(
        body,
        &RssCursor::default(),
        &Provenance::default(),
        None,
        now(),
    )
    .expect("test input");
    assert_eq!(
        run.names(),
        ["New phishing kit hosted at hxxp://login-portal[.]example[.]test, see the thread for the other\u{2026}"]
    );
}

#[test]
fn c03_rdf_latin1() {
    let run = run("C03_rss1_rdf_iso8859-1_raw_bytes.xml");
    assert_reports(
        &run,
        &[("Neue Glasfaserf\u{F6}rderung", "2023-01-25T18:03:02.000Z")],
    );
    assert_eq!(
        description(run.reports()[0]),
        "F\u{F6}rderprogramm f\u{FC}r Netzbetreiber"
    );
}

#[test]
fn c04_atom_mime_typed_content_with_raw_markup() {
    let run = run("C04_atom_content_type_mime_with_raw_markup.xml");
    assert_reports(&run, &[("Loader analysis", "2024-01-05T00:00:00.000Z")]);
    assert_eq!(description(run.reports()[0]), "Loader analysis");
    assert_eq!(
        external_url(run.reports()[0]),
        Some("https://notes.example.org/0001/")
    );
}

#[test]
fn c05_undefined_html_entities() {
    let run = run("C05_rss_undefined_html_entities.xml");
    assert_reports(
        &run,
        &[
            ("Weekly\u{A0}threat round-up", "2018-01-24T10:00:00.000Z"),
            ("Ransomware notes \u{BB} part 2", "2018-01-24T11:00:00.000Z"),
        ],
    );
}

#[test]
fn c14_bom_before_declaration() {
    let run = run("C14_rss_utf8_bom_before_xml_declaration.xml");
    assert_reports(
        &run,
        &[(
            "Security update for Example Server",
            "2024-01-15T18:00:00.000Z",
        )],
    );
    let json = serde_json::to_string(&run.reports()).unwrap_or_default();
    assert!(!json.contains('\u{FEFF}'));
}

#[test]
fn atom_rfc822_dates_padded() {
    let run = run("atomcrate_rfc822_dates_whitespace.xml");
    assert_reports(&run, &[("Entry Title", "2017-06-01T20:15:44.000Z")]);
    let report = run.reports()[0];
    assert_eq!(
        report["labels"],
        serde_json::json!(["technology", "podcast"])
    );
    assert_eq!(description(report), "Entry content");
    assert_eq!(external_url(report), Some("http://example.com/article/"));
}

#[test]
fn greek_dates_and_empty_feeds_give_nothing() {
    for name in [
        "feedparser_iso-8859-7_high_bit_date.xml",
        "feedparser_utf-8-bom.xml",
    ] {
        let run = run(name);
        assert!(run.outcomes.is_empty(), "{name}");
        assert_eq!(run.cursor, RssCursor::default());
    }
}

#[test]
fn atom10_prefix_and_feedburner() {
    let run = run("feedrs_akamai_atom10_prefix_feedburner.xml");
    assert_reports(
        &run,
        &[(
            "Time to Transfer Risk: Why Security Complexity & VPNs Are No Longer Sustainable",
            "2019-07-30T16:00:00.000Z",
        )],
    );
    let report = run.reports()[0];
    assert_eq!(report["labels"], serde_json::json!(["Zero Trust", "SSL"]));
    assert_eq!(
        external_url(report),
        Some("https://blogs.akamai.com/2019/07/time-to-transfer-risk-why-security-complexity-vpns-are-no-longer-sustainable.html")
    );
    assert_eq!(
        report["external_references"][0]["source_name"],
        "blogs.akamai.com"
    );
    assert!(description(report).starts_with("We all heed the gospel of patching"));
}

#[test]
fn cloudflare_content_encoded() {
    let run = run("feedrs_cloudflare_blog_cdata_content_encoded.xml");
    assert_reports(
        &run,
        &[(
            "Privacy-Preserving Compromised Credential Checking",
            "2021-10-14T12:59:53.000Z",
        )],
    );
    let report = run.reports()[0];
    assert_eq!(
        report["labels"],
        serde_json::json!(["Research", "Security", "Product News"])
    );
    let text = description(report);
    assert!(
        text.starts_with("Today we\u{2019}re announcing a public demo"),
        "{text:.80}"
    );
    assert!(!text.contains('<') || !text.contains("</p>"));
    assert!(text.contains("\n\n"), "paragraphs stay apart");
}

#[test]
fn dbengines_nbsp_and_dc_date() {
    let run = run("feedrs_dbengines_no_xmldecl_nbsp_dcdate.xml");
    assert_reports(
        &run,
        &[(
            "Snowflake is the DBMS of the Year 2022, defending the title from last year",
            "2023-01-03T15:00:00.000Z",
        )],
    );
    assert!(description(run.reports()[0]).contains("in our\u{A0}DB-Engines Ranking\u{A0}within"));
}

#[test]
fn golem_rdf_latin1() {
    let run = run("feedrs_golem_rdf_rss1.0_iso-8859-1.xml");
    assert_reports(
        &run,
        &[(
            "Digitalministerium: Neue Glasfaserf\u{F6}rderung mit Schnellkasse",
            "2023-01-25T18:03:02.000Z",
        )],
    );
    assert_eq!(
        description(run.reports()[0]),
        "Ab April soll es wieder F\u{F6}rderung f\u{FC}r den Ausbau von Glasfaser geben. Das \
         Bundesdigitalministerium will es diesmal besser machen. (Infrastruktur, Glasfaser)"
    );
}

#[test]
fn ilgiornale_z_zone_and_double_escaped_html() {
    let run = run("feedrs_ilgiornale_Z_zone_escaped_html.xml");
    assert_reports(
        &run,
        &[(
            "Arrestato in Pakistan Shabbar Abbas. In Italia \u{E8} accusato per l'omicidio di Saman",
            "2022-11-15T20:15:04.000Z",
        )],
    );
    let report = run.reports()[0];
    assert_eq!(
        description(report),
        "\u{C8} stato arrestato in Pakistan per frode Shabbar, padre di Saman Abbas. In Italia \
         l'uomo \u{E8} accusato di essere il mandante di un presunto delitto d'onore"
    );
    assert_eq!(report["labels"], serde_json::json!(["Cronaca nera"]));
}

#[test]
fn inovacao_latin1_single_quoted_attributes() {
    let run = run("feedrs_inovacao_iso-8859-1.xml");
    assert_reports(
        &run,
        &[(
            "Revolu\u{E7}\u{E3}o nas telas com pontos qu\u{E2}nticos impressos em 3D",
            "2020-08-13T09:57:55.000Z",
        )],
    );
    assert_eq!(
        external_url(run.reports()[0]),
        Some("https://www.inovacaotecnologica.com.br/noticias/noticia.php?artigo=revolucao-telas-pontos-quanticos-impressos-3d&id=010150200813")
    );
}

#[test]
fn nbcny_nonstandard_pubdate() {
    let run = run("feedrs_nbcny_nonstandard_pubdate.xml");
    assert_reports(
        &run,
        &[(
            "NYC cops search for stabbing suspect after leaving 18-year-old to bleed out on sidewalk",
            "2023-12-16T14:02:33.000Z",
        )],
    );
}

#[test]
fn planet_gnome_xhtml_content() {
    let run = run("feedrs_planet_gnome_xhtml_content.xml");
    assert_reports(
        &run,
        &[(
            "High resolution wheel scrolling in the desktop stack",
            "2020-04-04T04:00:00.000Z",
        )],
    );
    let report = run.reports()[0];
    let text = description(report);
    assert!(text.starts_with("This is a follow up from the kernel support for high-resolution"));
    assert!(text.ends_with(
        "[2] like butter out of a fridge, so still chunky but at least less so than before"
    ));
    assert_eq!(report["labels"], serde_json::json!(["libinput. wayland"]));
    assert!(report.get("external_references").is_none());
}

#[test]
fn reuters_truncated_fails_the_page() {
    let body = fixture("feedrs_reuters_truncated_invalid.xml");
    let settings = RssSettings::default();
    let cursor = RssCursor::default();
    let mut pager = RssPager::new(
        &body[..],
        &cursor,
        &settings,
        &Provenance::default(),
        None,
        now(),
    )
    .expect("the root is rss");
    match pager.next_item() {
        Some(Err(e)) => assert_eq!(
            e.to_string(),
            "document ends before </channel> (truncated?)"
        ),
        other => panic!("expected a truncation error, got {other:?}"),
    }
    assert!(pager.next_item().is_none());
}

#[test]
fn html_page_is_not_a_feed() {
    let body = fixture("html_page_instead_of_feed.html");
    let err = run_with(
        &body,
        &RssCursor::default(),
        &Provenance::default(),
        None,
        now(),
    )
    .err()
    .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("not an RSS or Atom document: the root element is <html>")
    );
}

#[test]
fn scattered_blank_line_and_raw_html() {
    let run = run("feedrs_scattered_leading_blank_line_raw_html.xml");
    assert_reports(
        &run,
        &[(
            "0042: consulting lessons, there are no strings on me, buttondown, focus goof, jsfuck, 1ml",
            "2023-12-01T00:00:00.000Z",
        )],
    );
    assert_eq!(
        description(run.reports()[0]),
        "0042: consulting lessons, there are no strings on me"
    );
}

#[test]
fn xml_base_and_html_title() {
    let run = run("feedrs_xml_base_relative_img.xml");
    assert_reports(&run, &[("my cool entry title", "2022-04-21T00:00:00.000Z")]);
    // The only content is an image, which has no text; and the entry has no link.
    let report = run.reports()[0];
    assert!(report.get("description").is_none());
    assert!(report.get("external_references").is_none());
}

#[test]
fn xml_base_resolves_relative_links() {
    let body = br#"<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://a.example/blog/">
        <title>T</title><entry xml:base="posts/"><title>E</title><id>e1</id>
        <link href="one.html"/><updated>2024-01-01T00:00:00Z</updated></entry></feed>"#;
    let run = run_with(
        body,
        &RssCursor::default(),
        &Provenance::default(),
        None,
        now(),
    )
    .expect("test input");
    assert_eq!(
        external_url(run.reports()[0]),
        Some("https://a.example/blog/posts/one.html")
    );
}

#[test]
fn citrix_broken_declaration_padded_link_and_cve() {
    let run = run("opencti_citrix_broken_xmldecl_padded_link.xml");
    let name = "ShareFile StorageZones Controller Security Update for CVE-2023-24489";
    assert_reports(&run, &[(name, "2023-08-17T20:40:08.000Z")]);
    let ItemOutcome::New(objects) = &run.outcomes[0] else {
        panic!("new item expected")
    };
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0]["type"], "vulnerability");
    assert_eq!(objects[0]["name"], "CVE-2023-24489");
    assert_eq!(
        objects[1]["object_refs"],
        serde_json::json!([objects[0]["id"]])
    );
    assert_eq!(
        external_url(&objects[1]),
        Some("https://support.citrix.com/article/CTX559517/sharefile-storagezones-controller-security-update-for-cve202324489")
    );
    assert_eq!(
        objects[1]["labels"],
        serde_json::json!(["ShareFile", "Citrix Content Collaboration"])
    );
    assert_eq!(
        description(&objects[1]),
        "CTX559517 \u{2003}New\n\nShareFile StorageZones Controller Security Update for \
         CVE-2023-24489\n\nApplicable Products : \u{2003}Citrix Content Collaboration ShareFile"
    );
}

#[test]
fn google_microseconds_and_three_cves() {
    let run = run("opencti_google_cloud_bulletins_cdata_microseconds.xml");
    assert_reports(&run, &[("GCP-2023-026", "2023-09-11T14:59:07.818Z")]);
    let ItemOutcome::New(objects) = &run.outcomes[0] else {
        panic!("new item expected")
    };
    let names: Vec<_> = objects
        .iter()
        .map(|o| o["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "CVE-2023-3676",
            "CVE-2023-3955",
            "CVE-2023-3893",
            "GCP-2023-026"
        ]
    );
    assert_eq!(run.cursor.newest, Some(at("2023-09-11T14:59:07.818162Z")));
    assert_eq!(
        external_url(&objects[3]),
        Some("https://cloud.google.com/support/bulletins/index#gcp-2023-026")
    );
}

#[test]
fn oracle_dateless_item_keeps_its_first_seen_time() {
    let body = fixture("opencti_oracle_item_without_pubdate.xml");
    let first = run_with(
        &body,
        &RssCursor::default(),
        &Provenance::default(),
        None,
        now(),
    )
    .expect("test input");
    let name = "Oracle Critical Patch Update Advisory - July 2023";
    assert_reports(&first, &[(name, "2025-06-01T12:00:00.000Z")]);
    assert_eq!(first.cursor.first_seen.get("CPUJul2023"), Some(&now()));
    assert_eq!(first.cursor.newest, None);

    // A day later the same document: the item is old, its first-seen time unchanged.
    let later = now() + chrono::Duration::days(1);
    let second =
        run_with(&body, &first.cursor, &Provenance::default(), None, later).expect("test input");
    assert_eq!((second.old(), second.reports().len()), (1, 0));
    assert_eq!(second.cursor, first.cursor);

    // The id is stable only through the cursor: without it the item is new again, with a
    // new first-seen time and so a new id.
    let third = run_with(
        &body,
        &RssCursor::default(),
        &Provenance::default(),
        None,
        later,
    )
    .expect("test input");
    assert_ne!(third.reports()[0]["id"], first.reports()[0]["id"]);
}

#[test]
fn wago_empty_item_is_skipped() {
    let run = run("opencti_wago_advisories_empty_item_truncated.xml");
    assert_eq!(run.reports().len(), 23);
    assert_eq!(
        run.skipped(),
        [(
            "c0b757fe1f6fdec4388fe98e02fe1c4f",
            "no title, link or description to name the report after"
        )]
    );
    let names = run.names();
    assert_eq!(
        names[0],
        "WAGO: Controller with CODESYS 2.3 Runtime Denial-of-Service"
    );
    assert_eq!(
        names[6],
        "WAGO Controller 750: Multiple Vulnerabilities in WAGO I/O-Pro / CODESYS 2.3 Runtime"
    );
    assert_eq!(
        names[7],
        "WAGO Controller 750: FTP-Server - Denial of Service"
    );
    assert_eq!(
        names[17],
        "WAGO: Web-Based Management Authentication Vulnerability in WAGO 750-36X and WAGO \
         750-8XX Versions <= FW07"
    );
    assert_eq!(
        names[21],
        "WAGO Managed Switches: Multiple Vulnerabilities in the Web-Based Managemen"
    );
    let published = run.published();
    assert_eq!(published[3], "2023-03-01T12:42:09.000Z");
    assert_eq!(published[22], "2020-12-17T14:24:12.000Z");
    // The Log4Shell item names its CVEs.
    let log4shell = run
        .outcomes
        .iter()
        .find_map(|o| match o {
            ItemOutcome::New(objs)
                if objs.last().is_some_and(|r| {
                    r["name"] == "WAGO: Smart Script affected by Log4Shell Vulnerability"
                }) =>
            {
                Some(objs)
            }
            _ => None,
        })
        .expect("log4shell item");
    assert!(log4shell.iter().any(|o| o["name"] == "CVE-2021-44228"));
    assert_eq!(run.cursor.newest, Some(at("2023-06-29T14:37:40Z")));
    assert_eq!(
        run.cursor.ids_at_newest,
        ["97820771daf76805db895f4d75e19052"]
    );
}

/// Three items, two of them at the same second.
fn same_date_feed(items: &[(&str, &str)]) -> Vec<u8> {
    let mut body = String::from("<rss version=\"2.0\"><channel><title>T</title>");
    for (guid, date) in items {
        body.push_str(&format!(
            "<item><title>{guid}</title><guid>{guid}</guid><pubDate>{date}</pubDate></item>"
        ));
    }
    body.push_str("</channel></rss>");
    body.into_bytes()
}

#[test]
fn items_sharing_the_cursor_date_are_not_lost() {
    let d1 = "Mon, 01 Jan 2024 10:00:00 GMT";
    let d2 = "Mon, 01 Jan 2024 11:00:00 GMT";
    let p = Provenance::default();
    let first = run_with(
        &same_date_feed(&[("a", d2), ("b", d1)]),
        &RssCursor::default(),
        &p,
        None,
        now(),
    )
    .expect("test input");
    assert_eq!(first.names(), ["a", "b"]);
    assert_eq!(first.cursor.ids_at_newest, ["a"]);

    // Item c appears later with the same date as a: it is new; a and b are old.
    let second = run_with(
        &same_date_feed(&[("c", d2), ("a", d2), ("b", d1)]),
        &first.cursor,
        &p,
        None,
        now(),
    )
    .expect("test input");
    assert_eq!(second.names(), ["c"]);
    assert_eq!(second.old(), 2);
    assert_eq!(second.cursor.newest, Some(at("2024-01-01T11:00:00Z")));
    assert_eq!(second.cursor.ids_at_newest, ["a", "c"]);

    // Nothing new: nothing handed on, cursor unchanged.
    let third = run_with(
        &same_date_feed(&[("c", d2), ("a", d2)]),
        &second.cursor,
        &p,
        None,
        now(),
    )
    .expect("test input");
    assert!(third.names().is_empty());
    assert_eq!(third.cursor, second.cursor);

    // A newer item moves the cursor and replaces the key set.
    let fourth = run_with(
        &same_date_feed(&[("d", "Mon, 01 Jan 2024 12:00:00 GMT"), ("c", d2)]),
        &third.cursor,
        &p,
        None,
        now(),
    )
    .expect("test input");
    assert_eq!(fourth.names(), ["d"]);
    assert_eq!(fourth.cursor.ids_at_newest, ["d"]);
}

#[test]
fn import_from_makes_older_items_old() {
    let body = fixture("opencti_wago_advisories_empty_item_truncated.xml");
    let from = at("2023-01-01T00:00:00Z");
    let run = run_with(
        &body,
        &RssCursor::default(),
        &Provenance::default(),
        Some(from),
        now(),
    )
    .expect("test input");
    assert_eq!(run.reports().len(), 5);
    assert_eq!(run.old(), 18);
    assert_eq!(run.skipped().len(), 1);
}

#[test]
fn cursor_keeps_http_validators_and_round_trips() {
    let cursor = RssCursor {
        etag: Some("\"abc\"".into()),
        last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
        ..RssCursor::default()
    };
    let run = run_with(
        &fixture("C01_rss_pubdate_tz_abbreviation_cest.xml"),
        &cursor,
        &Provenance::default(),
        None,
        now(),
    )
    .expect("test input");
    assert_eq!(run.cursor.etag, cursor.etag);
    assert_eq!(run.cursor.last_modified, cursor.last_modified);
    let json = serde_json::to_string(&run.cursor).expect("test input");
    let back: RssCursor = serde_json::from_str(&json).expect("test input");
    assert_eq!(back, run.cursor);
}

#[test]
fn author_is_referenced_when_no_cve_is_named() {
    let p = Provenance {
        author: Some("Example CERT".into()),
        markings: vec![Tlp::Green],
    };
    let run = run_with(
        &fixture("C01_rss_pubdate_tz_abbreviation_cest.xml"),
        &RssCursor::default(),
        &p,
        None,
        now(),
    )
    .expect("test input");
    let ItemOutcome::New(objects) = &run.outcomes[0] else {
        panic!("new item expected")
    };
    assert_eq!(objects.len(), 1);
    let author = p.author_id().unwrap_or_default();
    assert_eq!(objects[0]["object_refs"], serde_json::json!([author]));
    assert_eq!(objects[0]["created_by_ref"], serde_json::json!(author));
    assert_eq!(
        objects[0]["object_marking_refs"],
        serde_json::json!([Tlp::Green.id()])
    );
}

#[test]
fn entity_declarations_are_refused() {
    let body =
        br#"<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;">]>
        <rss><channel><item><title>&b;</title></item></channel></rss>"#;
    let err = run_with(
        body,
        &RssCursor::default(),
        &Provenance::default(),
        None,
        now(),
    )
    .err();
    assert!(
        matches!(err, Some(RssError::EntityDeclaration { .. })),
        "{err:?}"
    );
}

#[test]
fn malformed_xml_reports_the_offset() {
    let body = b"<rss><channel><item><title>x</item></channel></rss>";
    let err = run_with(
        body,
        &RssCursor::default(),
        &Provenance::default(),
        None,
        now(),
    )
    .err();
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with("malformed XML at byte 28:"),
        "{message}"
    );
}

#[test]
fn empty_body_has_no_root() {
    let err = run_with(
        b"  \n",
        &RssCursor::default(),
        &Provenance::default(),
        None,
        now(),
    )
    .err();
    assert!(matches!(err, Some(RssError::NoRoot)), "{err:?}");
}

#[test]
fn oversized_item_is_skipped_and_the_page_goes_on() {
    let big = "x".repeat(MAX_ITEM_TEXT_BYTES + 10);
    let body = format!(
        "<rss><channel><item><guid>big</guid><title>Big</title><description>{big}</description>\
         </item><item><guid>small</guid><title>Small</title></item></channel></rss>"
    );
    let run = run_with(
        body.as_bytes(),
        &RssCursor::default(),
        &Provenance::default(),
        None,
        now(),
    )
    .expect("test input");
    assert_eq!(run.skipped(), [("big", "item text exceeds 8 MiB")]);
    assert_eq!(run.names(), ["Small"]);
}

#[test]
fn atom03_and_rss090() {
    let atom03 = br#"<feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>Old</title>
        <entry><title>Entry</title><id>x</id><issued>2004-01-01T10:00:00Z</issued>
        <content type="text/html" mode="escaped">&lt;b&gt;bold&lt;/b&gt; text</content></entry></feed>"#;
    let run = run_with(
        atom03,
        &RssCursor::default(),
        &Provenance::default(),
        None,
        now(),
    )
    .expect("test input");
    assert_reports(&run, &[("Entry", "2004-01-01T10:00:00.000Z")]);
    assert_eq!(description(run.reports()[0]), "bold text");

    let rss090 = br#"<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
        xmlns="http://my.netscape.com/rdf/simple/0.9/"><channel><title>N</title>
        <link>http://n.example/</link></channel><item><title>Old one</title>
        <link>/a</link></item></rdf:RDF>"#;
    let run = run_with(
        rss090,
        &RssCursor::default(),
        &Provenance::default(),
        None,
        now(),
    )
    .expect("test input");
    assert_eq!(run.names(), ["Old one"]);
    assert_eq!(external_url(run.reports()[0]), Some("http://n.example/a"));
}

/// Runs every fixture and writes one bundle per document to `FEEDSTIX_RSS_BUNDLE_DIR` (or
/// a temporary directory) for the OASIS validator; checks that every reference resolves
/// inside its bundle.
#[test]
fn bundles_for_every_fixture() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rss");
    let out_dir = std::env::var_os("FEEDSTIX_RSS_BUNDLE_DIR").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().expect("temp dir");
    let out_dir = out_dir.unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&out_dir).expect("bundle dir");
    let provenance = Provenance {
        author: None,
        markings: vec![Tlp::Clear],
    };
    let mut written = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let body = std::fs::read(entry.path()).expect("fixture");
        let Ok(run) = run_with(&body, &RssCursor::default(), &provenance, None, now()) else {
            continue;
        };
        let mut objects: Vec<StixObject> = provenance.objects();
        for outcome in run.outcomes {
            if let ItemOutcome::New(objs) = outcome {
                for o in objs {
                    if !objects.iter().any(|x| x["id"] == o["id"]) {
                        objects.push(o);
                    }
                }
            }
        }
        if objects.len() == provenance.objects().len() {
            continue;
        }
        let ids: HashSet<&str> = objects.iter().filter_map(|o| o["id"].as_str()).collect();
        for o in &objects {
            for r in o
                .get("object_refs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                assert!(
                    ids.contains(r.as_str().unwrap_or_default()),
                    "{name}: dangling {r}"
                );
            }
        }
        let bundle = serde_json::json!({
            "type": "bundle",
            "id": format!("bundle--{}", uuid::Uuid::new_v4()),
            "objects": objects,
        });
        let path = out_dir.join(format!("{name}.json"));
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&bundle).unwrap_or_default(),
        )
        .expect("write");
        written += 1;
    }
    assert_eq!(written, 21);
}
