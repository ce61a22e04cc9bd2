//! `slipway serve --config FILE`: the documented example loads (also with every optional key
//! uncommented), defaults, relative paths, and each kind of mistake reported at
//! FILE:LINE:COLUMN with a hint — inline secrets refused without ever being repeated.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use slipway::serve::config::{load, parse, LogFormat, ServeConfig};
use slipway::serve::ServeError;
use slipway_model::diag::Diagnostic;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/slipway.toml")
}

const MINIMAL: &str = r#"[repo]
url = "https://git.example.net/homelab/cluster.git"

[secrets]
age_identity_file = "/etc/slipway/age-identity.txt"
node_ssh_key_file = "/etc/slipway/id_ed25519"
"#;

/// The diagnostic for `text`, which must be refused.
fn refused(text: &str) -> Diagnostic {
    match parse(text, "slipway.toml") {
        Err(ServeError::Config(d)) => *d,
        Err(other) => panic!("expected a config diagnostic, got {other:?}"),
        Ok(c) => panic!("expected an error, got {c:?}"),
    }
}

fn at(d: &Diagnostic) -> (usize, usize) {
    (d.location.line, d.location.column)
}

#[test]
fn the_documented_example_loads() {
    let c = load(&example()).unwrap();
    assert_eq!(c.repo.url, "https://git.example.net/homelab/cluster.git");
    assert_eq!(c.repo.branch, "main");
    assert_eq!(c.repo.poll_interval, Duration::from_secs(60));
    assert_eq!(
        c.repo.allowed_signers.as_deref(),
        Some(Path::new("/etc/slipway/allowed_signers"))
    );
    assert_eq!(c.repo.ssh_key_file, None);
    assert_eq!(c.state.dir, Path::new("/var/lib/slipway"));
    assert_eq!(
        c.secrets.age_identity_file,
        Path::new("/etc/slipway/age-identity.txt")
    );
    assert_eq!(c.secrets.webhook_secret_file, None);
    assert_eq!(
        c.secrets.node_ssh_key_file,
        Path::new("/etc/slipway/id_ed25519")
    );
    assert_eq!(
        c.http.boot_listen,
        "0.0.0.0:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        c.http.api_listen,
        "127.0.0.1:9090".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.reconcile.interval, Duration::from_secs(600));
    assert!(!c.reconcile.suspended);
    assert_eq!(c.notify.webhook_url, None);
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn every_optional_key_the_example_shows_is_valid() {
    // Uncomment `# key = value` lines: the documented optional keys must load too.
    let text = std::fs::read_to_string(example()).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.contains(' ')) =>
            {
                rest
            }
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(uncommented, text, "the example documents optional keys");
    let c = parse(&uncommented, "uncommented.toml").unwrap();
    assert_eq!(
        c.repo.ssh_key_file.as_deref(),
        Some(Path::new("/etc/slipway/deploy_key"))
    );
    assert_eq!(
        c.repo.ssh_known_hosts_file.as_deref(),
        Some(Path::new("/etc/slipway/known_hosts"))
    );
    assert_eq!(
        c.repo.token_file.as_deref(),
        Some(Path::new("/etc/slipway/git-token"))
    );
    assert_eq!(c.repo.token_user.as_deref(), Some("slipway"));
    assert_eq!(
        c.secrets.webhook_secret_file.as_deref(),
        Some(Path::new("/etc/slipway/webhook-secret"))
    );
    assert_eq!(
        c.notify.webhook_url.as_deref(),
        Some("https://hooks.example.net/slipway")
    );
}

#[test]
fn omitted_sections_and_keys_take_their_defaults() {
    let c: ServeConfig = parse(MINIMAL, "minimal.toml").unwrap();
    assert_eq!(c.repo.branch, "main");
    assert_eq!(c.repo.poll_interval, Duration::from_secs(60));
    assert_eq!(c.repo.allowed_signers, None);
    assert_eq!(c.state.dir, Path::new("/var/lib/slipway"));
    assert_eq!(c.http.boot_listen.port(), 8080);
    assert!(c.http.api_listen.ip().is_loopback());
    assert_eq!(c.reconcile.interval, Duration::from_secs(600));
    assert!(!c.reconcile.suspended);
    assert_eq!(c.log.format, LogFormat::Text);

    let json = parse(&format!("{MINIMAL}[log]\nformat = \"json\"\n"), "f").unwrap();
    assert_eq!(json.log.format, LogFormat::Json);
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let t = tempfile::tempdir().unwrap();
    let conf = t.path().join("etc");
    std::fs::create_dir(&conf).unwrap();
    let file = conf.join("slipway.toml");
    std::fs::write(
        &file,
        r#"[repo]
url = "../cluster"
allowed_signers = "allowed_signers"
ssh_key_file = "/abs/deploy_key"
[state]
dir = "state"
[secrets]
age_identity_file = "keys/age.txt"
node_ssh_key_file = "./keys/id_ed25519"
webhook_secret_file = "hook"
"#,
    )
    .unwrap();
    let c = load(&file).unwrap();
    assert_eq!(c.repo.url, conf.join("../cluster").display().to_string());
    assert_eq!(c.repo.allowed_signers, Some(conf.join("allowed_signers")));
    assert_eq!(c.repo.ssh_key_file, Some(PathBuf::from("/abs/deploy_key")));
    assert_eq!(c.state.dir, conf.join("state"));
    assert_eq!(c.secrets.age_identity_file, conf.join("keys/age.txt"));
    assert_eq!(c.secrets.node_ssh_key_file, conf.join("./keys/id_ed25519"));
    assert_eq!(c.secrets.webhook_secret_file, Some(conf.join("hook")));

    // URLs are left alone.
    std::fs::write(&file, MINIMAL.replace("https://", "file:///srv/")).unwrap();
    assert_eq!(
        load(&file).unwrap().repo.url,
        "file:///srv/git.example.net/homelab/cluster.git"
    );
}

#[test]
fn an_unknown_key_is_located_with_a_did_you_mean() {
    let text = MINIMAL.replace(
        "[secrets]",
        "poll_intervall = \"5m\"\n\n[secrets]", // line 4
    );
    let d = refused(&text);
    assert_eq!(at(&d), (4, 1));
    assert_eq!(d.message, "unknown key `poll_intervall` in [repo]");
    assert_eq!(d.hint.as_deref(), Some("did you mean `poll_interval`?"));
    assert!(
        d.to_string()
            .starts_with("slipway.toml:4:1: error: unknown key `poll_intervall` in [repo]"),
        "{d}"
    );

    // Indented, and a typo of a `_file` key is a typo, not a secret.
    let text = MINIMAL.replace(".git\"\n", ".git\"\n  ssh_key_fil = \"/etc/slipway/k\"\n");
    let d = refused(&text);
    assert_eq!(at(&d), (3, 3));
    assert_eq!(d.message, "unknown key `ssh_key_fil` in [repo]");
    assert_eq!(d.hint.as_deref(), Some("did you mean `ssh_key_file`?"));
    // A path under a secret's name: the `_file` key is meant.
    let text = format!("{MINIMAL}webhook_secret = \"/etc/slipway/hook\"\n");
    let d = refused(&text);
    assert_eq!(d.message, "unknown key `webhook_secret` in [secrets]");
    assert_eq!(
        d.hint.as_deref(),
        Some("did you mean `webhook_secret_file`?")
    );

    // A whole unknown section lists what exists.
    let d = refused(&format!("{MINIMAL}[metrics]\nlisten = \"x\"\n"));
    assert_eq!(at(&d), (7, 2));
    assert_eq!(d.message, "unknown key `metrics` at the top level");
    let hint = d.hint.unwrap();
    assert!(
        hint.contains("repo") && hint.contains("reconcile"),
        "{hint}"
    );
}

#[test]
fn inline_secrets_are_refused_and_never_repeated() {
    const AGE: &str = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
    let cases: Vec<(String, &str, (usize, usize), &str)> = vec![
        (
            MINIMAL.replace(
                "age_identity_file = \"/etc/slipway/age-identity.txt\"",
                &format!("age_identity = \"{AGE}\""),
            ),
            AGE,
            (5, 1),
            "age_identity_file",
        ),
        (
            format!("{MINIMAL}webhook_secret = \"hunter2-webhook\"\n"),
            "hunter2-webhook",
            (7, 1),
            "webhook_secret_file",
        ),
        (
            MINIMAL.replace("[secrets]", "token = \"glpat-abcdefsecret\"\n[secrets]"),
            "glpat-abcdefsecret",
            (4, 1),
            "token_file",
        ),
        // Not named like a secret, but the value is one.
        (
            format!("{MINIMAL}age_key = \"{AGE}\"\n"),
            AGE,
            (7, 1),
            "_file",
        ),
    ];
    for (text, secret, pos, suggestion) in cases {
        let d = refused(&text);
        let shown = d.to_string();
        assert!(d.message.starts_with("inline secret `"), "{shown}");
        assert_eq!(at(&d), pos, "{shown}");
        assert!(d.hint.as_deref().unwrap().contains(suggestion), "{shown}");
        assert!(!shown.contains(secret), "the secret leaked: {shown}");
        assert!(!format!("{d:?}").contains(secret), "the secret leaked");
    }

    // The secret pasted where its path belongs, a password in a URL, a secret in a field
    // of the wrong type: refused, and not repeated either.
    let pasted = MINIMAL.replace("/etc/slipway/id_ed25519", AGE);
    let d = refused(&pasted);
    assert_eq!(at(&d), (6, 21));
    assert!(d.message.contains("looks like the secret itself"), "{d}");
    assert!(!d.to_string().contains(AGE));

    let pem = MINIMAL.replace(
        "\"/etc/slipway/id_ed25519\"",
        "\"\"\"\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE\n-----END OPENSSH PRIVATE KEY-----\"\"\"",
    );
    let d = refused(&pem);
    assert!(d.message.contains("looks like the secret itself"), "{d}");
    assert!(!d.to_string().contains("b3BlbnNzaC1rZXktdjE"));

    let url = MINIMAL.replace("https://", "https://bot:s3cr3t-token@");
    let d = refused(&url);
    assert_eq!(at(&d), (2, 7));
    assert!(d.message.contains("token_file"), "{d}");
    assert!(!d.to_string().contains("s3cr3t-token"));

    let typed = format!("{MINIMAL}[reconcile]\nsuspended = \"{AGE}\"\n");
    let d = refused(&typed);
    assert_eq!(at(&d), (8, 13));
    assert!(!d.to_string().contains(AGE), "{d}");
}

#[test]
fn a_bad_duration_is_located_and_explained() {
    let text = MINIMAL.replace(
        "[secrets]",
        "poll_interval = \"5 minutes please\"\n[secrets]",
    );
    let d = refused(&text);
    assert_eq!(at(&d), (4, 17));
    assert!(d.message.contains("is not a duration"), "{d}");
    assert!(d.message.contains("1h 30m"), "{d}");

    let d = refused(&format!("{MINIMAL}[reconcile]\ninterval = \"0s\"\n"));
    assert_eq!(at(&d), (8, 12));
    assert!(d.message.contains("at least"), "{d}");

    let d = refused(&format!("{MINIMAL}[reconcile]\ninterval = 600\n"));
    assert_eq!(at(&d), (8, 12));
    assert!(d.message.contains("invalid type"), "{d}");
}

#[test]
fn a_missing_required_key_names_it_and_where_it_goes() {
    let d = refused(&MINIMAL.replace(
        "url = \"https://git.example.net/homelab/cluster.git\"\n",
        "branch = \"main\"\n",
    ));
    assert_eq!(d.message, "missing `url` in [repo]");
    assert!(d
        .hint
        .as_deref()
        .unwrap()
        .contains("add `url = …` to [repo]"));
    assert_eq!(d.location.file, "slipway.toml");

    let secrets_at = MINIMAL.find("[secrets]").unwrap();
    let d = refused(&MINIMAL[..secrets_at]);
    assert_eq!(d.message, "missing `secrets` at the top level");
    assert!(d.hint.as_deref().unwrap().contains("[secrets]"));

    let d = refused(&MINIMAL.replace("node_ssh_key_file = \"/etc/slipway/id_ed25519\"\n", ""));
    assert_eq!(d.message, "missing `node_ssh_key_file` in [secrets]");
}

#[test]
fn other_mistakes_are_located_too() {
    // (text appended to MINIMAL, line, column, words in the message)
    let cases = [
        (
            "[http]\nboot_listen = \"8080\"\n",
            (8, 15),
            "socket address",
        ),
        (
            "[http]\napi_listen = \"localhost:9090\"\n",
            (8, 14),
            "socket address",
        ),
        ("[log]\nformat = \"xml\"\n", (8, 10), "`json`"),
        (
            "[notify]\nwebhook_url = \"ftp://hooks.example.net/x\"\n",
            (8, 15),
            "http:// or https://",
        ),
        (
            "[notify]\nwebhook_url = \"not a url\"\n",
            (8, 15),
            "not a URL",
        ),
        ("[state]\ndir = \"\"\n", (8, 7), "empty path"),
        ("[reconcile\n", (7, 11), ""),
    ];
    for (extra, pos, words) in cases {
        let d = refused(&format!("{MINIMAL}{extra}"));
        assert_eq!(at(&d), pos, "{extra:?}: {d}");
        assert!(d.message.contains(words), "{extra:?}: {d}");
        assert!(
            d.hint.is_some(),
            "{extra:?}: every error says how to fix it"
        );
    }
}

#[test]
fn an_scp_like_remote_is_refused_rather_than_taken_for_a_relative_path() {
    let d = refused(&MINIMAL.replace(
        "https://git.example.net/homelab/cluster.git",
        "git@git.example.net:homelab/cluster.git",
    ));
    assert_eq!(at(&d), (2, 7));
    assert!(d.message.contains("ssh://user@host/path"), "{d}");
    // A local path with a colon further on is still a path.
    let c = parse(
        &MINIMAL.replace(
            "https://git.example.net/homelab/cluster.git",
            "/srv/git/a:b",
        ),
        "f",
    )
    .unwrap();
    assert_eq!(c.repo.url, "/srv/git/a:b");
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope.toml");
    let err = load(&missing).unwrap_err();
    assert!(matches!(err, ServeError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.toml"), "{err}");
}
