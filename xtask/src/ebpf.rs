//! `cargo xtask build-ebpf [--check]`: compile every `ebpf/*.c` into the matching `.o`.
//!
//! The output must not depend on where the repository is checked out, or `--check`
//! would fail on every other machine: clang runs in `ebpf/` on the bare file name, and
//! `-fdebug-compilation-dir=.` replaces the absolute working directory that DWARF would
//! otherwise record. (The output file name is not recorded, so `--check` can build to
//! a temporary path.) The clang version is recorded, so a different clang may give a
//! different object; the check says so.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Include directory for the multiarch `asm/` headers.
fn multiarch_include() -> String {
    format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH)
}

fn clang_args(src: &str, out: &Path) -> Vec<String> {
    let mut v: Vec<String> = ["-O2", "-g", "-target", "bpf"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.push(multiarch_include());
    v.push("-fdebug-compilation-dir=.".to_string());
    v.extend(["-c".to_string(), src.to_string(), "-o".to_string()]);
    v.push(out.display().to_string());
    v
}

fn sources(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".c") {
            v.push(name);
        }
    }
    v.sort();
    Ok(v)
}

fn compile(dir: &Path, src: &str, out: &Path) -> Result<()> {
    let args = clang_args(src, out);
    let status = Command::new("clang")
        .current_dir(dir)
        .args(&args)
        .status()
        .context("running clang (apt-get install clang libbpf-dev)")?;
    if !status.success() {
        bail!("clang {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn clang_version() -> String {
    Command::new("clang")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown clang".to_string())
}

/// Builds every `ebpf/*.c`; with `check`, builds to a temporary directory and compares
/// with the committed objects instead.
pub fn build_all(check: bool) -> Result<()> {
    let dir = crate::workspace_root().join("ebpf");
    if !crate::sys::have_tool("clang") {
        if check {
            println!("xtask: build-ebpf --check skipped (clang not found)");
            return Ok(());
        }
        bail!("clang not found (apt-get install clang libbpf-dev)");
    }
    let srcs = sources(&dir)?;
    if srcs.is_empty() {
        bail!("no .c files in {}", dir.display());
    }
    if !check {
        for src in &srcs {
            let obj = object_name(src);
            compile(&dir, src, Path::new(&obj))?;
            println!("xtask: built ebpf/{obj}");
        }
        return Ok(());
    }
    let tmp = TempDir::new("xtask-ebpf")?;
    let mut stale = Vec::new();
    for src in &srcs {
        let obj = object_name(src);
        let built = tmp.0.join(&obj);
        compile(&dir, src, &built)?;
        let committed = std::fs::read(dir.join(&obj)).unwrap_or_default();
        if std::fs::read(&built)? != committed {
            stale.push(format!("ebpf/{obj}"));
        }
    }
    if !stale.is_empty() {
        bail!(
            "{} out of date with its source (built with {}). Run `cargo xtask build-ebpf` and commit the object",
            stale.join(", "),
            clang_version()
        );
    }
    println!("xtask: ebpf objects up to date ({})", srcs.join(", "));
    Ok(())
}

fn object_name(src: &str) -> String {
    format!("{}.o", src.trim_end_matches(".c"))
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        let p = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
