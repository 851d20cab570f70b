//! Seeded synthetic sources: RSS 2.0, Atom 1.0, a URLhaus-layout CSV and TAXII objects.
//!
//! The same seed and size always give the same bytes, so two runs of the benchmark (or two
//! machines) measure the same input. The shapes follow the real feeds closely enough to take
//! the same code paths: HTML-escaped descriptions, categories, CVE ids in about a third of
//! the items, quoted CSV cells with a comment banner and a commented header, and a mix of
//! STIX object types with TAXII `date_added` stamps in microseconds. Generators write
//! through a buffer, never holding a whole document.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// A small seeded generator (SplitMix64): enough spread for synthetic text, no dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One element of `items`.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "attackers",
    "exploit",
    "vulnerability",
    "remote",
    "code",
    "execution",
    "privilege",
    "escalation",
    "patch",
    "update",
    "firmware",
    "gateway",
    "appliance",
    "authentication",
    "bypass",
    "malicious",
    "payload",
    "campaign",
    "phishing",
    "loader",
    "botnet",
    "ransomware",
    "credential",
    "exposure",
    "server",
    "client",
    "library",
    "parser",
    "overflow",
    "memory",
    "corruption",
    "denial",
    "service",
    "researchers",
    "observed",
    "active",
    "exploitation",
    "customers",
    "should",
    "apply",
    "mitigations",
    "immediately",
    "affected",
    "versions",
    "include",
    "through",
    "before",
    "advisory",
    "vendor",
    "released",
    "fixes",
    "for",
    "the",
    "a",
    "in",
    "of",
    "and",
    "to",
    "with",
    "an",
    "is",
    "was",
    "by",
    "on",
];

const CATEGORIES: &[&str] = &[
    "advisory",
    "ransomware",
    "phishing",
    "vulnerability",
    "botnet",
    "ics",
    "cloud",
    "supply-chain",
    "apt",
    "malware",
    "patch-tuesday",
    "zero-day",
];

const PRODUCTS: &[&str] = &[
    "Gateway Pro",
    "MailCore",
    "WebPortal",
    "EdgeRouter X",
    "CloudSync",
    "PrintHub",
    "VPN Concentrator",
    "Identity Manager",
    "Backup Suite",
    "Camera NVR",
];

/// Seconds of 2024-09-30T00:00:00Z: the newest date of every generated source.
const NEWEST: i64 = 1_727_654_400;

/// UTC calendar fields of a Unix time: (year, month, day, hour, minute, second, weekday
/// with 0 = Sunday). Days are converted with the usual era arithmetic of the proleptic
/// Gregorian calendar.
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let weekday = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        weekday,
    )
}

fn rfc822(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(secs);
    format!(
        "{}, {d:02} {} {y} {h:02}:{mi:02}:{s:02} +0000",
        DAYS[wd as usize],
        MONTHS[mo as usize - 1]
    )
}

fn rfc3339(secs: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(secs);
    format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn plain_datetime(secs: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(secs);
    format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// One advisory's text, shared by the RSS and Atom generators.
struct Advisory {
    title: String,
    link: String,
    /// The body as HTML, before XML escaping.
    html: String,
    categories: Vec<&'static str>,
    /// Seconds since the epoch.
    published: i64,
}

fn advisory(rng: &mut Rng, i: u64) -> Advisory {
    let product = rng.pick(PRODUCTS);
    let cve = (rng.below(3) == 0).then(|| format!("CVE-20{}-{}", 20 + rng.below(5), 1000 + i));
    let title = match &cve {
        Some(c) => format!(
            "Advisory {i}: {} in {product} ({c})",
            rng.pick(&[
                "Remote code execution",
                "Authentication bypass",
                "Memory corruption"
            ])
        ),
        None => format!(
            "Threat brief {i}: {} activity targeting {product} users",
            rng.pick(&["phishing", "botnet", "ransomware", "loader"])
        ),
    };
    let mut html = String::from("<p>");
    let words = 40 + rng.below(40);
    for w in 0..words {
        if w > 0 {
            html.push(' ');
        }
        html.push_str(rng.pick(WORDS));
        if w == words / 2 {
            html.push_str(" <b>");
            html.push_str(product);
            html.push_str("</b>&nbsp;");
        }
    }
    if let Some(c) = &cve {
        html.push_str(". Tracked as ");
        html.push_str(c);
    }
    html.push_str(".</p><p>See <a href=\"https://vendor.example.test/kb/");
    html.push_str(&i.to_string());
    html.push_str("\">the vendor note</a> &amp; apply fixes.</p>");
    let categories = (0..1 + rng.below(3))
        .map(|_| CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize])
        .collect();
    Advisory {
        title,
        link: format!(
            "https://advisories.example.test/{}/{i}",
            2024 - (i % 3) as i64
        ),
        html,
        categories,
        published: NEWEST - (i as i64) * 37,
    }
}

/// Escapes text for an XML element or attribute.
fn xml_escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

fn create(path: &Path) -> io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(256 * 1024, File::create(path)?))
}

/// Writes an RSS 2.0 document of `items` items, newest first.
pub fn rss(path: &Path, items: u64, seed: u64) -> io::Result<()> {
    let mut rng = Rng::new(seed);
    let mut w = create(path)?;
    w.write_all(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\" \
          xmlns:dc=\"http://purl.org/dc/elements/1.1/\">\n<channel>\n\
          <title>Benchmark Advisories</title>\n<link>https://advisories.example.test/</link>\n\
          <description>Synthetic advisories for the feedstix benchmark</description>\n",
    )?;
    let mut s = String::with_capacity(4096);
    for i in 0..items {
        let a = advisory(&mut rng, i);
        s.clear();
        s.push_str("<item>\n<title>");
        xml_escape(&a.title, &mut s);
        s.push_str("</title>\n<link>");
        s.push_str(&a.link);
        s.push_str("</link>\n<guid isPermaLink=\"false\">bench-");
        s.push_str(&i.to_string());
        s.push_str("</guid>\n<pubDate>");
        s.push_str(&rfc822(a.published));
        s.push_str("</pubDate>\n");
        for c in &a.categories {
            s.push_str("<category>");
            s.push_str(c);
            s.push_str("</category>\n");
        }
        s.push_str("<description>");
        xml_escape(&a.html, &mut s);
        s.push_str("</description>\n</item>\n");
        w.write_all(s.as_bytes())?;
    }
    w.write_all(b"</channel>\n</rss>\n")?;
    w.flush()
}

/// Writes an Atom 1.0 document of `entries` entries, newest first.
pub fn atom(path: &Path, entries: u64, seed: u64) -> io::Result<()> {
    let mut rng = Rng::new(seed);
    let mut w = create(path)?;
    write!(
        w,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
         <title>Benchmark Research</title>\n<id>urn:feedstix-bench:atom</id>\n\
         <link rel=\"alternate\" href=\"https://research.example.test/\"/>\n\
         <updated>{}</updated>\n",
        rfc3339(NEWEST)
    )?;
    let mut s = String::with_capacity(4096);
    for i in 0..entries {
        let a = advisory(&mut rng, i);
        s.clear();
        s.push_str("<entry>\n<title type=\"text\">");
        xml_escape(&a.title, &mut s);
        s.push_str("</title>\n<link rel=\"alternate\" href=\"");
        s.push_str(&a.link);
        s.push_str("\"/>\n<id>urn:feedstix-bench:entry:");
        s.push_str(&i.to_string());
        s.push_str("</id>\n<published>");
        s.push_str(&rfc3339(a.published));
        s.push_str("</published>\n<updated>");
        s.push_str(&rfc3339(a.published + 600));
        s.push_str("</updated>\n<author><name>Research Team</name></author>\n");
        for c in &a.categories {
            s.push_str("<category term=\"");
            s.push_str(c);
            s.push_str("\"/>\n");
        }
        s.push_str("<content type=\"html\">");
        xml_escape(&a.html, &mut s);
        s.push_str("</content>\n</entry>\n");
        w.write_all(s.as_bytes())?;
    }
    w.write_all(b"</feed>\n")?;
    w.flush()
}

const TAGS: &[&str] = &[
    "elf",
    "mips",
    "32-bit",
    "arm",
    "mirai",
    "Mozi",
    "exe",
    "zip",
    "AsyncRAT",
    "RemcosRAT",
    "SmokeLoader",
    "doc",
    "ps1",
    "sh",
    "x86",
    "geofenced",
    "Gafgyt",
];

const TLDS: &[&str] = &["test", "example", "invalid"];

/// Writes a CSV in the layout of a URLhaus "recent URLs" export: a comment banner, the
/// header as the last comment line, then `rows` fully quoted rows, newest first.
pub fn urlhaus_csv(path: &Path, rows: u64, seed: u64) -> io::Result<()> {
    let mut rng = Rng::new(seed);
    let mut w = create(path)?;
    w.write_all(
        b"################################################################\r\n\
          # Synthetic export in the URLhaus CSV layout (feedstix bench)  #\r\n\
          # Addresses are documentation ranges, hosts are .test names    #\r\n\
          #                                                              #\r\n\
          # Terms Of Use: none, generated data                           #\r\n\
          ################################################################\r\n\
          #\r\n\
          # id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\r\n",
    )?;
    let mut s = String::with_capacity(512);
    for r in 0..rows {
        let id = 3_000_000 + rows - r;
        let added = NEWEST - (r as i64) * 3;
        // The two URL shapes URLhaus lists most: a host name with a download path, and a
        // bare address with a port and a path of bot binaries.
        let url = if rng.below(2) == 0 {
            format!(
                "https://{}-{}.{}/{}/{}.{}",
                rng.pick(WORDS),
                rng.below(10_000),
                rng.pick(TLDS),
                rng.pick(&["download", "files", "wp-content/uploads", "update"]),
                id,
                rng.pick(&["exe", "zip", "apk", "ps1"])
            )
        } else {
            format!(
                "http://{}.{}:{}/{}/{id}.{}",
                rng.pick(&["192.0.2", "198.51.100", "203.0.113"]),
                rng.below(255),
                1024 + rng.below(60_000),
                rng.pick(&["bins", "i", "x", "mips"]),
                rng.pick(&["sh", "arm7", "mips", "x86"])
            )
        };
        let online = rng.below(3) != 0;
        let tags: Vec<&str> = (0..1 + rng.below(3)).map(|_| rng.pick(TAGS)).collect();
        s.clear();
        s.push('"');
        s.push_str(&id.to_string());
        s.push_str("\",\"");
        s.push_str(&plain_datetime(added));
        s.push_str("\",\"");
        s.push_str(&url);
        s.push_str("\",\"");
        s.push_str(if online { "online" } else { "offline" });
        s.push_str("\",\"");
        if online {
            s.push_str(&plain_datetime(added + 60));
        }
        s.push_str("\",\"malware_download\",\"");
        s.push_str(&tags.join(","));
        s.push_str("\",\"https://urlhaus.abuse.ch/url/");
        s.push_str(&id.to_string());
        s.push_str("/\",\"");
        s.push_str(rng.pick(&["geenensp", "abuse_ch", "lrz_urlhaus", "Cryptolaemus1"]));
        s.push_str("\"\r\n");
        w.write_all(s.as_bytes())?;
    }
    w.flush()
}

/// One TAXII object as the server stores it: its `date_added` and its JSON.
pub struct TaxiiObject {
    /// When the server added it, RFC 3339 with microseconds; increasing.
    pub date_added: String,
    /// The object, serialized.
    pub json: String,
}

/// `count` STIX objects of mixed types, in the order the server added them.
pub fn taxii_objects(count: u64, seed: u64) -> Vec<TaxiiObject> {
    let mut rng = Rng::new(seed);
    let start = NEWEST - 30 * 86_400;
    (0..count)
        .map(|i| {
            let secs = start + (i / 1000) as i64;
            let micros = (i % 1000) * 1000 + rng.below(1000);
            let (y, mo, d, h, mi, s, _) = civil(secs);
            let stamp = format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
            let created = format!("{stamp}.{:03}Z", micros / 1000);
            let date_added = format!("{stamp}.{micros:06}Z");
            let uuid = format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                rng.next_u64() as u32,
                rng.below(1 << 16),
                rng.below(1 << 12),
                rng.below(1 << 12),
                rng.next_u64() & 0xffff_ffff_ffff
            );
            let object = match i % 4 {
                0 | 1 => serde_json::json!({
                    "type": "indicator",
                    "spec_version": "2.1",
                    "id": format!("indicator--{uuid}"),
                    "created": created,
                    "modified": created,
                    "name": format!("Malicious host {i}"),
                    "description": "Seen serving a loader in a benchmark campaign.",
                    "pattern": format!("[ipv4-addr:value = '198.51.100.{}']", i % 250),
                    "pattern_type": "stix",
                    "valid_from": created,
                    "indicator_types": ["malicious-activity"],
                    "labels": [rng.pick(CATEGORIES)],
                    "confidence": rng.below(100),
                    "created_by_ref": "identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01",
                    "object_marking_refs": ["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"],
                }),
                2 => serde_json::json!({
                    "type": "malware",
                    "spec_version": "2.1",
                    "id": format!("malware--{uuid}"),
                    "created": created,
                    "modified": created,
                    "name": format!("{} variant {i}", rng.pick(TAGS)),
                    "is_family": false,
                    "malware_types": ["bot"],
                    "created_by_ref": "identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01",
                }),
                _ => serde_json::json!({
                    "type": "relationship",
                    "spec_version": "2.1",
                    "id": format!("relationship--{uuid}"),
                    "created": created,
                    "modified": created,
                    "relationship_type": "indicates",
                    "source_ref": "indicator--0f3c1d9e-3b2a-4c5d-8e7f-0123456789ab",
                    "target_ref": "malware--1a2b3c4d-5e6f-4a0b-9c8d-abcdefabcdef",
                }),
            };
            TaxiiObject {
                date_added,
                json: object.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_fields() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0, 4));
        assert_eq!(rfc822(NEWEST), "Mon, 30 Sep 2024 00:00:00 +0000");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn same_seed_same_bytes() {
        let dir = std::env::temp_dir().join(format!("feedstix-bench-gen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (a, b) = (dir.join("a.csv"), dir.join("b.csv"));
        urlhaus_csv(&a, 50, 7).expect("write a");
        urlhaus_csv(&b, 50, 7).expect("write b");
        let (a, b) = (std::fs::read(a).expect("a"), std::fs::read(b).expect("b"));
        assert_eq!(a, b);
        assert_eq!(
            a.split(|c| *c == b'\n')
                .filter(|l| l.starts_with(b"\""))
                .count(),
            50
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
