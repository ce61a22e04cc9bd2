//! Rendering a plan: text like `terraform plan`, versioned JSON, and the exit code.

use std::fmt::Write as _;

use slipway_model::inventory::Role;

use super::types::{Action, FileChange, FileDiff, NodeAction, Plan, WaveKind};

/// ANSI styles, or nothing when colour is off.
struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

const GREEN: &str = "32";
const RED: &str = "31";
const YELLOW: &str = "33";
const CYAN: &str = "36";
const BOLD: &str = "1";
const BOLD_RED: &str = "1;31";

fn symbol(a: Action) -> (&'static str, &'static str) {
    match a {
        Action::Install => ("+", GREEN),
        Action::Reinstall => ("-/+", YELLOW),
        Action::UpgradeOs | Action::UpgradeK3s => ("~", CYAN),
        Action::Remove => ("-", RED),
        Action::Replace => ("-/+", RED),
        Action::None => (" ", ""),
        Action::Blocked => ("!", BOLD_RED),
    }
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Install => "will be installed",
        Action::Reinstall => "will be reinstalled",
        Action::UpgradeOs => "will have its OS upgraded in place",
        Action::UpgradeK3s => "will have K3s upgraded in place",
        Action::Remove => "will be removed",
        Action::Replace => "will be replaced",
        Action::None => "is unchanged",
        Action::Blocked => "is blocked",
    }
}

fn describe(n: &NodeAction) -> String {
    let mut parts = Vec::new();
    if let Some(r) = n.role {
        parts.push(match r {
            Role::Server => "server",
            Role::Agent => "agent",
        });
    }
    if n.bootstrap {
        parts.push("bootstrap");
    }
    if parts.is_empty() {
        n.node.clone()
    } else {
        format!("{} ({})", n.node, parts.join(", "))
    }
}

/// Render the plan as text. Unchanged nodes are counted, not listed. `color` adds ANSI
/// colours (the caller decides from the terminal and `NO_COLOR`).
pub fn render_text(plan: &Plan, color: bool) -> String {
    let st = Style { on: color };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} for cluster \"{}\"",
        st.paint(BOLD, "Slipway plan"),
        plan.cluster
    );
    let _ = writeln!(out, "  commit:  {}", plan.commit);
    let _ = writeln!(out, "  author:  {}", plan.author);
    let _ = writeln!(
        out,
        "  signer:  {}",
        plan.signer.as_deref().unwrap_or("(unsigned)")
    );
    let _ = writeln!(
        out,
        "  cluster: {}",
        if plan.cluster_exists {
            "exists"
        } else {
            "new (the bootstrap server initialises it)"
        }
    );
    out.push('\n');

    let listed: Vec<&NodeAction> = plan
        .nodes
        .iter()
        .filter(|n| n.action != Action::None)
        .collect();
    if listed.is_empty() {
        let _ = writeln!(
            out,
            "{} Every node matches commit {}.\n",
            st.paint(GREEN, "No changes."),
            plan.commit.get(..12).unwrap_or(&plan.commit)
        );
    } else {
        let _ = writeln!(out, "Slipway will perform the following actions:\n");
        for n in listed {
            render_node(&mut out, &st, n);
        }
    }

    if !plan.waves.is_empty() {
        let _ = writeln!(out, "{}", st.paint(BOLD, "Rollout order:"));
        for w in &plan.waves {
            let kind = match w.kind {
                WaveKind::Server => "server",
                WaveKind::NewAgents => "new agents",
                WaveKind::Agents => "agents",
            };
            let _ = writeln!(
                out,
                "  wave {:<3} {:<10} {}",
                w.number,
                kind,
                w.nodes.join(", ")
            );
        }
        out.push('\n');
    }

    let s = &plan.summary;
    let _ = writeln!(
        out,
        "{} {} to install, {} to reinstall, {} to replace, {} to upgrade, {} to remove, {} unchanged, {} blocked.",
        st.paint(BOLD, "Plan:"),
        s.install,
        s.reinstall,
        s.replace,
        s.upgrade,
        s.remove,
        s.unchanged,
        s.blocked
    );
    out
}

fn render_node(out: &mut String, st: &Style, n: &NodeAction) {
    let (sym, color) = symbol(n.action);
    let headline = match (n.action, n.intended) {
        (Action::Blocked, Some(i)) => format!("{} (would {})", verb(n.action), i.name()),
        (a, _) => verb(a).to_string(),
    };
    let _ = writeln!(out, "  # {} {headline}", describe(n));
    let _ = writeln!(
        out,
        "  {} {} {}",
        st.paint(color, sym),
        st.paint(color, n.action.name()),
        n.node
    );
    if !n.reasons.is_empty() {
        let _ = writeln!(out, "      why:");
        for r in &n.reasons {
            let _ = writeln!(out, "        - {}", r.message);
        }
    }
    if !n.steps.is_empty() {
        let _ = writeln!(out, "      steps:");
        for (i, s) in n.steps.iter().enumerate() {
            let _ = writeln!(out, "        {}. {s}", i + 1);
        }
    }
    if !n.diff.is_empty() {
        let _ = writeln!(out, "      files:");
        for f in &n.diff {
            render_file(out, st, f);
        }
    }
    out.push('\n');
}

fn render_file(out: &mut String, st: &Style, f: &FileDiff) {
    let (sym, color) = match f.change {
        FileChange::Added => ("+", GREEN),
        FileChange::Removed => ("-", RED),
        FileChange::Modified => ("~", YELLOW),
    };
    let _ = writeln!(out, "        {} {}", st.paint(color, sym), f.path);
    let pad = "            ";
    for a in &f.attributes {
        let (b, a_) = (a.before.as_deref(), a.after.as_deref());
        let _ = match f.change {
            // A new file's attributes are facts, not changes.
            FileChange::Added => writeln!(out, "{pad}{} {}", a.name, a_.unwrap_or("(unset)")),
            FileChange::Removed => Ok(()),
            FileChange::Modified => writeln!(
                out,
                "{pad}{} {} → {}",
                a.name,
                b.unwrap_or("(unset)"),
                a_.unwrap_or("(unset)")
            ),
        };
    }
    if f.secret_changed {
        let _ = writeln!(out, "{pad}a secret changed (not shown)");
    }
    if let Some(note) = &f.note {
        let _ = writeln!(out, "{pad}{note}");
    }
    if let Some(diff) = &f.diff {
        for line in diff.lines() {
            let painted = if line.starts_with("+++") || line.starts_with("---") {
                st.paint(BOLD, line)
            } else if line.starts_with('+') {
                st.paint(GREEN, line)
            } else if line.starts_with('-') {
                st.paint(RED, line)
            } else if line.starts_with("@@") {
                st.paint(CYAN, line)
            } else {
                line.to_string()
            };
            let _ = writeln!(out, "{pad}{painted}");
        }
    }
}

/// Render the plan as JSON (schema in this module's documentation), pretty-printed, with a
/// trailing newline.
pub fn render_json(plan: &Plan) -> String {
    // The plan holds only strings, numbers, lists and structs: serializing cannot fail.
    let mut s = serde_json::to_string_pretty(plan).unwrap_or_default();
    s.push('\n');
    s
}

/// `--detailed-exitcode`: 0 when nothing differs, 2 when something does (a blocked node
/// differs too: the fleet does not match the commit). 1 is the caller's, for errors.
pub fn detailed_exit_code(plan: &Plan) -> u8 {
    if plan.summary.has_changes() {
        2
    } else {
        0
    }
}
