//! The `slipway serve --config FILE` configuration (TOML), documented key by key in
//! `deploy/slipway.toml`.
//!
//! Loading checks everything it can without touching the paths it names: unknown keys
//! (with a did-you-mean), types, durations (humantime: `90s`, `10m`, `1h 30m`), listen
//! addresses, URLs. Every problem is reported as `FILE:LINE:COLUMN: error: what` plus a hint
//! saying how to fix it.
//!
//! Secrets are only ever *file paths* (keys ending in `_file`). An inline secret — a key
//! such as `age_identity`, `webhook_secret` or `token`, a `_file` value that is the secret
//! itself (`AGE-SECRET-KEY-…`, a PEM block), or a password in a URL — is refused, and the
//! error never repeats the value. For the same reason, toml's own error rendering (which
//! quotes the offending line) is never used.
//!
//! Relative paths are resolved against the configuration file's folder, so a configuration
//! and its files can move together.
//!
//! Not here: reading the secret files (the daemon does, when it starts), or checking that the
//! remote fits its credentials (`source::Auth::check_fits`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use slipway_model::diag::{did_you_mean, Diagnostic, Location};

use super::ServeError;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// The cluster repository.
    pub repo: RepoConfig,
    /// Slipway's own state.
    #[serde(default)]
    pub state: StateConfig,
    /// Files holding secrets.
    pub secrets: SecretsConfig,
    /// Listen addresses.
    #[serde(default)]
    pub http: HttpConfig,
    /// The reconcile loop.
    #[serde(default)]
    pub reconcile: ReconcileConfig,
    /// Notifications.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

/// `[repo]`: where the desired state comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// `https://…`, `ssh://…`, `file://…` or a local path (resolved against the config's
    /// folder when relative). Never with a password in it.
    #[serde(deserialize_with = "repo_url")]
    pub url: String,
    /// The branch to follow.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// How often to fetch when no webhook says so.
    #[serde(default = "default_poll", deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// git's `allowed_signers` file: commits must be signed by one of its keys.
    #[serde(default, deserialize_with = "opt_path")]
    pub allowed_signers: Option<PathBuf>,
    /// Deploy key for `ssh://` remotes.
    #[serde(default, deserialize_with = "opt_secret_path")]
    pub ssh_key_file: Option<PathBuf>,
    /// known_hosts file pinning the `ssh://` server's host key (never trusted on first use).
    #[serde(default, deserialize_with = "opt_path")]
    pub ssh_known_hosts_file: Option<PathBuf>,
    /// Access token for `https://` remotes.
    #[serde(default, deserialize_with = "opt_secret_path")]
    pub token_file: Option<PathBuf>,
    /// The basic-auth user sent with the token; default: the URL's user, else `git`.
    #[serde(default)]
    pub token_user: Option<String>,
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The state folder (bare clone, journal, reboot lock, mirrored artifacts).
    #[serde(default = "default_state_dir", deserialize_with = "path")]
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: default_state_dir(),
        }
    }
}

/// `[secrets]`: paths of files holding secrets, never the secrets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// The age identity that decrypts the repository's secrets.
    #[serde(deserialize_with = "secret_path")]
    pub age_identity_file: PathBuf,
    /// The shared secret of `POST /hooks/git`; without it the webhook is not served.
    #[serde(default, deserialize_with = "opt_secret_path")]
    pub webhook_secret_file: Option<PathBuf>,
    /// The SSH key Slipway logs in to nodes with.
    #[serde(deserialize_with = "secret_path")]
    pub node_ssh_key_file: PathBuf,
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Boot server (iPXE scripts, Ignition, artifacts), reached by nodes.
    #[serde(default = "default_boot_listen", deserialize_with = "socket_addr")]
    pub boot_listen: SocketAddr,
    /// API: `/metrics`, `/healthz`, `/readyz`, `/v1/pre-reboot`, `/v1/steady-state`,
    /// `/hooks/git`.
    #[serde(default = "default_api_listen", deserialize_with = "socket_addr")]
    pub api_listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            boot_listen: default_boot_listen(),
            api_listen: default_api_listen(),
        }
    }
}

/// `[reconcile]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Plan at least this often, even without a new commit (drift, new releases).
    #[serde(default = "default_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// Start suspended: plans are computed and shown, nothing is applied.
    #[serde(default)]
    pub suspended: bool,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            suspended: false,
        }
    }
}

/// `[notify]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// JSON POST on rollout start, success and halt (`http://` or `https://`).
    #[serde(default, deserialize_with = "opt_webhook_url")]
    pub webhook_url: Option<String>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn default_branch() -> String {
    "main".into()
}
fn default_poll() -> Duration {
    Duration::from_secs(60)
}
fn default_interval() -> Duration {
    Duration::from_secs(600)
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/slipway")
}
fn default_boot_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

// ---------------------------------------------------------------------------------------
// Field parsers: their errors get the value's position from toml.
// ---------------------------------------------------------------------------------------

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let v = humantime::parse_duration(&s).map_err(|e| {
        D::Error::custom(format!(
            "{s:?} is not a duration ({e}); write it like \"90s\", \"10m\" or \"1h 30m\""
        ))
    })?;
    if v.is_zero() {
        return Err(D::Error::custom(
            "a duration of 0 would make the daemon spin; write at least \"1s\"",
        ));
    }
    Ok(v)
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| {
        D::Error::custom(format!(
            "{s:?} is not an IP:PORT socket address; write it like \"0.0.0.0:8080\", \
             \"127.0.0.1:9090\" or \"[::]:8080\" (host names are not resolved)"
        ))
    })
}

fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(D::Error::custom("empty path"));
    }
    Ok(PathBuf::from(s))
}

fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    path(d).map(Some)
}

/// True when a value meant to be a path is more likely the secret itself.
fn looks_like_a_secret(s: &str) -> bool {
    let t = s.trim_start();
    t.starts_with("AGE-SECRET-KEY-")
        || t.contains("-----BEGIN")
        || s.contains('\n')
        || t.starts_with("ghp_")
        || t.starts_with("glpat-")
}

fn secret_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let s = String::deserialize(d)?;
    if looks_like_a_secret(&s) {
        return Err(D::Error::custom(
            "this looks like the secret itself, not the path of a file holding it; put the \
             secret in a file only slipway can read (mode 0600) and write that file's path \
             here",
        ));
    }
    if s.trim().is_empty() {
        return Err(D::Error::custom("empty path"));
    }
    Ok(PathBuf::from(s))
}

fn opt_secret_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    secret_path(d).map(Some)
}

fn repo_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(D::Error::custom("empty repository URL"));
    }
    let scp_like = !s.contains("://")
        && s.split_once(':')
            .is_some_and(|(before, _)| !before.is_empty() && !before.contains('/'));
    if scp_like {
        return Err(D::Error::custom(
            "scp-like `user@host:path` is ambiguous; write it as ssh://user@host/path",
        ));
    }
    if s.contains("://") {
        let url = url::Url::parse(&s).map_err(|e| {
            D::Error::custom(format!(
                "not a URL ({e}); write it like https://host/path.git"
            ))
        })?;
        if url.password().is_some() {
            return Err(D::Error::custom(
                "the URL carries a password or token, which is a secret written inline; remove \
                 it and use token_file (https) or ssh_key_file (ssh)",
            ));
        }
    }
    Ok(s)
}

fn opt_webhook_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    let url = url::Url::parse(&s).map_err(|e| {
        D::Error::custom(format!(
            "not a URL ({e}); write it like https://hooks.example.net/slipway"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(D::Error::custom(
            "the notification webhook must be http:// or https://",
        ));
    }
    if url.password().is_some() {
        return Err(D::Error::custom(
            "the URL carries a password, which is a secret written inline; remove it",
        ));
    }
    Ok(Some(s))
}

// ---------------------------------------------------------------------------------------
// Loading.
// ---------------------------------------------------------------------------------------

/// Read, parse and check `path`; relative paths inside are resolved against its folder.
pub fn load(path: &Path) -> Result<ServeConfig, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|e| ServeError::io("reading", path, e))?;
    let mut config = parse(&text, &path.display().to_string())?;
    let absolute = std::path::absolute(path).map_err(|e| ServeError::io("resolving", path, e))?;
    let base = absolute.parent().unwrap_or(Path::new("/"));
    config.resolve_paths(base);
    Ok(config)
}

/// Parse configuration text; `file` names it in errors. Paths are left as written.
pub fn parse(text: &str, file: &str) -> Result<ServeConfig, ServeError> {
    toml::from_str(text).map_err(|e| ServeError::Config(Box::new(diagnose(text, file, &e))))
}

impl ServeConfig {
    /// Make every relative path absolute against `base` (the configuration's folder),
    /// including a repository URL that is a plain local path.
    pub fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut self.state.dir);
        abs(&mut self.secrets.age_identity_file);
        abs(&mut self.secrets.node_ssh_key_file);
        for p in [
            &mut self.secrets.webhook_secret_file,
            &mut self.repo.allowed_signers,
            &mut self.repo.ssh_key_file,
            &mut self.repo.ssh_known_hosts_file,
            &mut self.repo.token_file,
        ]
        .into_iter()
        .flatten()
        {
            abs(p);
        }
        if !self.repo.url.contains("://") && Path::new(&self.repo.url).is_relative() {
            self.repo.url = base.join(&self.repo.url).display().to_string();
        }
    }
}

/// Key names that mean "a secret, inline".
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.ends_with("_file")
        && [
            "secret", "password", "passwd", "token", "identity", "private", "key",
        ]
        .iter()
        .any(|w| k.contains(w))
}

fn diagnose(text: &str, file: &str, err: &toml::de::Error) -> Diagnostic {
    let span = err.span();
    let location = match &span {
        Some(s) => location_of(file, text, s.start),
        None => Location::file(file),
    };
    let message = redact(&err.message().trim().replace('\n', "; "));
    // An empty span is the whole document (toml's position for a missing top-level key).
    let table = span
        .as_ref()
        .filter(|s| !s.is_empty())
        .map_or_else(String::new, |s| {
            table_at(text, s.start, message.starts_with("missing field"))
        });
    let in_table = if table.is_empty() {
        "at the top level".to_owned()
    } else {
        format!("in [{table}]")
    };

    if let Some(key) = between_backticks(&message, "unknown field `") {
        let expected = expected_names(&message);
        let file_key = format!("{key}_file");
        let has_file_key = expected.contains(&file_key.as_str());
        let line = span.as_ref().and_then(|s| line_at(text, s.start));
        let value_is_secret = line.is_some_and(looks_like_a_secret_line);
        let value_is_path = line.is_some_and(|l| {
            l.split_once('=').is_some_and(|(_, v)| {
                v.trim()
                    .trim_start_matches(['"', '\''])
                    .starts_with(['/', '.', '~'])
            })
        });
        // `age_identity = "AGE-…"` beside `age_identity_file` is an inline secret;
        // `ssh_key_fil = "/etc/…"` is a typo; `age_key = "AGE-SECRET-KEY-…"` a secret again.
        let typo = did_you_mean(&key, expected.iter().copied())
            .or_else(|| has_file_key.then_some(file_key.as_str()));
        let inline_secret = value_is_secret
            || (!value_is_path && (has_file_key || (typo.is_none() && secret_key(&key))));
        if inline_secret {
            let file_keys: Vec<&str> = expected
                .iter()
                .copied()
                .filter(|e| e.ends_with("_file"))
                .collect();
            let reference = if has_file_key {
                format!("`{file_key} = \"/etc/slipway/…\"`")
            } else if file_keys.is_empty() {
                "a `*_file` key".to_owned()
            } else {
                format!("one of {}", file_keys.join(", "))
            };
            return Diagnostic::error(
                location,
                format!("inline secret `{key}` {in_table}: secrets are only read from files"),
            )
            .with_hint(format!(
                "put the value in a file only slipway can read (mode 0600), reference that \
                 file with {reference}, and remove `{key}`"
            ));
        }
        let d = Diagnostic::error(location, format!("unknown key `{key}` {in_table}"));
        return match typo {
            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
            None if !expected.is_empty() => {
                d.with_hint(format!("known keys here: {}", expected.join(", ")))
            }
            None => d,
        };
    }
    if let Some(key) = between_backticks(&message, "missing field `") {
        let hint = if table.is_empty() {
            format!("add a [{key}] section (see deploy/slipway.toml)")
        } else {
            format!("add `{key} = …` to [{table}] (see deploy/slipway.toml)")
        };
        return Diagnostic::error(location, format!("missing `{key}` {in_table}")).with_hint(hint);
    }
    Diagnostic::error(location, message)
        .with_hint("see deploy/slipway.toml for every key, with its type and an example")
}

/// The whole line holding byte `offset`.
fn line_at(text: &str, offset: usize) -> Option<&str> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    text.get(start..end)
}

fn looks_like_a_secret_line(line: &str) -> bool {
    line.contains("AGE-SECRET-KEY-") || line.contains("-----BEGIN")
}

/// The 1-based line and column of byte `offset` in `text`.
fn location_of(file: &str, text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    Location::new(file, line, column)
}

/// The `[table]` a position belongs to ("" at the top level). A position on a header line
/// belongs to that header's table when `on_header_is_inside` (toml places a table's missing
/// key on its header), else to its parent (an unknown `[section]` is a top-level key).
fn table_at(text: &str, offset: usize, on_header_is_inside: bool) -> String {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[before.len()..]
        .find('\n')
        .map_or(text.len(), |i| before.len() + i);
    let header = |l: &str| -> Option<String> {
        let l = l.trim();
        if l.starts_with("[[") {
            return None;
        }
        Some(l.strip_prefix('[')?.split(']').next()?.trim().to_owned())
    };
    if !on_header_is_inside {
        if let Some(h) = header(&text[line_start..line_end]) {
            // The header names a key of its parent table: `[a.b]` is in `[a]`, `[a]` at the
            // top level.
            return h
                .rsplit_once('.')
                .map_or_else(String::new, |(p, _)| p.trim().to_owned());
        }
    }
    let upto = if on_header_is_inside {
        line_end
    } else {
        line_start
    };
    text[..upto]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .and_then(|l| l.strip_prefix('[')?.split(']').next())
        .map(|t| t.trim().to_owned())
        .unwrap_or_default()
}

fn between_backticks(message: &str, prefix: &str) -> Option<String> {
    let rest = message.split_once(prefix)?.1;
    Some(rest.split('`').next()?.to_owned())
}

/// The backticked names after "expected" in serde's unknown-field message.
fn expected_names(message: &str) -> Vec<&str> {
    let Some((_, list)) = message.split_once("expected") else {
        return Vec::new();
    };
    list.split('`').skip(1).step_by(2).collect()
}

/// Drop quoted string values serde puts in its messages (`invalid type: string "…"`), so an
/// error never repeats what might be a secret typed in the wrong place.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("string \"") {
        out.push_str(&rest[..i]);
        out.push_str("a string");
        let after = &rest[i + "string \"".len()..];
        // Skip to the closing quote (serde escapes inner quotes as \").
        let mut end = None;
        let mut escaped = false;
        for (j, c) in after.char_indices() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(j);
                    break;
                }
                _ => escaped = false,
            }
        }
        match end {
            Some(j) => rest = &after[j + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_quoted_strings_only() {
        assert_eq!(
            redact(r#"invalid type: string "AGE-SECRET-KEY-1X\"Y", expected a boolean"#),
            "invalid type: a string, expected a boolean"
        );
        assert_eq!(
            redact("expected `text` or `json`"),
            "expected `text` or `json`"
        );
    }

    #[test]
    fn locations_are_one_based_and_count_characters() {
        let text = "a = 1\n[é]\nkey = 2\n";
        let l = location_of("f", text, text.find("key").unwrap());
        assert_eq!((l.line, l.column), (3, 1));
        let l = location_of("f", text, text.find(']').unwrap());
        assert_eq!((l.line, l.column), (2, 3));
    }

    #[test]
    fn the_table_is_found_from_a_position() {
        let text = "top = 1\n[repo]\nurl = 2\n[http] # c\nx = 3\n";
        assert_eq!(table_at(text, 0, false), "");
        assert_eq!(table_at(text, text.find("url").unwrap(), false), "repo");
        assert_eq!(table_at(text, text.find("[http]").unwrap(), true), "http");
        assert_eq!(table_at(text, text.find("[http]").unwrap() + 1, false), "");
        assert_eq!(table_at(text, text.find("x =").unwrap(), false), "http");
    }

    #[test]
    fn secret_looking_keys() {
        for k in [
            "age_identity",
            "webhook_secret",
            "token",
            "password",
            "node_ssh_key",
        ] {
            assert!(secret_key(k), "{k}");
        }
        for k in ["age_identity_file", "poll_intervall", "url", "branch"] {
            assert!(!secret_key(k), "{k}");
        }
    }
}
