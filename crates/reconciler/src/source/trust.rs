//! Trust: which SSH keys may sign the commits Slipway applies, and checking a commit's
//! signature against them.
//!
//! The list is git's `gpg.ssh.allowedSignersFile` format (see ssh-keygen(1), "ALLOWED
//! SIGNERS"): `principals [options] keytype base64key [comment]`, `#` comments. It lives in
//! Slipway's own configuration and is NEVER read from the repository being verified: a
//! repository that could name its own signers would verify itself.
//!
//! Options understood: `namespaces="git,..."` (the key may sign only for these namespaces),
//! `valid-after="YYYYMMDD[HHMM[SS]][Z]"`, `valid-before=...` (checked against the commit's
//! committer time, as git does). Deviation from ssh-keygen: a time without `Z` is read as
//! UTC, not the local zone (a server's zone is an accident). `cert-authority` is refused at
//! load time: certificate signers are not supported.

use std::path::Path;

use ssh_key::{HashAlg, PublicKey, SshSig};

use super::error::{Refusal, SourceError};

/// The namespace git signs commits in.
pub const GIT_NAMESPACE: &str = "git";

/// Who signed an accepted commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signer {
    /// The principals field of the allowed_signers line that matched (e.g. `alice@example.org`).
    pub principal: String,
    /// SHA256 fingerprint of the signing key, as ssh-keygen prints it (`SHA256:...`).
    pub fingerprint: String,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.principal, self.fingerprint)
    }
}

/// One line of allowed_signers.
#[derive(Debug, Clone)]
struct AllowedSigner {
    principals: String,
    namespaces: Option<Vec<String>>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
    key: PublicKey,
}

/// The parsed allowed_signers list.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    entries: Vec<AllowedSigner>,
}

impl AllowedSigners {
    /// Parse allowed_signers text; every bad line is reported at once.
    pub fn parse(text: &str) -> Result<Self, SourceError> {
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Ok(e) => entries.push(e),
                Err(why) => problems.push(format!("line {}: {why}", i + 1)),
            }
        }
        if problems.is_empty() {
            Ok(Self { entries })
        } else {
            Err(SourceError::AllowedSigners {
                origin: None,
                problems,
            })
        }
    }

    /// Read and parse an allowed_signers file.
    pub fn load(path: &Path) -> Result<Self, SourceError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| SourceError::io("reading", path, e))?;
        Self::parse(&text).map_err(|e| match e {
            SourceError::AllowedSigners { problems, .. } => SourceError::AllowedSigners {
                origin: Some(path.to_owned()),
                problems,
            },
            other => other,
        })
    }

    /// Number of keys listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is listed (then every commit is refused).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Check an armored SSH signature over `signed_data` (the commit object without its
    /// `gpgsig` header), made at `commit_time` (unix seconds, the committer time).
    pub fn verify(
        &self,
        armored: &[u8],
        signed_data: &[u8],
        commit_time: i64,
    ) -> Result<Signer, Refusal> {
        let text = std::str::from_utf8(armored).map_err(|_| Refusal::NotSshSignature)?;
        if !text
            .trim_start()
            .starts_with("-----BEGIN SSH SIGNATURE-----")
        {
            return Err(Refusal::NotSshSignature);
        }
        let sig = SshSig::from_pem(text.trim())
            .map_err(|e| Refusal::MalformedSignature(e.to_string()))?;
        if sig.namespace() != GIT_NAMESPACE {
            return Err(Refusal::WrongSignatureNamespace {
                found: sig.namespace().to_owned(),
            });
        }
        let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
        let candidates: Vec<&AllowedSigner> = self
            .entries
            .iter()
            .filter(|e| e.key.key_data() == sig.public_key())
            .collect();
        if candidates.is_empty() {
            return Err(Refusal::UnknownKey { fingerprint });
        }
        let mut first_why = None;
        for entry in &candidates {
            match entry.permits(commit_time) {
                Ok(()) => {
                    return match entry.key.verify(GIT_NAMESPACE, signed_data, &sig) {
                        Ok(()) => Ok(Signer {
                            principal: entry.principals.clone(),
                            fingerprint,
                        }),
                        Err(_) => Err(Refusal::BadSignature { fingerprint }),
                    };
                }
                Err(why) => {
                    first_why.get_or_insert((entry.principals.clone(), why));
                }
            }
        }
        let (principal, why) = first_why.unwrap_or_default();
        Err(Refusal::KeyNotValid {
            principal,
            fingerprint,
            why,
        })
    }
}

impl AllowedSigner {
    /// May this key sign git commits made at `time`? `Err` says which option forbids it.
    fn permits(&self, time: i64) -> Result<(), String> {
        if let Some(ns) = &self.namespaces {
            if !match_pattern_list(GIT_NAMESPACE, ns) {
                return Err(format!(
                    "limits this key to namespaces=\"{}\", which excludes \"git\"",
                    ns.join(",")
                ));
            }
        }
        if let Some(after) = self.valid_after {
            if time < after {
                return Err(format!(
                    "makes this key valid only after {} and the commit is dated {}",
                    fmt_time(after),
                    fmt_time(time)
                ));
            }
        }
        if let Some(before) = self.valid_before {
            if time > before {
                return Err(format!(
                    "makes this key valid only before {} and the commit is dated {}",
                    fmt_time(before),
                    fmt_time(time)
                ));
            }
        }
        Ok(())
    }
}

fn fmt_time(t: i64) -> String {
    u64::try_from(t)
        .ok()
        .map(|s| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
            )
            .to_string()
        })
        .unwrap_or_else(|| format!("@{t}"))
}

/// Split a line into whitespace-separated fields, keeping double-quoted runs together.
fn fields(line: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push(&line[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    Ok(out)
}

fn looks_like_key_type(s: &str) -> bool {
    s.starts_with("ssh-")
        || s.starts_with("ecdsa-")
        || s.starts_with("sk-ssh-")
        || s.starts_with("sk-ecdsa-")
}

fn parse_line(line: &str) -> Result<AllowedSigner, String> {
    let f = fields(line)?;
    let principals = f.first().ok_or("empty line")?;
    let principals = principals.trim_matches('"').to_owned();
    let (options, rest) = match f.get(1) {
        Some(t) if looks_like_key_type(t) => (None, &f[1..]),
        Some(t) => (Some(*t), &f[2.min(f.len())..]),
        None => return Err("missing key type and key".into()),
    };
    let (Some(kind), Some(b64)) = (rest.first(), rest.get(1)) else {
        return Err("expected `principals [options] keytype base64key [comment]`".into());
    };
    if !looks_like_key_type(kind) {
        return Err(format!("unknown key type {kind:?}"));
    }
    let key = PublicKey::from_openssh(&format!("{kind} {b64}"))
        .map_err(|e| format!("invalid {kind} key: {e}"))?;
    let mut entry = AllowedSigner {
        principals,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        key,
    };
    if let Some(options) = options {
        for opt in split_options(options)? {
            let (name, value) = match opt.split_once('=') {
                Some((n, v)) => (n, Some(unquote(v)?)),
                None => (opt, None),
            };
            match (name.to_ascii_lowercase().as_str(), value) {
                ("namespaces", Some(v)) => {
                    entry.namespaces = Some(v.split(',').map(|s| s.trim().to_owned()).collect())
                }
                ("valid-after", Some(v)) => entry.valid_after = Some(parse_time(v)?),
                ("valid-before", Some(v)) => entry.valid_before = Some(parse_time(v)?),
                ("cert-authority", _) => {
                    return Err("cert-authority (certificate signers) is not supported; list the signing keys themselves".into())
                }
                (n @ ("namespaces" | "valid-after" | "valid-before"), None) => {
                    return Err(format!("option {n} needs a value"))
                }
                (other, _) => return Err(format!("unknown option {other:?}")),
            }
        }
    }
    Ok(entry)
}

/// Split `a="x,y",b` at commas outside quotes.
fn split_options(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err("unterminated quote in options".into());
    }
    out.push(&s[start..]);
    if out.iter().any(|o| o.is_empty()) {
        return Err(format!("empty option in {s:?}"));
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<&str, String> {
    match v.strip_prefix('"') {
        Some(inner) => inner
            .strip_suffix('"')
            .ok_or_else(|| format!("unterminated quote in {v:?}")),
        None => Ok(v),
    }
}

/// `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, optionally ending in `Z`; read as UTC.
fn parse_time(v: &str) -> Result<i64, String> {
    let digits = v.strip_suffix(['Z', 'z']).unwrap_or(v);
    let bad = || format!("invalid time {v:?} (expected YYYYMMDD[HHMM[SS]][Z])");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (date, time) = match digits.len() {
        8 => (digits, "000000".to_owned()),
        12 => (&digits[..8], format!("{}00", &digits[8..])),
        14 => (&digits[..8], digits[8..].to_owned()),
        _ => return Err(bad()),
    };
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[..4],
        &date[4..6],
        &date[6..8],
        &time[..2],
        &time[2..4],
        &time[4..6]
    );
    let t = humantime::parse_rfc3339(&rfc3339).map_err(|_| bad())?;
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad())?
        .as_secs();
    i64::try_from(secs).map_err(|_| bad())
}

/// OpenSSH pattern-list matching: comma-separated globs (`*`, `?`), `!` negates; a
/// negated match wins over any positive one.
pub(crate) fn match_pattern_list(subject: &str, patterns: &[String]) -> bool {
    let mut matched = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg.as_bytes(), subject.as_bytes()) {
                return false;
            }
        } else if glob(p.as_bytes(), subject.as_bytes()) {
            matched = true;
        }
    }
    matched
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIArU9uV40NH7tlSYt/30DaRrHzQAuwS1LsaMHAwvr8ql";

    #[test]
    fn parses_lines_with_and_without_options() {
        let text = format!(
            "# admins\n\nalice@example.org {KEY} alice laptop\n\
             bob@example.org,ci@example.org namespaces=\"git,file\",valid-after=\"20240101\",valid-before=\"20300101120000Z\" {KEY}\n"
        );
        let s = AllowedSigners::parse(&text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.entries[0].principals, "alice@example.org");
        assert!(s.entries[0].namespaces.is_none());
        let bob = &s.entries[1];
        assert_eq!(bob.namespaces.as_deref().unwrap(), ["git", "file"]);
        assert_eq!(bob.valid_after, Some(1_704_067_200));
        assert_eq!(bob.valid_before, Some(1_893_499_200));
    }

    #[test]
    fn reports_every_bad_line_with_its_number() {
        let text = format!(
            "ok {KEY}\nnokey\nbad ssh-ed25519 !!!notbase64\ncert cert-authority {KEY}\nx weird=1 {KEY}\nt valid-after=\"2024\" {KEY}\n"
        );
        let SourceError::AllowedSigners { problems, .. } =
            AllowedSigners::parse(&text).unwrap_err()
        else {
            panic!("wrong error")
        };
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].starts_with("line 2:"));
        assert!(
            problems[1].starts_with("line 3:") && problems[1].contains("invalid ssh-ed25519 key")
        );
        assert!(problems[2].contains("cert-authority"));
        assert!(problems[3].contains("unknown option \"weird\""));
        assert!(problems[4].contains("invalid time \"2024\""));
    }

    #[test]
    fn permits_checks_namespace_and_validity_window() {
        let text = format!("p namespaces=\"file\",valid-after=\"20240101\" {KEY}\n");
        let s = AllowedSigners::parse(&text).unwrap();
        let why = s.entries[0].permits(1_800_000_000).unwrap_err();
        assert!(why.contains("namespaces=\"file\""), "{why}");

        let text = format!("p namespaces=\"g*\",valid-after=\"20240101\" {KEY}\n");
        let s = AllowedSigners::parse(&text).unwrap();
        assert!(s.entries[0].permits(1_800_000_000).is_ok());
        let why = s.entries[0].permits(1_600_000_000).unwrap_err();
        assert!(
            why.contains("valid only after 2024-01-01T00:00:00Z"),
            "{why}"
        );
    }

    #[test]
    fn pattern_lists_follow_openssh() {
        let l = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        assert!(match_pattern_list("git", &l("git")));
        assert!(match_pattern_list("git", &l("file,g?t")));
        assert!(!match_pattern_list("git", &l("*,!git")));
        assert!(!match_pattern_list("git", &l("file")));
        assert!(match_pattern_list("host.example", &l("*.example")));
    }

    #[test]
    fn refuses_non_ssh_and_malformed_signatures() {
        let s = AllowedSigners::parse(&format!("p {KEY}")).unwrap();
        let pgp = b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n";
        assert_eq!(s.verify(pgp, b"x", 0), Err(Refusal::NotSshSignature));
        let junk = b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n";
        assert!(matches!(
            s.verify(junk, b"x", 0),
            Err(Refusal::MalformedSignature(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn parsing_and_verifying_never_panic(text in "\\PC*", sig in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = AllowedSigners::parse(&text);
            let line = format!("p {text} {KEY}");
            let _ = AllowedSigners::parse(&line);
            let s = AllowedSigners::parse(&format!("p {KEY}")).unwrap();
            let mut armored = b"-----BEGIN SSH SIGNATURE-----\n".to_vec();
            armored.extend_from_slice(&sig);
            let _ = s.verify(&armored, b"data", 0);
            let _ = s.verify(&sig, b"data", 0);
        }
    }
}
