//! Character references: the five XML entities, numeric references, and a table of HTML
//! named entities.
//!
//! Feeds routinely use HTML-only names such as `&nbsp;` or `&raquo;` without declaring
//! them, which makes the document not well-formed. Refusing such a feed would lose every
//! item for one cosmetic character, so every reference is resolved here, after the pull
//! parser has split the document, and a name nobody knows is kept as literal text.

use std::collections::HashMap;
use std::sync::OnceLock;

/// Longest name looked up; anything longer after `&` is not a reference.
const MAX_NAME_LEN: usize = 32;

/// Names for U+00A0..=U+00FF, in code point order (HTML 4's Latin-1 set).
const LATIN1: [&str; 96] = [
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
    "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
    "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
    "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave", "Eacute",
    "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve", "Oacute",
    "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute",
    "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring", "aelig", "ccedil",
    "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc", "iuml", "eth", "ntilde",
    "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash", "ugrave", "uacute", "ucirc",
    "uuml", "yacute", "thorn", "yuml",
];

/// Greek letters: upper case from U+0391, lower case from U+03B1 (U+03A2 is unassigned,
/// hence the empty slot; final sigma sits at U+03C2).
const GREEK_UPPER: [&str; 25] = [
    "Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta", "Iota", "Kappa",
    "Lambda", "Mu", "Nu", "Xi", "Omicron", "Pi", "Rho", "", "Sigma", "Tau", "Upsilon", "Phi",
    "Chi", "Psi", "Omega",
];
const GREEK_LOWER: [&str; 25] = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigmaf", "sigma", "tau", "upsilon", "phi",
    "chi", "psi", "omega",
];

/// The rest of HTML 4's entities plus the HTML5 names that turn up in feeds.
const OTHERS: &[(&str, u32)] = &[
    ("quot", 34),
    ("amp", 38),
    ("apos", 39),
    ("lt", 60),
    ("gt", 62),
    ("Tab", 9),
    ("NewLine", 10),
    ("excl", 33),
    ("num", 35),
    ("dollar", 36),
    ("percnt", 37),
    ("lpar", 40),
    ("rpar", 41),
    ("ast", 42),
    ("plus", 43),
    ("comma", 44),
    ("period", 46),
    ("sol", 47),
    ("colon", 58),
    ("semi", 59),
    ("equals", 61),
    ("quest", 63),
    ("commat", 64),
    ("lsqb", 91),
    ("bsol", 92),
    ("rsqb", 93),
    ("Hat", 94),
    ("lowbar", 95),
    ("grave", 96),
    ("lcub", 123),
    ("verbar", 124),
    ("rcub", 125),
    ("half", 189),
    ("OElig", 338),
    ("oelig", 339),
    ("Scaron", 352),
    ("scaron", 353),
    ("Yuml", 376),
    ("fnof", 402),
    ("circ", 710),
    ("tilde", 732),
    ("thetasym", 977),
    ("upsih", 978),
    ("piv", 982),
    ("ensp", 8194),
    ("emsp", 8195),
    ("numsp", 8199),
    ("puncsp", 8200),
    ("thinsp", 8201),
    ("hairsp", 8202),
    ("ZeroWidthSpace", 8203),
    ("zwnj", 8204),
    ("zwj", 8205),
    ("lrm", 8206),
    ("rlm", 8207),
    ("hyphen", 8208),
    ("dash", 8208),
    ("ndash", 8211),
    ("mdash", 8212),
    ("horbar", 8213),
    ("lsquo", 8216),
    ("rsquo", 8217),
    ("rsquor", 8217),
    ("sbquo", 8218),
    ("lsquor", 8218),
    ("ldquo", 8220),
    ("rdquo", 8221),
    ("rdquor", 8221),
    ("bdquo", 8222),
    ("ldquor", 8222),
    ("dagger", 8224),
    ("Dagger", 8225),
    ("bull", 8226),
    ("bullet", 8226),
    ("nldr", 8229),
    ("hellip", 8230),
    ("mldr", 8230),
    ("permil", 8240),
    ("prime", 8242),
    ("Prime", 8243),
    ("lsaquo", 8249),
    ("rsaquo", 8250),
    ("oline", 8254),
    ("caret", 8257),
    ("frasl", 8260),
    ("MediumSpace", 8287),
    ("NoBreak", 8288),
    ("euro", 8364),
    ("incare", 8453),
    ("image", 8465),
    ("copysr", 8471),
    ("weierp", 8472),
    ("real", 8476),
    ("trade", 8482),
    ("alefsym", 8501),
    ("frac13", 8531),
    ("frac23", 8532),
    ("larr", 8592),
    ("uarr", 8593),
    ("rarr", 8594),
    ("darr", 8595),
    ("harr", 8596),
    ("crarr", 8629),
    ("lArr", 8656),
    ("uArr", 8657),
    ("rArr", 8658),
    ("dArr", 8659),
    ("hArr", 8660),
    ("forall", 8704),
    ("part", 8706),
    ("exist", 8707),
    ("empty", 8709),
    ("nabla", 8711),
    ("isin", 8712),
    ("notin", 8713),
    ("ni", 8715),
    ("prod", 8719),
    ("sum", 8721),
    ("minus", 8722),
    ("lowast", 8727),
    ("radic", 8730),
    ("prop", 8733),
    ("infin", 8734),
    ("ang", 8736),
    ("and", 8743),
    ("or", 8744),
    ("cap", 8745),
    ("cup", 8746),
    ("int", 8747),
    ("there4", 8756),
    ("sim", 8764),
    ("cong", 8773),
    ("asymp", 8776),
    ("ne", 8800),
    ("equiv", 8801),
    ("le", 8804),
    ("ge", 8805),
    ("sub", 8834),
    ("sup", 8835),
    ("nsub", 8836),
    ("sube", 8838),
    ("supe", 8839),
    ("oplus", 8853),
    ("otimes", 8855),
    ("perp", 8869),
    ("sdot", 8901),
    ("lceil", 8968),
    ("rceil", 8969),
    ("lfloor", 8970),
    ("rfloor", 8971),
    ("lang", 9001),
    ("rang", 9002),
    ("loz", 9674),
    ("starf", 9733),
    ("star", 9734),
    ("spades", 9824),
    ("clubs", 9827),
    ("hearts", 9829),
    ("diams", 9830),
    ("check", 10003),
    ("cross", 10007),
];

/// The table, built once on first use.
fn table() -> &'static HashMap<&'static str, char> {
    static TABLE: OnceLock<HashMap<&'static str, char>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map = HashMap::with_capacity(LATIN1.len() + 50 + OTHERS.len());
        let ranges: [(&[&'static str], u32); 3] = [
            (&LATIN1, 0xA0),
            (&GREEK_UPPER, 0x391),
            (&GREEK_LOWER, 0x3B1),
        ];
        for (names, first) in ranges {
            for (i, name) in names.iter().enumerate() {
                if let Some(c) = char::from_u32(first + i as u32).filter(|_| !name.is_empty()) {
                    map.insert(*name, c);
                }
            }
        }
        for (name, code) in OTHERS {
            if let Some(c) = char::from_u32(*code) {
                map.insert(*name, c);
            }
        }
        map
    })
}

/// The character an entity name stands for (XML's five, HTML 4 and common HTML5 names).
pub(crate) fn lookup(name: &str) -> Option<char> {
    table().get(name).copied()
}

/// Resolves a numeric reference's code point. C1 controls are read as windows-1252, the
/// way browsers do, because that is what authors who write `&#150;` mean.
fn numeric(code: u32) -> char {
    if (0x80..=0x9F).contains(&code) {
        let byte = [code as u8];
        let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&byte);
        return text.chars().next().unwrap_or('\u{FFFD}');
    }
    match char::from_u32(code) {
        Some('\0') | None => '\u{FFFD}',
        Some(c) => c,
    }
}

/// Appends `text` to `out` with every character reference resolved.
///
/// Returns how many references were unknown; those stay in the text as written, so the
/// caller can warn once without losing anything.
pub(crate) fn decode_into(text: &str, out: &mut String) -> usize {
    let mut unknown = 0;
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match resolve(after) {
            Some((c, used)) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                if looks_like_named_reference(after) {
                    unknown += 1;
                }
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    unknown
}

/// `text` with every character reference resolved (see [`decode_into`]).
pub(crate) fn decode(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let unknown = decode_into(text, &mut out);
    if unknown > 0 {
        tracing::warn!(unknown, "unknown entity references kept as text");
    }
    out
}

/// Reads one reference from the text after `&`: the character and the bytes used,
/// including the `;`.
fn resolve(after: &str) -> Option<(char, usize)> {
    let semi = after
        .bytes()
        .take(MAX_NAME_LEN + 2)
        .position(|b| b == b';')?;
    let body = &after[..semi];
    let c = if let Some(num) = body.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        numeric(code)
    } else {
        lookup(body)?
    };
    Some((c, semi + 1))
}

fn looks_like_named_reference(after: &str) -> bool {
    let name_len = after
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    name_len > 0 && after.as_bytes().get(name_len) == Some(&b';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_and_numeric_references() {
        assert_eq!(
            decode("a &lt;b&gt; &amp; &quot;c&quot; &apos;"),
            "a <b> & \"c\" '"
        );
        assert_eq!(decode("&#39;&#x41;&#X42;"), "'AB");
        assert_eq!(decode("a&#150;b &#038;"), "a\u{2013}b &");
        assert_eq!(
            decode("&#0;&#xD800;&#99999999;"),
            "\u{FFFD}\u{FFFD}\u{FFFD}"
        );
    }

    #[test]
    fn html_named_references() {
        assert_eq!(decode("Weekly&nbsp;threat"), "Weekly\u{A0}threat");
        assert_eq!(decode("notes &raquo; part 2"), "notes \u{BB} part 2");
        assert_eq!(
            decode("&emsp;&hellip;&eacute;&Omega;&sigmaf;&euro;&trade;"),
            "\u{2003}\u{2026}\u{E9}\u{3A9}\u{3C2}\u{20AC}\u{2122}"
        );
        assert_eq!(decode("&yuml;&THORN;&iexcl;"), "\u{FF}\u{DE}\u{A1}");
    }

    #[test]
    fn unknown_and_stray_ampersands_stay() {
        let mut out = String::new();
        assert_eq!(decode_into("&bogus; & AT&T &amp", &mut out), 1);
        assert_eq!(out, "&bogus; & AT&T &amp");
        assert_eq!(decode("no references"), "no references");
    }
}
