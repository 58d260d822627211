//! The README as a test: every `kubectl` and `curl` line of its console
//! blocks runs against a live `sandbox` started with the README's flags,
//! and the output it shows is checked; so is every command the sandbox
//! itself prints as a hint.

use regex::Regex;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `$ command` of a console block and the output shown under it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The console blocks' steps, in order (continuation lines joined).
fn steps(readme: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut inside = false;
    let mut continuing = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            inside = line.trim() == "```console";
            continuing = false;
            continue;
        }
        if !inside {
            continue;
        }
        if continuing {
            if let Some(last) = out.last_mut() {
                last.command.push(' ');
                last.command
                    .push_str(line.trim().trim_end_matches('\\').trim());
                continuing = line.trim_end().ends_with('\\');
            }
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            continuing = cmd.trim_end().ends_with('\\');
            out.push(Step {
                command: cmd.trim().trim_end_matches('\\').trim().to_owned(),
                expected: Vec::new(),
            });
        } else if let Some(last) = out.last_mut() {
            last.expected.push(line.to_owned());
        }
    }
    out
}

/// What varies from run to run, masked: ages, random suffixes, digests,
/// tokens; and runs of spaces (column widths follow the values).
fn normalize(line: &str) -> String {
    let masks = [
        (r"-dockercfg-[a-z0-9]{5}\b", "-dockercfg-?"),
        (r"sha256:[0-9a-f]{64}", "sha256:?"),
        (r"\b\d+(ms|s|m|h|d)\b", "<age>"),
        // OpenShift's printers: `5 seconds ago`, `About a minute ago`.
        (
            r"\b(Less than a second|\d+ seconds?|About a minute|\d+ minutes) ago\b",
            "<age> ago",
        ),
        (r"\b[A-Z0-9]{32,}\b", "<token>"),
    ];
    let mut s = line.to_owned();
    for (re, with) in masks {
        s = Regex::new(re).unwrap().replace_all(&s, with).into_owned();
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `actual` is what the README shows, line by line (normalized):
/// a shown `...` stands for any number of lines, and nothing else may be
/// left out or added.
fn shows(expected: &[String], actual: &str) -> bool {
    let expected: Vec<Option<String>> = expected
        .iter()
        .map(|e| (e.trim() != "...").then(|| normalize(e)))
        .collect();
    let actual: Vec<String> = actual.lines().map(normalize).collect();
    matches_from(&expected, &actual)
}

fn matches_from(expected: &[Option<String>], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        // `...`: any number of lines.
        Some((None, rest)) => (0..=actual.len()).any(|skip| matches_from(rest, &actual[skip..])),
        Some((Some(line), rest)) => {
            actual.first() == Some(line) && matches_from(rest, &actual[1..])
        }
    }
}

/// The README's addresses, replaced by where this sandbox listens.
struct Addresses(Vec<(String, String)>);

impl Addresses {
    fn apply(&self, s: &str) -> String {
        self.0
            .iter()
            .fold(s.to_owned(), |acc, (from, to)| acc.replace(from, to))
    }
}

/// Runs `command` after the exports so far, in `dir`.
fn shell(dir: &Path, exports: &[String], command: &str) -> (bool, String, String) {
    let script = exports
        .iter()
        .map(String::as_str)
        .chain([command])
        .collect::<Vec<_>>()
        .join("\n");
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a step until it succeeds and shows what is expected (the sandbox
/// converges in the background), for at most 15 s.
fn run_step(dir: &Path, exports: &[String], command: &str, expected: &[String]) {
    let started = Instant::now();
    loop {
        let (ok, stdout, stderr) = shell(dir, exports, command);
        // A command shown without output (the sandbox's hints) is checked
        // for success only.
        if ok && (expected.is_empty() || shows(expected, &stdout)) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "README command failed or did not show the README's output within 15 s:\n$ {command}\nexit ok: {ok}\nexpected:\n{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            expected.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Sandbox(Child);

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn address_after<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("the sandbox printed no line starting {prefix:?}: {lines:?}"))
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches([')', ','])
}

/// A running `sandbox` with `flags` on free ports, in a directory of its
/// own (with the repository's `examples/`), and what it printed.
struct Live {
    _sandbox: Sandbox,
    dir: tempfile::TempDir,
    printed: Vec<String>,
    addresses: Addresses,
}

fn start_sandbox(flags: &str) -> Live {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(format!("{root}/examples"), dir.path().join("examples")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quay-bridge-operator"))
        .arg("sandbox")
        .args(flags.split_whitespace())
        .args([
            "--listen-quay",
            "127.0.0.1:0",
            "--listen-kube",
            "127.0.0.1:0",
            "--listen-admin",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let sandbox = Sandbox(child);
    let mut printed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.starts_with("Press Ctrl-C");
        printed.push(line);
        if done {
            break;
        }
    }
    let quay = address_after(&printed, "Embedded Quay listening on http://").to_owned();
    let kube = address_after(
        &printed,
        "Embedded Kubernetes API server listening on https://",
    )
    .to_owned();
    let admin = address_after(
        &printed,
        "Operator running (webhook registered, admin server on http://",
    )
    .to_owned();
    Live {
        _sandbox: sandbox,
        dir,
        printed,
        addresses: Addresses(vec![
            ("127.0.0.1:8080".into(), quay),
            ("127.0.0.1:6443".into(), kube),
            ("127.0.0.1:8081".into(), admin),
        ]),
    }
}

/// Every README console line runs (with the README's sandbox flags) and
/// shows what the README shows.
#[test]
fn every_readme_command_works_against_a_live_sandbox() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let all = steps(&readme);
    let (launch, session) = all.split_first().expect("console blocks in the README");
    let flags = launch
        .command
        .strip_prefix("cargo run -- sandbox")
        .and_then(|f| f.strip_suffix('&'))
        .unwrap_or_else(|| {
            panic!(
                "the first console command starts the sandbox: {}",
                launch.command
            )
        });
    let live = start_sandbox(flags);
    // What the README shows the sandbox printing, it prints.
    let shown: Vec<String> = launch
        .expected
        .iter()
        .map(|l| live.addresses.apply(l))
        .collect();
    assert!(
        shows(&shown, &live.printed.join("\n")),
        "{shown:?}\nprinted:\n{}",
        live.printed.join("\n")
    );
    let mut exports = Vec::new();
    let mut ran = 0;
    for step in session {
        let command = live.addresses.apply(&step.command);
        if command.starts_with("export ") {
            exports.push(command);
            continue;
        }
        assert!(
            command.starts_with("kubectl ") || command.starts_with("curl "),
            "a README console line the test cannot run: {command}"
        );
        let expected: Vec<String> = step
            .expected
            .iter()
            .map(|l| live.addresses.apply(l))
            .collect();
        run_step(live.dir.path(), &exports, &command, &expected);
        ran += 1;
    }
    assert!(ran >= 15, "{ran} README commands ran");
}

/// Every command `sandbox` prints as a hint works, as printed.
#[test]
fn every_hint_the_sandbox_prints_works() {
    let live = start_sandbox("");
    let hints: Vec<&str> = live
        .printed
        .iter()
        .skip_while(|l| !l.starts_with("Try"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim())
        .collect();
    assert!(hints.len() >= 8, "{hints:?}");
    let mut exports = Vec::new();
    for hint in hints {
        if hint.starts_with("export ") {
            exports.push(hint.to_owned());
            continue;
        }
        run_step(live.dir.path(), &exports, hint, &[]);
    }
}

#[test]
fn the_normalization_masks_only_what_varies() {
    assert_eq!(
        normalize("builder-dockercfg-s46ts    kubernetes.io/dockercfg          1s"),
        "builder-dockercfg-? kubernetes.io/dockercfg <age>"
    );
    assert_eq!(
        normalize("b-1  Source  Git  Complete  4 seconds ago  1s"),
        normalize("b-1  Source  Git  Complete  About a minute ago  12s")
    );
    assert!(shows(
        &["a".into(), "...".into(), "c  2m".into()],
        "a\nb\nc 41s\n"
    ));
    assert!(!shows(&["c".into(), "a".into()], "a\nc\n"), "order matters");
    assert!(!shows(&["sandbox True 1".into()], "sandbox True 0"));
    // Line by line: an extra or a missing line fails, unless `...` says so.
    assert!(
        !shows(&["a".into()], "a\nb\nc\n"),
        "lines the README does not show"
    );
    assert!(
        !shows(&["a".into(), "b".into()], "a\n"),
        "a shown line missing"
    );
    assert!(shows(&["a".into(), "...".into()], "a\nb\nc\n"));
    assert!(shows(&["...".into(), "c".into()], "a\nb\nc\n"));
}
