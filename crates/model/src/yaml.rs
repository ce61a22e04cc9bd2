//! Loading YAML into typed values while collecting every problem with its location.
//!
//! serde stops at the first error. Operators want all of them, so [`load`] recovers: after
//! each error it removes the offending entry from the parsed tree and tries again, until
//! the document deserializes or nothing more can be removed. Errors caused only by that
//! recovery (a field now "missing" because we removed its bad value) are not reported.
//!
//! Positions come from `marked-yaml`; types that need positions for later, semantic checks
//! use [`marked_yaml::Spanned`] fields and [`location_of`].

use marked_yaml::{Error as YamlError, LoaderOptions, Marker, Node, Span};
use serde::de::DeserializeOwned;

use crate::diag::{did_you_mean, Diagnostic, Location};

/// How many errors one document may report before we stop recovering.
const MAX_ERRORS: usize = 50;

/// Parse `text` (named `file` in messages) into `T`, reporting every problem found.
pub fn load<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, Vec<Diagnostic>> {
    let node = parse(file, text).map_err(|d| vec![d])?;
    load_node(file, node)
}

/// What a typed value forgets about its YAML: which scalars were quoted, and where the key
/// of each value is. Positions are (line, column), as in [`location_of`].
///
/// Go's YAML library types a quoted `"0644"` or `"true"` as a string and refuses it for a
/// number or boolean field; marked-yaml hands both spellings over as text, so readers that
/// must refuse the quoted one ask [`Marks::is_quoted`]. A mapping's span starts after its
/// first key, so "this section is not allowed" is better shown at [`Marks::key_of`].
#[derive(Debug, Clone, Default)]
pub struct Marks {
    quoted: std::collections::HashSet<(usize, usize)>,
    keys: std::collections::HashMap<(usize, usize), Marker>,
}

fn pos(span: &Span) -> Option<(usize, usize)> {
    span.start().map(|m| (m.line(), m.column()))
}

impl Marks {
    /// Whether the scalar at `span` was written in quotes (or as a block scalar).
    pub fn is_quoted(&self, span: &Span) -> bool {
        pos(span).is_some_and(|p| self.quoted.contains(&p))
    }

    /// The span of the mapping key whose value is at `span`, or `span` itself.
    pub fn key_of(&self, span: &Span) -> Span {
        pos(span)
            .and_then(|p| self.keys.get(&p))
            .map_or(*span, |m| Span::new_start(*m))
    }

    fn collect(&mut self, node: &Node) {
        match node {
            Node::Scalar(s) => {
                if !s.may_coerce() {
                    self.quoted.extend(pos(s.span()));
                }
            }
            Node::Mapping(map) => {
                for (k, v) in map.iter() {
                    if let (Some(p), Some(m)) = (pos(v.span()), k.span().start()) {
                        self.keys.entry(p).or_insert(*m);
                    }
                    self.collect(v);
                }
            }
            Node::Sequence(seq) => seq.iter().for_each(|v| self.collect(v)),
        }
    }
}

/// Like [`load`], and also returns the document's [`Marks`].
pub fn load_with_marks<T: DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<(T, Marks), Vec<Diagnostic>> {
    let node = parse_with(file, text, true).map_err(|d| vec![d])?;
    let mut marks = Marks::default();
    marks.collect(&node);
    load_node(file, node).map(|v| (v, marks))
}

fn load_node<T: DeserializeOwned>(file: &str, mut node: Node) -> Result<T, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut pruned: Vec<String> = Vec::new();
    loop {
        let err = match marked_yaml::from_node::<T>(&node) {
            Ok(v) if diags.is_empty() => return Ok(v),
            Ok(_) => return Err(diags),
            Err(e) => e.into_inner(),
        };
        let mut mark = err.start_mark();
        if let YamlError::UnknownFieldError(field, _, _) = &err {
            // Unknown keys come with the span of their mapping, or none; point at the key.
            mark = match mark {
                Some(m) => find_key(&node, Some(m), field).or(Some(m)),
                None => find_key(&node, None, field),
            };
        }
        let missing = missing_field(&err);
        let shown = match (&missing, mark) {
            // A mapping's mark is where the parser saw it start (after its first key);
            // point at the first key instead.
            (Some(_), Some(m)) => first_key_of_mapping_at(&node, m).or(mark),
            _ => mark,
        };
        let suppressed = missing.as_ref().is_some_and(|f| pruned.contains(f));
        if !suppressed {
            diags.push(describe(file, &err, shown));
        }
        if let YamlError::UnknownFieldError(field, expected, _) = &err {
            // A typo'd key also makes the intended one "missing": say it once.
            pruned.extend(did_you_mean(field, expected.iter().copied()).map(str::to_string));
        }
        if diags.len() >= MAX_ERRORS {
            return Err(diags);
        }
        let removed = match (mark, missing) {
            (Some(m), Some(_)) => remove_container_at(&mut node, m),
            (Some(m), None) => remove_entry_at(&mut node, m),
            (None, _) => None,
        };
        match removed {
            Some(key) => pruned.extend(key),
            None => return Err(diags),
        }
    }
}

/// Parse YAML text into a marked tree (top level must be a mapping; duplicate keys are errors).
pub fn parse(file: &str, text: &str) -> Result<Node, Diagnostic> {
    parse_with(file, text, false)
}

/// `prevent_coercion` marks quoted scalars (marked-yaml then also refuses them for
/// plain `bool` and number fields).
fn parse_with(file: &str, text: &str, prevent_coercion: bool) -> Result<Node, Diagnostic> {
    if text.trim().is_empty() {
        return Err(Diagnostic::error(Location::file(file), "the file is empty")
            .with_hint("a YAML mapping (key: value lines) is expected here"));
    }
    let opts = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(prevent_coercion);
    marked_yaml::parse_yaml_with_options(0, text, opts).map_err(|e| load_error(file, e))
}

fn load_error(file: &str, e: marked_yaml::LoadError) -> Diagnostic {
    use marked_yaml::LoadError as L;
    let at = |m: &Marker| Location::new(file, m.line(), m.column());
    match e {
        L::TopLevelMustBeMapping(m) | L::TopLevelMustBeSequence(m) => {
            Diagnostic::error(at(&m), "the top level of this file must be a mapping")
                .with_hint("write `key: value` lines at the top level, not a list or a bare value")
        }
        L::UnexpectedAnchor(m) => {
            Diagnostic::error(at(&m), "YAML anchors and aliases are not supported")
                .with_hint("write the value out in full")
        }
        L::MappingKeyMustBeScalar(m) => {
            Diagnostic::error(at(&m), "a mapping key must be a plain string")
        }
        L::UnexpectedTag(m) => Diagnostic::error(at(&m), "YAML tags (`!tag`) are not supported")
            .with_hint("remove the tag; quote the value if it should be a string"),
        L::ScanError(m, se) => {
            Diagnostic::error(at(&m), format!("YAML syntax error: {}", scan_message(&se)))
                .with_hint("check indentation (spaces, not tabs) and quoting around this point")
        }
        L::DuplicateKey(inner) => {
            let prev = inner
                .prev_key
                .span()
                .start()
                .map(|m| format!(" (first defined at line {})", m.line()));
            let loc = inner
                .key
                .span()
                .start()
                .map_or_else(|| Location::file(file), at);
            Diagnostic::error(
                loc,
                format!(
                    "duplicate key `{}`{}",
                    inner.key.as_str(),
                    prev.unwrap_or_default()
                ),
            )
            .with_hint("keep one of the two entries")
        }
    }
}

fn scan_message(se: &impl std::fmt::Display) -> String {
    // yaml-rust appends " at byte N line L column C"; our location already says that.
    let s = se.to_string();
    match s.find(" at byte ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn missing_field(err: &YamlError) -> Option<String> {
    if let YamlError::Other(msg, _) = err {
        let rest = msg.strip_prefix("missing field `")?;
        return rest.split('`').next().map(str::to_string);
    }
    None
}

fn describe(file: &str, err: &YamlError, mark: Option<Marker>) -> Diagnostic {
    let loc = mark.map_or_else(
        || Location::file(file),
        |m| Location::new(file, m.line(), m.column()),
    );
    match err {
        YamlError::UnknownFieldError(field, expected, _) => {
            let d = Diagnostic::error(loc, format!("unknown key `{field}`"));
            match did_you_mean(field, expected.iter().copied()) {
                Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                None if expected.is_empty() => d.with_hint("no keys are allowed here"),
                None => d.with_hint(format!("valid keys here: {}", expected.join(", "))),
            }
        }
        YamlError::NotBoolean(_) => {
            Diagnostic::error(loc, "expected a boolean").with_hint("write `true` or `false`")
        }
        YamlError::IntegerParseFailure(e, _) => {
            Diagnostic::error(loc, format!("expected a whole number: {e}"))
        }
        YamlError::FloatParseFailure(e, _) => {
            Diagnostic::error(loc, format!("expected a number: {e}"))
        }
        YamlError::Other(msg, _) => Diagnostic::error(loc, msg.clone()),
    }
}

fn starts_at(span: &Span, m: Marker) -> bool {
    span.start()
        .is_some_and(|s| s.line() == m.line() && s.column() == m.column())
}

/// Remove the innermost mapping entry or sequence item located at `m`.
/// Returns the removed key (if a mapping entry) wrapped in `Some`, or `None` if nothing matched.
fn remove_entry_at(node: &mut Node, m: Marker) -> Option<Option<String>> {
    match node {
        Node::Mapping(map) => {
            let mut hit: Option<(marked_yaml::types::MarkedScalarNode, bool)> = None;
            for (k, v) in map.iter_mut() {
                if let Some(r) = remove_entry_at(v, m) {
                    return Some(r);
                }
                if starts_at(k.span(), m) || starts_at(v.span(), m) {
                    hit = Some((k.clone(), true));
                    break;
                }
            }
            let (k, _) = hit?;
            map.remove(&k);
            Some(Some(k.as_str().to_string()))
        }
        Node::Sequence(seq) => {
            for i in 0..seq.len() {
                if let Some(r) = remove_entry_at(&mut seq[i], m) {
                    return Some(r);
                }
                if starts_at(seq[i].span(), m) {
                    seq.remove(i);
                    return Some(None);
                }
            }
            None
        }
        Node::Scalar(_) => None,
    }
}

/// For "missing field" errors, reported at the start of the mapping that lacks the field:
/// remove that mapping from its parent. The root itself can't be removed.
fn remove_container_at(node: &mut Node, m: Marker) -> Option<Option<String>> {
    match node {
        Node::Mapping(map) => {
            let mut hit = None;
            for (k, v) in map.iter_mut() {
                if let Some(r) = remove_container_at(v, m) {
                    return Some(r);
                }
                if matches!(v, Node::Mapping(_)) && starts_at(v.span(), m) {
                    hit = Some(k.clone());
                    break;
                }
            }
            let k = hit?;
            map.remove(&k);
            Some(Some(k.as_str().to_string()))
        }
        Node::Sequence(seq) => {
            for i in 0..seq.len() {
                if let Some(r) = remove_container_at(&mut seq[i], m) {
                    return Some(r);
                }
                if matches!(seq[i], Node::Mapping(_)) && starts_at(seq[i].span(), m) {
                    seq.remove(i);
                    return Some(None);
                }
            }
            None
        }
        Node::Scalar(_) => None,
    }
}

/// The first key of the innermost mapping whose span starts at `m`.
fn first_key_of_mapping_at(node: &Node, m: Marker) -> Option<Marker> {
    match node {
        Node::Mapping(map) => map
            .values()
            .find_map(|v| first_key_of_mapping_at(v, m))
            .or_else(|| {
                if starts_at(node.span(), m) {
                    map.keys().next().and_then(|k| k.span().start().copied())
                } else {
                    None
                }
            }),
        Node::Sequence(seq) => seq.iter().find_map(|v| first_key_of_mapping_at(v, m)),
        Node::Scalar(_) => None,
    }
}

/// The position of key `field` in the innermost mapping that starts at `m` (any mapping when
/// `m` is `None`).
fn find_key(node: &Node, m: Option<Marker>, field: &str) -> Option<Marker> {
    match node {
        Node::Mapping(map) => {
            for v in map.values() {
                if let Some(found) = find_key(v, m, field) {
                    return Some(found);
                }
            }
            if m.is_none_or(|m| starts_at(node.span(), m)) {
                return map
                    .keys()
                    .find(|k| k.as_str() == field)
                    .and_then(|k| k.span().start().copied());
            }
            None
        }
        Node::Sequence(seq) => seq.iter().find_map(|v| find_key(v, m, field)),
        Node::Scalar(_) => None,
    }
}

/// The location of a spanned value, or the start of the file when the span is blank.
pub fn location_of(file: &str, span: &Span) -> Location {
    span.start().map_or_else(
        || Location::file(file),
        |m| Location::new(file, m.line(), m.column()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Net {
        address: String,
        prefix: u8,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        hostname: String,
        #[serde(default)]
        mac_address: Vec<String>,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        net: Option<Net>,
        #[serde(default)]
        enabled: bool,
    }

    fn errs(text: &str) -> Vec<String> {
        load::<Doc>("n.yaml", text)
            .unwrap_err()
            .iter()
            .map(|d| format!("{}|{}", d.location, d.message))
            .collect()
    }

    #[test]
    fn good_document_loads() {
        let d: Doc = load(
            "n.yaml",
            "hostname: a\nport: 22\nnet: {address: x, prefix: 24}\n",
        )
        .unwrap();
        assert_eq!(d.port, Some(22));
    }

    #[test]
    fn reports_every_problem_with_locations() {
        let text = "hostname: a\nmac_adress: [x]\nport: 99999\nenabled: maybe\nnet:\n  address: x\n  prefx: 24\n";
        let e = errs(text);
        assert_eq!(
            e,
            vec![
                "n.yaml:2:1|unknown key `mac_adress`",
                "n.yaml:3:7|expected a whole number: number too large to fit in target type",
                "n.yaml:4:10|expected a boolean",
                "n.yaml:7:3|unknown key `prefx`",
            ],
            "{e:#?}"
        );
        let d = load::<Doc>("n.yaml", text).unwrap_err();
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `mac_address`?"));
    }

    #[test]
    fn missing_required_field_is_reported_once() {
        let e = errs("port: 22\n");
        assert_eq!(e, vec!["n.yaml:1:1|missing field `hostname`"]);
    }

    #[test]
    fn syntax_errors_and_duplicates_have_locations() {
        let e = errs("hostname: a\n  bad: [\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("n.yaml:2:"), "{e:?}");
        let e = errs("hostname: a\nport: 1\nhostname: b\n");
        assert_eq!(
            e,
            vec!["n.yaml:3:1|duplicate key `hostname` (first defined at line 1)"]
        );
        let e = errs("");
        assert_eq!(e, vec!["n.yaml:1:1|the file is empty"]);
        let e = errs("- a\n- b\n");
        assert_eq!(
            e,
            vec!["n.yaml:1:1|the top level of this file must be a mapping"]
        );
    }
}
