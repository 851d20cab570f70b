//! HTML to plain text for report names and descriptions.
//!
//! Item descriptions are HTML fragments of every quality (unclosed tags, stray `<`,
//! escaped twice). This is not an HTML parser: it drops tags, skips `script`/`style`
//! bodies and comments, resolves character references, collapses runs of white space, and
//! turns block elements into line breaks so paragraphs and list items stay apart. Only
//! ASCII white space is collapsed, so a no-break space the author wrote survives.

use super::entities;

/// What a tag does to the text around it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Break {
    None,
    Space,
    Line,
    Paragraph,
}

fn break_for(tag: &str) -> Break {
    match tag {
        "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "blockquote" | "pre" | "table" | "ul"
        | "ol" | "dl" | "hr" | "figure" => Break::Paragraph,
        "br" | "div" | "li" | "tr" | "dt" | "dd" | "section" | "article" | "header" | "footer"
        | "figcaption" | "thead" | "tbody" | "tfoot" | "caption" | "address" | "main" | "nav"
        | "aside" => Break::Line,
        "td" | "th" | "img" => Break::Space,
        _ => Break::None,
    }
}

/// Accumulates text with collapsed white space and pending breaks.
struct TextBuilder {
    out: String,
    pending: Break,
}

impl TextBuilder {
    fn new(capacity: usize) -> Self {
        TextBuilder {
            out: String::with_capacity(capacity),
            pending: Break::None,
        }
    }

    fn request(&mut self, b: Break) {
        self.pending = self.pending.max(b);
    }

    /// Appends already-decoded text, collapsing ASCII white space.
    ///
    /// Prose is words separated by single spaces, which collapsing leaves as they are: such
    /// a run is found with one pass over its bytes and copied whole. Descriptions are most
    /// of a feed's bytes, and pushing them a character at a time showed in profiles.
    fn push_text(&mut self, text: &str) {
        let mut rest = text;
        while !rest.is_empty() {
            let spaces = rest.bytes().take_while(u8::is_ascii_whitespace).count();
            if spaces > 0 {
                self.request(Break::Space);
                rest = &rest[spaces..];
                continue;
            }
            let bytes = rest.as_bytes();
            let mut end = 0;
            loop {
                while end < bytes.len() && !bytes[end].is_ascii_whitespace() {
                    end += 1;
                }
                // One plain space before another word keeps the run going.
                if end + 1 < bytes.len()
                    && bytes[end] == b' '
                    && !bytes[end + 1].is_ascii_whitespace()
                {
                    end += 1;
                    continue;
                }
                break;
            }
            if !self.out.is_empty() {
                match self.pending {
                    Break::None => {}
                    Break::Space => self.out.push(' '),
                    Break::Line => self.out.push('\n'),
                    Break::Paragraph => self.out.push_str("\n\n"),
                }
            }
            self.pending = Break::None;
            // White space is ASCII, so `end` is a character boundary.
            self.out.push_str(&rest[..end]);
            rest = &rest[end..];
        }
    }

    fn finish(self) -> String {
        self.out
    }
}

/// The plain text of an HTML fragment.
pub(crate) fn to_text(html: &str) -> String {
    let mut text = TextBuilder::new(html.len() / 2);
    let mut run = String::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        run.push_str(&rest[..lt]);
        let tail = &rest[lt..];
        match markup_len(tail) {
            Some((len, tag, closing)) => {
                flush(&mut run, &mut text);
                if !closing && (tag == "script" || tag == "style") {
                    rest = skip_raw_text(&tail[len..], &tag);
                    continue;
                }
                text.request(break_for(&tag));
                rest = &tail[len..];
            }
            None => {
                // A `<` that opens no tag ("a < b", "<= FW07") is text.
                run.push('<');
                rest = &tail[1..];
            }
        }
    }
    run.push_str(rest);
    flush(&mut run, &mut text);
    text.finish()
}

/// Plain text (a title, a category): references resolved, white space collapsed.
pub(crate) fn collapse(text: &str) -> String {
    let mut builder = TextBuilder::new(text.len());
    builder.push_text(&entities::decode(text));
    builder.finish()
}

fn flush(run: &mut String, text: &mut TextBuilder) {
    if !run.is_empty() {
        text.push_text(&entities::decode(run));
        run.clear();
    }
}

/// For text starting with `<`: the length of the markup (tag, comment, declaration), the
/// lower-cased tag name (empty for comments) and whether it is a closing tag; `None` when
/// the `<` starts no markup.
fn markup_len(tail: &str) -> Option<(usize, String, bool)> {
    let bytes = tail.as_bytes();
    if let Some(comment) = tail.strip_prefix("<!--") {
        let end = comment.find("-->").map_or(tail.len(), |i| i + 7);
        return Some((end, String::new(), false));
    }
    if tail.starts_with("<![CDATA[") {
        // Treated as markup to drop; its text is rare in feed HTML and often a script.
        let end = tail.find("]]>").map_or(tail.len(), |i| i + 3);
        return Some((end, String::new(), false));
    }
    let (closing, name_at) = match bytes.get(1) {
        Some(b'/') => (true, 2),
        Some(b'!' | b'?') => {
            let end = tail.find('>').map_or(tail.len(), |i| i + 1);
            return Some((end, String::new(), false));
        }
        _ => (false, 1),
    };
    if !bytes.get(name_at)?.is_ascii_alphabetic() {
        return None;
    }
    let name_len = bytes[name_at..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b':')
        .count();
    let name = tail[name_at..name_at + name_len].to_ascii_lowercase();
    Some((tag_end(tail, name_at + name_len), name, closing))
}

/// Where a tag ends: after the first `>` outside quoted attribute values. A quote that is
/// never closed is ignored, so one stray apostrophe cannot swallow the rest of the text.
fn tag_end(tail: &str, from: usize) -> usize {
    let bytes = tail.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'>' => return i + 1,
            q @ (b'"' | b'\'') => match tail[i + 1..].find(q as char) {
                Some(close) => i += close + 2,
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    tail.len()
}

/// Skips the body of a `script` or `style` element up to and including its end tag.
fn skip_raw_text<'a>(body: &'a str, tag: &str) -> &'a str {
    let mut search = body;
    while let Some(at) = search.find("</") {
        let after = &search[at + 2..];
        if after.len() >= tag.len() && after[..tag.len()].eq_ignore_ascii_case(tag) {
            let end = after.find('>').map_or(after.len(), |i| i + 1);
            return &after[end..];
        }
        search = after;
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_tags_and_keeps_blocks_apart() {
        assert_eq!(
            to_text("<p>One <b>bold</b> line.</p><p>Two</p><ul><li>a</li><li>b</li></ul>"),
            "One bold line.\n\nTwo\n\na\nb"
        );
        assert_eq!(to_text("first<br/>second<br>third"), "first\nsecond\nthird");
        assert_eq!(
            to_text("<table><tr><td>CVE</td><td>High</td></tr></table>"),
            "CVE High"
        );
    }

    #[test]
    fn decodes_references_and_collapses_space() {
        assert_eq!(
            to_text("  a &amp;\n\n  b&nbsp;c &#39;d&#39; "),
            "a & b\u{A0}c 'd'"
        );
        assert_eq!(to_text("&lt;p&gt; stays text"), "<p> stays text");
    }

    #[test]
    fn drops_scripts_styles_and_comments() {
        assert_eq!(
            to_text("a<script>if (x < 1) {}</script>b<style>p{}</STYLE>c<!-- <p>x</p> -->d"),
            "abcd"
        );
    }

    #[test]
    fn tolerates_broken_markup() {
        assert_eq!(to_text("x <= 5 and 1<2"), "x <= 5 and 1<2");
        assert_eq!(to_text("<span style=\\'a:b;\\'>New </span>"), "New");
        assert_eq!(
            to_text("<p >a</p ><img src='x.png' alt=\"it's\">b"),
            "a\n\nb"
        );
        assert_eq!(to_text("unclosed <a href=\"x"), "unclosed");
    }

    #[test]
    fn collapse_plain_text() {
        assert_eq!(
            collapse("  Multiple  in\n WAGO &lt;= FW07 "),
            "Multiple in WAGO <= FW07"
        );
        assert_eq!(collapse("Weekly&nbsp;threat"), "Weekly\u{A0}threat");
    }
}
