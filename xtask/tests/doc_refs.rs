//! Every file a comment or document names exists in the repository.
//!
//! Walks the repository (not `target/`, `.git/`, `stack/vendor/` or `.ci/`) and checks:
//!
//! - In `.rs` comments (`//`, `///`, `//!`, trailing `// ...`), whole `.md` files and whole
//!   `.toml` files, every token that looks like a file name (`name.ext` or
//!   `dir/name.ext`, for the extensions in [`CHECKED_EXT`]) names a file of the
//!   repository: the token, without leading `./` or `../`, is a repository path or a
//!   trailing part of one (`tcp/isn.rs` matches `stack/src/tcp/isn.rs`).
//! - Not checked: URLs (`http://`, `https://`), absolute paths (`/proc/...`), names
//!   without a letter (`1.c` in an RFC quote), and C sources/headers of other projects:
//!   a `.c`/`.h` token under a directory that is not one of the repository's top-level
//!   directories (`linux/if_xdp.h`, `sys/mbuf.h`), or on a line that says whose it is
//!   (FreeBSD, Linux, kernel, libbpf).
//! - No file outside `.ci/` (and this one) mentions the design or style notes or the
//!   shared directory kept outside the repository ([`FORBIDDEN`]).
//!
//! [`ALLOWED`] lists the references that may name a missing file, each with its reason.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Extensions of file-name tokens that are checked.
const CHECKED_EXT: &[&str] = &[
    "rs", "md", "toml", "c", "h", "o", "py", "sh", "lock", "yml", "yaml",
];

/// Directories (relative to the repository root) that are not scanned.
const SKIP_SCAN: &[&str] = &["target", ".git", "stack/vendor", ".ci"];

/// Directories (relative to the repository root) whose files do not count as existing.
const NOT_REPO: &[&str] = &["target", ".git"];

/// Words that mark a C source or header as another project's.
const FOREIGN_MARKERS: &[&str] = &["FreeBSD", "Linux", "linux", "kernel", "libbpf"];

/// Mentions no file outside `.ci/` may carry (built from parts so this file does not
/// carry them either).
const FORBIDDEN: &[[&str; 2]] = &[["DESIGN", ".md"], ["STYLE", ".md"], ["../", "shared"]];

/// References allowed to name a file that does not exist (yet), with the reason.
const ALLOWED: &[(&str, &str)] = &[];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn under(rel: &str, dirs: &[&str]) -> bool {
    dirs.iter()
        .any(|d| rel == *d || rel.starts_with(&format!("{d}/")))
}

/// Every file under `root`, as `/`-separated relative paths, except under `NOT_REPO`.
fn repo_files(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            if under(&rel, NOT_REPO) {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => {
                    out.insert(rel);
                }
                _ => {}
            }
        }
    }
    out
}

/// The part of a `.rs` line that is a comment, if any.
fn rs_comment(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if t.starts_with("//") {
        return Some(t);
    }
    // A trailing comment: `//` after whitespace, outside a string literal.
    let mut from = 0;
    while let Some(i) = line[from..].find("//") {
        let at = from + i;
        let before = &line[..at];
        if before.ends_with(char::is_whitespace) && before.matches('"').count() % 2 == 0 {
            return Some(&line[at..]);
        }
        from = at + 2;
    }
    None
}

/// `text` without URLs.
fn strip_urls(text: &str) -> String {
    text.split_whitespace()
        .filter(|w| !w.contains("http://") && !w.contains("https://"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The file-name-looking tokens of `text`.
fn file_tokens(text: &str) -> Vec<String> {
    let is_tok = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    text.split(|c: char| !is_tok(c))
        .map(|t| t.trim_end_matches('.'))
        .filter(|t| !t.starts_with('/') && !t.starts_with('-'))
        .filter(|t| {
            let Some((stem, ext)) = t.rsplit_once('.') else {
                return false;
            };
            let name = stem.rsplit('/').next().unwrap_or(stem);
            CHECKED_EXT.contains(&ext)
                && name.chars().any(|c| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .map(str::to_string)
        .collect()
}

/// Whether `token` names a file of the repository (or a trailing part of one's path).
fn resolves(token: &str, files: &BTreeSet<String>) -> bool {
    let mut t = token;
    while let Some(rest) = t.strip_prefix("./").or_else(|| t.strip_prefix("../")) {
        t = rest;
    }
    let suffix = format!("/{t}");
    files.contains(t) || files.iter().any(|f| f.ends_with(&suffix))
}

/// A `.c`/`.h` token that names another project's source (see the module docs).
fn foreign_c(token: &str, line: &str, top_dirs: &BTreeSet<String>) -> bool {
    if !(token.ends_with(".c") || token.ends_with(".h")) {
        return false;
    }
    match token.split_once('/') {
        Some((first, _)) => !top_dirs.contains(first),
        None => FOREIGN_MARKERS.iter().any(|m| line.contains(m)),
    }
}

/// file:line: problem, for every reference that names no file of the repository.
fn dangling_references(root: &Path) -> Vec<String> {
    let files = repo_files(root);
    let top_dirs: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.split_once('/').map(|(d, _)| d.to_string()))
        .collect();
    let mut problems = Vec::new();
    for rel in &files {
        if under(rel, SKIP_SCAN) {
            continue;
        }
        let ext = rel.rsplit_once('.').map_or("", |(_, e)| e);
        if !["rs", "md", "toml"].contains(&ext) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(rel)) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let checked = if ext == "rs" {
                rs_comment(line)
            } else {
                Some(line)
            };
            let Some(checked) = checked else {
                continue;
            };
            for tok in file_tokens(&strip_urls(checked)) {
                if resolves(&tok, &files)
                    || foreign_c(&tok, line, &top_dirs)
                    || ALLOWED.iter().any(|(a, _)| *a == tok)
                {
                    continue;
                }
                problems.push(format!("{rel}:{}: `{tok}` names no file here", n + 1));
            }
        }
    }
    problems
}

/// file:line: mention, for every forbidden mention outside `.ci/` and this file.
fn forbidden_mentions(root: &Path) -> Vec<String> {
    let this = Path::new(file!())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let mut problems = Vec::new();
    for rel in repo_files(root) {
        if under(&rel, SKIP_SCAN) || rel == format!("xtask/tests/{}", this.as_deref().unwrap_or(""))
        {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(&rel)) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            for [a, b] in FORBIDDEN {
                let word = format!("{a}{b}");
                if line.contains(&word) {
                    problems.push(format!("{rel}:{}: mentions `{word}`", n + 1));
                }
            }
        }
    }
    problems
}

#[test]
fn comments_and_docs_name_only_files_that_exist() {
    let problems = dangling_references(&repo_root());
    assert!(
        problems.is_empty(),
        "{} reference(s) to files that are not in the repository:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn no_mentions_of_notes_outside_the_repository() {
    let problems = forbidden_mentions(&repo_root());
    assert!(
        problems.is_empty(),
        "{} mention(s) of files kept outside the repository:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn tokens_and_resolution() {
    let files: BTreeSet<String> = ["stack/src/tcp/isn.rs", "README.md", "ebpf/xdp.c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let toks = file_tokens(&strip_urls(
        "see `tcp/isn.rs`, README.md. https://docs.rs/x/y.rs /proc/x.rs (1.c) e.g. v1.2 a.o",
    ));
    assert_eq!(toks, ["tcp/isn.rs", "README.md", "a.o"]);
    assert!(resolves("tcp/isn.rs", &files));
    assert!(resolves("../README.md", &files));
    assert!(!resolves("cp/isn.rs", &files));
    assert!(!resolves("a.o", &files));
    let top: BTreeSet<String> = ["ebpf".to_string()].into();
    assert!(foreign_c("linux/if_xdp.h", "", &top));
    assert!(!foreign_c("ebpf/gone.c", "", &top));
    assert!(foreign_c("tcp_input.c", "after FreeBSD's", &top));
    assert!(!foreign_c("steer.c", "the XDP program", &top));
    assert_eq!(
        rs_comment("    let x = 1; // see a.rs"),
        Some("// see a.rs")
    );
    assert_eq!(rs_comment(r#"    let u = "http://x"; "#), None);
    assert_eq!(rs_comment("/// doc"), Some("/// doc"));
}
