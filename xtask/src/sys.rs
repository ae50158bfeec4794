//! The system tools the tests and the demo use, and installing the missing ones.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What to look for, and the Debian package that provides it.
enum Probe {
    /// An executable in PATH (or an sbin directory).
    Tool(&'static str),
    /// A file (headers).
    File(&'static str),
}

const PACKAGES: &[(Probe, &str)] = &[
    (Probe::Tool("ip"), "iproute2"),
    (Probe::Tool("ping"), "iputils-ping"),
    (Probe::Tool("nft"), "nftables"),
    (Probe::Tool("ethtool"), "ethtool"),
    (Probe::Tool("tcpdump"), "tcpdump"),
    (Probe::Tool("clang"), "clang"),
    // bpf/bpf_helpers.h for ebpf/*.c
    (Probe::File("/usr/include/bpf/bpf_helpers.h"), "libbpf-dev"),
    (Probe::Tool("setpriv"), "util-linux"),
    (Probe::Tool("curl"), "curl"),
    (Probe::Tool("python3"), "python3"),
];

/// Effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Finds an executable in PATH, then in the sbin directories a non-login PATH may lack.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(tool))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// `tool` can be run.
pub fn have_tool(tool: &str) -> bool {
    find_tool(tool).is_some()
}

/// Debian packages whose probe is missing.
fn missing_packages() -> Vec<&'static str> {
    let mut v: Vec<&str> = PACKAGES
        .iter()
        .filter(|(probe, _)| match probe {
            Probe::Tool(t) => !have_tool(t),
            Probe::File(f) => !Path::new(f).exists(),
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    v.dedup();
    v
}

/// As root on Debian, installs the packages of the missing tools with apt-get and says
/// which. Elsewhere, lists what is missing and carries on (tests skip with a reason).
pub fn ensure_packages() -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    let debian = Path::new("/etc/debian_version").exists() && have_tool("apt-get");
    if !is_root() || !debian {
        println!(
            "xtask: missing system packages (not installing: {}): {}",
            if debian { "not root" } else { "not Debian" },
            missing.join(" ")
        );
        return Ok(());
    }
    println!("xtask: installing missing packages: {}", missing.join(" "));
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)?;
    let still = missing_packages();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    println!("xtask: installed {}", missing.join(" "));
    Ok(())
}

/// `apt-get ARGS`, non-interactive, without stdin.
pub fn apt(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs a command; fails with its stderr unless it succeeds.
pub fn must(argv: &[&str]) -> Result<()> {
    xstack_testnet::run_ok(argv)?;
    Ok(())
}
