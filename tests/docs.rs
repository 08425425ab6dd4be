//! docs/cli.md, the command reference, against the binary's own command tree: every command
//! and long option the argument parser knows is documented, and nothing documented is missing
//! from it. The binary's man pages (`cairn man DIR`, one page per command, generated from the
//! parser) are the parser's side; the reference's headings `### `cairn CMD`` and the first
//! column of its option tables are the documented side.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::TestCommand;

/// Long options and environment variables of one command, as the parser has them.
#[derive(Debug, Default)]
struct Parsed {
    options: BTreeSet<String>,
    env: BTreeSet<String>,
}

/// `--foo-bar` tokens in a roff or markdown fragment (roff writes `\-\-foo\-bar`).
fn long_options(text: &str) -> BTreeSet<String> {
    let text = text.replace("\\-", "-");
    let mut out = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("--") {
        let after = &rest[i + 2..];
        let len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(after.len());
        let name = after[..len].trim_end_matches('-');
        if !name.is_empty() && !rest[..i].ends_with('-') {
            out.insert(format!("--{name}"));
        }
        rest = &after[len..];
    }
    out
}

/// Environment variable names (`CAIRN_...`, `AWS_...`) in a fragment.
fn env_names(text: &str) -> BTreeSet<String> {
    // Roff's font changes (`\fBNAME\fR`) are not part of a name.
    let text = text
        .replace("\\fB", " ")
        .replace("\\fR", " ")
        .replace("\\fI", " ");
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| w.starts_with("CAIRN_") || w.starts_with("AWS_"))
        .map(|w| w.trim_end_matches('_').to_string())
        .collect()
}

/// Every command's page, by command path (`""` for `cairn` itself, `"key add"`).
fn parser_commands(dir: &Path) -> BTreeMap<String, Parsed> {
    TestCommand::bare().arg("man").arg(dir).run().ok();
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("man pages") {
        let page = std::fs::read_to_string(entry.expect("entry").path()).expect("page");
        // The synopsis names the command: `\fBcairn key add\fR [...]`.
        let synopsis = page
            .split(".SH SYNOPSIS\n")
            .nth(1)
            .and_then(|s| s.strip_prefix("\\fB"))
            .and_then(|s| s.split("\\fR").next())
            .expect("a synopsis");
        let path = synopsis
            .strip_prefix("cairn")
            .expect("cairn ...")
            .trim()
            .to_string();
        let options_section = page
            .split(".SH OPTIONS\n")
            .nth(1)
            .map(|s| s.split("\n.SH ").next().unwrap_or(s))
            .unwrap_or("");
        let mut parsed = Parsed::default();
        let mut lines = options_section.lines();
        while let Some(line) = lines.next() {
            if line == ".TP" {
                if let Some(item) = lines.next() {
                    parsed.options.extend(long_options(item));
                }
            } else if line.starts_with("May also be specified with") {
                parsed.env.extend(env_names(line));
            }
        }
        assert!(
            out.insert(path.clone(), parsed).is_none(),
            "two pages for `cairn {path}`"
        );
    }
    out
}

/// The reference: options documented per command path (`""` holds the global options), and
/// every environment variable named in its global-option and environment tables.
struct Documented {
    commands: BTreeMap<String, BTreeSet<String>>,
    env: BTreeSet<String>,
    exit_codes: BTreeSet<u32>,
}

fn documented(text: &str) -> Documented {
    let mut commands: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut env = BTreeSet::new();
    let mut exit_codes = BTreeSet::new();
    // Where the lines being read belong.
    enum At {
        Elsewhere,
        Global,
        Environment,
        Command(String),
        ExitCodes,
    }
    let mut at = At::Elsewhere;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            at = match h {
                "Global options" => At::Global,
                "Environment" => At::Environment,
                "Exit codes" => At::ExitCodes,
                _ => At::Elsewhere,
            };
            if matches!(at, At::Global) {
                commands.entry(String::new()).or_default();
            }
            continue;
        }
        if let Some(h) = line.strip_prefix("### ") {
            at = match h.strip_prefix("`cairn").and_then(|c| c.strip_suffix('`')) {
                Some(c) => {
                    let c = c.trim().to_string();
                    assert!(
                        !commands.contains_key(&c),
                        "docs/cli.md documents `cairn {c}` twice"
                    );
                    commands.insert(c.clone(), BTreeSet::new());
                    At::Command(c)
                }
                None => At::Elsewhere,
            };
            continue;
        }
        // A table row: `| first cell | ... |`, not the header separator.
        let Some(row) = line.strip_prefix('|') else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let first = cells.first().copied().unwrap_or("");
        match &at {
            At::Global | At::Command(_) if first.starts_with("`-") => {
                let key = match &at {
                    At::Command(c) => c.clone(),
                    _ => String::new(),
                };
                commands.entry(key).or_default().extend(long_options(first));
                if matches!(at, At::Global) {
                    env.extend(env_names(cells.get(1).copied().unwrap_or("")));
                }
            }
            At::Environment => env.extend(env_names(first)),
            At::ExitCodes => {
                if let Ok(code) = first.parse::<u32>() {
                    exit_codes.insert(code);
                }
            }
            _ => {}
        }
    }
    Documented {
        commands,
        env,
        exit_codes,
    }
}

fn reference() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every way the two sides differ, one line each.
fn differences(parser: &BTreeMap<String, Parsed>, doc: &Documented) -> Vec<String> {
    let mut out = Vec::new();
    let global = &parser[""].options;
    // The parser's own options, which every command shows and the reference lists once.
    let builtin = |o: &str| o == "--help" || o == "--version";
    for (cmd, p) in parser {
        let name = format!("`cairn {cmd}`").replace("cairn `", "cairn`");
        let Some(documented) = doc.commands.get(cmd) else {
            out.push(format!(
                "{name} is a command but has no `### {name}` section"
            ));
            continue;
        };
        let own: BTreeSet<&String> = p
            .options
            .iter()
            .filter(|o| cmd.is_empty() || !global.contains(*o))
            .filter(|o| cmd.is_empty() || !builtin(o))
            .collect();
        for o in &own {
            if !documented.contains(*o) {
                out.push(format!(
                    "{name} has {o}, which its section does not document"
                ));
            }
        }
        for o in documented {
            if !own.contains(o) {
                out.push(format!(
                    "{name}'s section documents {o}, which it does not have"
                ));
            }
        }
        for e in &p.env {
            if !doc.env.contains(e) {
                out.push(format!(
                    "{name} reads {e}, which no environment table names"
                ));
            }
        }
    }
    for cmd in doc.commands.keys() {
        if !parser.contains_key(cmd) {
            out.push(format!(
                "docs/cli.md documents `cairn {cmd}`, which is not a command"
            ));
        }
    }
    out
}

#[test]
fn every_command_and_long_option_is_documented_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parser = parser_commands(dir.path());
    // The walk found the tree: the top level, the commands and the nested ones.
    for cmd in ["", "backup", "key add", "repair snapshots", "plan status"] {
        assert!(parser.contains_key(cmd), "no man page for `cairn {cmd}`");
    }
    assert!(parser["backup"].options.contains("--exclude-larger-than"));
    assert!(parser[""].env.contains("CAIRN_REPOSITORY"));
    let diffs = differences(&parser, &documented(&reference()));
    assert!(diffs.is_empty(), "docs/cli.md:\n{}", diffs.join("\n"));
}

#[test]
fn a_missing_or_invented_command_or_option_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parser = parser_commands(dir.path());
    let text = reference();
    let cases = [
        // An option the parser has, left out.
        (
            text.replace("| `--exclude-caches` |", "| `--excluded-caches` |"),
            vec![
                "`cairn backup` has --exclude-caches",
                "documents --excluded-caches",
            ],
        ),
        // A command section left out.
        (
            text.replace("### `cairn key passwd`", "### Changing the password"),
            vec!["`cairn key passwd` is a command but has no"],
        ),
        // A command that does not exist.
        (
            format!("{text}\n### `cairn teleport`\n"),
            vec!["documents `cairn teleport`, which is not a command"],
        ),
        // A global option documented as a command's, and one missing from the global table.
        (
            text.replace("| `--no-cache` |", "| `--no-caches` |"),
            vec!["`cairn` has --no-cache", "documents --no-caches"],
        ),
        // A variable the parser reads, unnamed.
        (
            text.replace("`CAIRN_CONNECTIONS`", "`CONNECTIONS`"),
            vec!["reads CAIRN_CONNECTIONS"],
        ),
    ];
    for (changed, wanted) in cases {
        let diffs = differences(&parser, &documented(&changed)).join("\n");
        for w in wanted {
            assert!(diffs.contains(w), "{w:?} not reported; got:\n{diffs}");
        }
    }
}

#[test]
fn the_documented_exit_codes_are_the_ones_the_binary_uses() {
    let doc = documented(&reference());
    // The codes cairn exits with (src/cli/mod.rs), and 2: the argument parser's usage error.
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli/mod.rs"))
            .expect("src/cli/mod.rs");
    let mut used: BTreeSet<u32> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const EXIT_"))
        .filter_map(|l| l.split('=').nth(1))
        .filter_map(|v| v.trim().trim_end_matches(';').parse().ok())
        .collect();
    assert!(used.contains(&10) && used.contains(&130), "{used:?}");
    used.insert(2);
    assert_eq!(doc.exit_codes, used);
    let usage = TestCommand::bare().arg("--no-such-option").run();
    assert_eq!(usage.code, 2, "{}", usage.stderr);
}

#[test]
fn documented_variables_are_ones_the_binary_reads() {
    let doc = documented(&reference());
    let mut source = String::new();
    for dir in ["src/cli", "src"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for e in std::fs::read_dir(&dir).expect("source dir") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "rs") {
                source.push_str(&std::fs::read_to_string(&p).expect("source"));
            }
        }
    }
    for v in &doc.env {
        assert!(
            source.contains(&format!("\"{v}\"")),
            "docs/cli.md names {v}, which the binary's source never does"
        );
    }
    assert!(doc.env.contains("CAIRN_PASSWORD") && doc.env.contains("AWS_PROFILE"));
}
