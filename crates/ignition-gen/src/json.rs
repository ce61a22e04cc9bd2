//! JSON output byte-compatible with Go's `encoding/json` as Butane uses it.
//!
//! Go escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings (HTML-safe output) and writes
//! control characters other than `\n`, `\r`, `\t` as `\u00XX`; `serde_json` does neither,
//! so strings go through [`GoFormatter`].

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter, PrettyFormatter};

/// Whether Go escapes this byte, or it starts U+2028/U+2029 (`E2 80 A8`/`E2 80 A9`).
fn may_escape(b: u8) -> bool {
    matches!(b, b'<' | b'>' | b'&' | 0xE2)
}

/// Wraps a `serde_json` formatter and applies Go's string escaping.
struct GoFormatter<F> {
    inner: F,
}

impl<F: Formatter> Formatter for GoFormatter<F> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Scan bytes: the characters to escape are ASCII, or U+2028/U+2029 (E2 80 A8/A9).
        let bytes = fragment.as_bytes();
        let (mut start, mut i) = (0, 0);
        while i < bytes.len() {
            // Skip 16 bytes at a time while none needs a look (data URLs are long and clean).
            while let Some(chunk) = bytes.get(i..i + 16) {
                if chunk.iter().fold(false, |any, &b| any | may_escape(b)) {
                    break;
                }
                i += 16;
            }
            let Some(&b) = bytes.get(i) else { break };
            let (esc, len): (&[u8], usize) = match b {
                b'<' => (b"\\u003c", 1),
                b'>' => (b"\\u003e", 1),
                b'&' => (b"\\u0026", 1),
                0xE2 if bytes.get(i + 1) == Some(&0x80) => match bytes.get(i + 2) {
                    Some(0xA8) => (b"\\u2028", 3),
                    Some(0xA9) => (b"\\u2029", 3),
                    _ => {
                        i += 1;
                        continue;
                    }
                },
                _ => {
                    i += 1;
                    continue;
                }
            };
            w.write_all(&bytes[start..i])?;
            w.write_all(esc)?;
            i += len;
            start = i;
        }
        w.write_all(&bytes[start..])
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::Backspace => b"\\u0008",
            CharEscape::FormFeed => b"\\u000c",
            CharEscape::Solidus => b"/",
            CharEscape::AsciiControl(byte) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let buf = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(byte >> 4) as usize],
                    HEX[(byte & 0xf) as usize],
                ];
                return w.write_all(&buf);
            }
        };
        w.write_all(s)
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.inner.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.inner.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.end_object_value(w)
    }
}

/// Serialize `value` as Go's `json.Marshal` (compact) or `json.MarshalIndent(v, "", "  ")`.
pub(crate) fn to_go_json<T: Serialize>(value: &T, pretty: bool) -> String {
    let mut out = Vec::with_capacity(1024);
    let res = if pretty {
        let mut ser = serde_json::Serializer::with_formatter(
            &mut out,
            GoFormatter {
                inner: PrettyFormatter::with_indent(b"  "),
            },
        );
        value.serialize(&mut ser)
    } else {
        let mut ser = serde_json::Serializer::with_formatter(
            &mut out,
            GoFormatter {
                inner: CompactFormatter,
            },
        );
        value.serialize(&mut ser)
    };
    if res.is_err() {
        return String::new();
    }
    // Only UTF-8 is ever written: strings are `str`, escapes are ASCII.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let v = serde_json::json!({"a": "x<y>&z\u{8}\u{c}\u{1}\n\"\\/", "b": [1, {}]});
        assert_eq!(
            to_go_json(&v, false),
            r#"{"a":"x\u003cy\u003e\u0026z\u0008\u000c\u0001\n\"\\/","b":[1,{}]}"#
        );
        assert_eq!(
            to_go_json(&v, true).lines().nth(1),
            Some(r#"  "a": "x\u003cy\u003e\u0026z\u0008\u000c\u0001\n\"\\/","#)
        );
    }

    #[test]
    fn escapes_are_found_at_every_offset_of_long_strings() {
        for special in ["<", ">", "&", "\u{2028}", "\u{2029}", "\u{20ac}"] {
            for at in 0..40 {
                let text = format!("{}{special}{}", "a".repeat(at), "b".repeat(40 - at));
                let want: String = text
                    .chars()
                    .map(|c| match c {
                        '<' => "\\u003c".to_string(),
                        '>' => "\\u003e".to_string(),
                        '&' => "\\u0026".to_string(),
                        '\u{2028}' => "\\u2028".to_string(),
                        '\u{2029}' => "\\u2029".to_string(),
                        c => c.to_string(),
                    })
                    .collect();
                assert_eq!(
                    to_go_json(&text, false),
                    format!("\"{want}\""),
                    "{special} at {at}"
                );
            }
        }
    }

    #[test]
    fn only_line_and_paragraph_separators_are_escaped_beyond_ascii() {
        let v = serde_json::json!("\u{2028}a\u{2029}€\u{2027}\u{20ac}<é\u{2028}");
        assert_eq!(
            to_go_json(&v, false),
            "\"\\u2028a\\u2029€\u{2027}€\\u003cé\\u2028\""
        );
    }
}
