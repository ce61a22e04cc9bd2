//! Scalars read the way Butane's YAML library (go-yaml v3) reads them into Go types.
//!
//! marked-yaml keeps every scalar as text; these wrappers convert that text like go-yaml v3
//! converts a plain scalar into a Go `int` or `bool` field:
//! - integers go through Go's `strconv.ParseInt(s, 0, 64)` after removing `_`: a leading
//!   `0` means octal (`mode: 0644` is 420, as every Butane example expects), `0o`, `0x`
//!   and `0b` prefixes work, and `+`/`-` signs are accepted. A float that is a whole number
//!   (`1e3`) is accepted too; go-yaml truncates other floats, we reject them.
//! - booleans accept YAML 1.2's `true`/`True`/`TRUE`/`false`/`False`/`FALSE` and, because
//!   go-yaml offers it when the target is a typed `bool`, YAML 1.1's `y`/`yes`/`on`/`n`/`no`/`off`
//!   in their three capitalizations.
//!
//! go-yaml refuses a quoted `"0644"` or `"true"` for these fields; the translator does too,
//! asking [`slipway_model::yaml::Marks`] where the quoted scalars are.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// An integer as go-yaml v3 reads it into a Go `int`: the value, or the text that is not one.
/// Reading never fails, so the translator can report bad values at their exact location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoInt(pub Result<i64, String>);

/// A boolean as go-yaml v3 reads it into a Go `bool`, or the text that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBool(pub Result<bool, String>);

/// Parse like go-yaml v3 + `strconv.ParseInt(s, 0, 64)`.
pub fn parse_go_int(text: &str) -> Option<i64> {
    let plain: String = text.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match plain.as_bytes().first() {
        Some(b'-') => (true, &plain[1..]),
        Some(b'+') => (false, &plain[1..]),
        _ => (false, plain.as_str()),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if !digits.is_empty() && digits.bytes().all(|b| (b as char).is_digit(radix)) {
        let magnitude = i128::from_str_radix(digits, radix).ok()?;
        let v = if neg { -magnitude } else { magnitude };
        return i64::try_from(v).ok();
    }
    // go-yaml resolves YAML-style floats and converts whole ones into int fields.
    let is_float = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && body.bytes().any(|b| b.is_ascii_digit());
    if is_float {
        let f: f64 = plain.parse().ok()?;
        if f.fract() == 0.0 && f.abs() < 9.2e18 {
            return Some(f as i64);
        }
    }
    None
}

/// Parse like go-yaml v3 into a typed `bool`.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" | "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            Some(true)
        }
        "false" | "False" | "FALSE" | "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

struct TextVisitor(&'static str);

impl<'de> Visitor<'de> for TextVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

impl<'de> Deserialize<'de> for GoInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_str(TextVisitor("a whole number"))?;
        Ok(GoInt(parse_go_int(&text).ok_or(text)))
    }
}

impl<'de> Deserialize<'de> for GoBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_str(TextVisitor("a boolean"))?;
        Ok(GoBool(parse_go_bool(&text).ok_or(text)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ints_like_go_yaml() {
        assert_eq!(parse_go_int("0644"), Some(420));
        assert_eq!(parse_go_int("0o644"), Some(420));
        assert_eq!(parse_go_int("420"), Some(420));
        assert_eq!(parse_go_int("0x1A4"), Some(420));
        assert_eq!(parse_go_int("0b110100100"), Some(420));
        assert_eq!(parse_go_int("1_000"), Some(1000));
        assert_eq!(parse_go_int("-5"), Some(-5));
        assert_eq!(parse_go_int("+5"), Some(5));
        assert_eq!(parse_go_int("0"), Some(0));
        assert_eq!(parse_go_int("1e3"), Some(1000));
        // Not octal, but go-yaml's float pattern matches it and the float is whole.
        assert_eq!(parse_go_int("0999"), Some(999));
        assert_eq!(parse_go_int("1.5"), None);
        assert_eq!(parse_go_int("abc"), None);
        assert_eq!(parse_go_int(""), None);
    }

    #[test]
    fn bools_like_go_yaml() {
        assert_eq!(parse_go_bool("true"), Some(true));
        assert_eq!(parse_go_bool("yes"), Some(true));
        assert_eq!(parse_go_bool("Off"), Some(false));
        assert_eq!(parse_go_bool("1"), None);
        assert_eq!(parse_go_bool("tRue"), None);
    }
}
