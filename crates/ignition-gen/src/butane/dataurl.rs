//! Data URLs exactly as Butane's `MakeDataURL` (base/util/url.go) builds them.
//!
//! Three encodings are tried and the shortest wins: percent-escaped (RFC 2396 unreserved
//! characters kept, everything else `%XX` with upper-case hex), base64 (only if strictly
//! shorter), and base64 of the gzip-compressed bytes, which must beat the best so far by
//! more than the four bytes `gzip` costs. When the config already names a compression the
//! contents are the user's own compressed bytes and are never compressed again.
//!
//! The gzip bytes come from [`super::goflate`], a port of Go's `compress/flate` at
//! `BestCompression` (as Go 1.7 to 1.26 write it), so the base64 text and the gzip-or-not
//! choice are Butane's own.

use base64::Engine;

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// `dataurl.Escape`.
pub fn escape(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 2);
    escape_into(data, &mut out);
    out
}

fn escape_into(data: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in data {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
}

/// Gzip like Go's `gzip.NewWriterLevel(w, gzip.BestCompression)`: byte for byte what Butane
/// writes (see [`super::goflate`]).
pub fn gzip_best(data: &[u8]) -> Vec<u8> {
    super::goflate::gzip_best(data)
}

/// The result of [`make_data_url`].
pub struct DataUrl {
    /// The `data:` URL.
    pub url: String,
    /// The value to store in `compression`: `Some("")` or `Some("gzip")` when we chose, `None`
    /// when the config named a compression itself (leave it alone).
    pub compression: Option<String>,
}

/// `MakeDataURL(contents, currentCompression, allowCompression, false)`.
///
/// The candidates are compared by length, which is known without writing them out, so only
/// the winner is built (and gzip runs only when it could win).
pub fn make_data_url(
    contents: &[u8],
    current_compression: Option<&str>,
    allow_compression: bool,
) -> DataUrl {
    const BASE64: &str = ";base64,";
    let b64 = &base64::engine::general_purpose::STANDARD;
    let user_compressed = current_compression.is_some_and(|c| !c.is_empty());
    let mut compression = if user_compressed {
        None
    } else {
        Some(String::new())
    };
    let escaped_len = 1 + contents
        .iter()
        .map(|&b| if is_unreserved(b) { 1 } else { 3 })
        .sum::<usize>();
    let base64_len = BASE64.len() + contents.len().div_ceil(3) * 4;
    let mut best_len = escaped_len.min(base64_len);
    let mut gzipped = None;
    // Gzip can only win if its URL (at least ";base64," and the base64 of the smallest
    // gzip) plus "gzip" is shorter, so tiny contents skip compressing.
    let min_gz = BASE64.len() + super::goflate::MIN_GZIP_LEN.div_ceil(3) * 4;
    if !user_compressed && allow_compression && min_gz + "gzip".len() < best_len {
        let gz = gzip_best(contents);
        let gz_len = BASE64.len() + gz.len().div_ceil(3) * 4;
        if gz_len + "gzip".len() < best_len {
            best_len = gz_len;
            gzipped = Some(gz);
            compression = Some("gzip".to_string());
        }
    }
    let mut url = String::with_capacity("data:".len() + best_len);
    url.push_str("data:");
    match gzipped {
        Some(gz) => {
            url.push_str(BASE64);
            b64.encode_string(gz, &mut url);
        }
        // Base64 only when strictly shorter.
        None if base64_len < escaped_len => {
            url.push_str(BASE64);
            b64.encode_string(contents, &mut url);
        }
        None => {
            url.push(',');
            escape_into(contents, &mut url);
        }
    }
    DataUrl { url, compression }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn short_text_is_escaped() {
        let d = make_data_url(b"hello world\n", None, true);
        assert_eq!(d.url, "data:,hello%20world%0A");
        assert_eq!(d.compression.as_deref(), Some(""));
    }

    #[test]
    fn binary_prefers_base64() {
        // Escaped: 1 + 3 * 4 = 13 bytes beats ";base64," + 8 = 16.
        let d = make_data_url(&[0xff, 0xfe, 0x00, 0x01], None, true);
        assert_eq!(d.url, "data:,%FF%FE%00%01");
        // Escaped: 1 + 3 * 8 = 25 bytes loses to ";base64," + 12 = 20.
        let d = make_data_url(&[0xff, 0xfe, 0, 1, 2, 3, 4, 5], None, true);
        assert_eq!(d.url, "data:;base64,//4AAQIDBAU=");
    }

    #[test]
    fn compressible_text_is_gzipped_and_roundtrips() {
        let text = "line of configuration text\n".repeat(40);
        let d = make_data_url(text.as_bytes(), None, true);
        assert_eq!(d.compression.as_deref(), Some("gzip"));
        let b64 = d.url.strip_prefix("data:;base64,").unwrap();
        let gz = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(gz[8], 2, "XFL = best compression");
        assert_eq!(gz[9], 255, "OS = unknown");
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, text);
    }

    #[test]
    fn skipping_gzip_for_tiny_contents_never_changes_the_choice() {
        // Contents around the skip threshold: the shortcut must agree with always trying.
        for n in 0..64 {
            for byte in [b'a', 0xff] {
                let data = vec![byte; n];
                let d = make_data_url(&data, None, true);
                let gz = format!(
                    ";base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(gzip_best(&data))
                );
                let best_plain = make_data_url(&data, None, false).url;
                let want_gzip = gz.len() + 4 < best_plain.len() - "data:".len();
                assert_eq!(
                    d.compression.as_deref() == Some("gzip"),
                    want_gzip,
                    "{n} x {byte}"
                );
            }
        }
    }

    #[test]
    fn user_compression_is_kept() {
        let text = "x".repeat(500);
        let d = make_data_url(text.as_bytes(), Some("gzip"), true);
        assert!(d.compression.is_none());
        assert!(d.url.starts_with("data:,xxx") || d.url.starts_with("data:;base64,"));
        let d = make_data_url(text.as_bytes(), None, false);
        assert_eq!(d.compression.as_deref(), Some(""));
        assert!(d.url.starts_with("data:,xxx"));
    }
}
