//! `cargo xtask conformance`: packetdrill scripts against xstack, in-process.
//!
//! Builds packetdrill (from `$XSTACK_PACKETDRILL`, or the conformance data checked out
//! beside the workspace) in a copy under `target/packetdrill/`, builds the
//! `xstack-packetdrill` shared object, and runs every `.pkt` script of each suite with
//! `packetdrill --so_filename=...`: the stack is a simulator on a virtual clock inside
//! packetdrill's process, so no packet reaches any network. Scripts' shell commands
//! (backticks) find stubs first in `PATH`: `sysctl` is logged for the shim, which
//! translates what it can (`stack/packetdrill/src/sysctl.rs`), `sockstat` prints the
//! socket table the shim keeps (`stack/packetdrill/src/sockstat.rs`), `tcpdrop` is a
//! no-op, the other FreeBSD tools fail with a message; none reaches the host. Scripts
//! in nplab packetdrill's dialect are rewritten first ([`rewrite`]), or skipped with
//! the reason when upstream packetdrill has no equivalent.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{cargo, sys, workspace_root};

pub mod expect;

/// Options of `cargo xtask conformance`.
#[derive(clap::Args)]
#[command(
    after_help = "Every script is reported pass, fail (with the first line of \
packetdrill's error) or skip (IPv6: the stack is IPv4-only; nplab-only syntax or FreeBSD-only \
options upstream packetdrill lacks; or a failure in a script that set a sysctl the shim cannot \
translate, or that sends to a socket upstream packetdrill gives no addresses). The results are \
compared with an expectations file (--expect, default tests/conformance/expected.json for the \
default suite and profile): the command exits non-zero on a regression (expected pass, now fail \
or skip). See docs/conformance.md."
)]
pub struct ConformanceArgs {
    /// A directory of .pkt scripts, searched recursively (repeatable). Default: the
    /// FreeBSD tcp-testsuite of the conformance data beside the workspace.
    #[arg(long = "suite", value_name = "DIR")]
    pub suites: Vec<PathBuf>,
    /// Only scripts whose path under the suite (or file name) matches this glob (`*`, `?`).
    #[arg(long, value_name = "GLOB")]
    pub filter: Option<String>,
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Scripts run at once (default: the number of CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Seconds of real time a script may take before it is killed and failed.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Whose defaults the scripts assume: `freebsd` (the FreeBSD suite: its TCP option
    /// layout and window scale) or `linux` (upstream packetdrill scripts; xstack's own
    /// defaults).
    #[arg(long, default_value = "freebsd", value_parser = ["freebsd", "linux"])]
    pub profile: String,
    /// Compare with this expectations file (default: tests/conformance/expected.json when
    /// running the default suite with the freebsd profile); exit non-zero on a regression.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// Do not compare with any expectations file.
    #[arg(long, conflicts_with = "expect")]
    pub no_expect: bool,
    /// Write this run's outcomes as the expectations file FILE (keeping its `flaky`
    /// entries) instead of comparing.
    #[arg(long, value_name = "FILE")]
    pub write_expected: Option<PathBuf>,
    /// Only rewrite the generated part of docs/conformance.md from
    /// tests/conformance/expected.json (no run).
    #[arg(long)]
    pub write_doc: bool,
}

/// How one script went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// One script's result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScriptResult {
    /// The suite directory.
    pub suite: String,
    /// The path under the suite.
    pub script: String,
    /// The first directory under the suite ("." for scripts at its top).
    pub folder: String,
    pub outcome: Outcome,
    /// The first line of packetdrill's error (or why it was skipped).
    pub reason: String,
    pub millis: u64,
    /// Calls and options the shim does not support that the script used.
    pub unsupported: Vec<String>,
}

/// The conformance data directory beside the workspace (`<parent>/shared/conformance`).
fn default_data() -> PathBuf {
    let root = workspace_root();
    root.parent()
        .unwrap_or(&root)
        .join("shared")
        .join("conformance")
}

pub fn run(args: ConformanceArgs) -> Result<()> {
    if args.write_doc {
        return expect::write_doc();
    }
    let began = Instant::now();
    let packetdrill = build_packetdrill()?;
    let so = build_shim()?;
    let bin = write_stubs()?;
    let suites = if args.suites.is_empty() {
        vec![default_data().join("tcp-testsuite")]
    } else {
        args.suites.clone()
    };
    let mut scripts = Vec::new();
    for suite in &suites {
        if !suite.is_dir() {
            bail!(
                "suite {} is not a directory (pass --suite DIR)",
                suite.display()
            );
        }
        for p in find_scripts(suite)? {
            let rel = p
                .strip_prefix(suite)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let keep = args.filter.as_deref().is_none_or(|g| {
                glob_match(g, &rel) || name.as_deref().is_some_and(|n| glob_match(g, n))
            });
            if keep {
                scripts.push((suite.clone(), rel, p));
            }
        }
    }
    let runner = Runner {
        packetdrill,
        so,
        path: format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
        timeout: Duration::from_secs(args.timeout),
        so_flags: format!("profile={}", args.profile),
        profile: args.profile.clone(),
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let results = run_all(&runner, scripts, jobs);
    if let Some(f) = &args.json {
        std::fs::write(f, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", f.display()))?;
    }
    print_summary(&results, began.elapsed());
    expect::after_run(&args, &results)
}

/// packetdrill's source: `$XSTACK_PACKETDRILL`, else the conformance data's copy.
fn packetdrill_source() -> Result<PathBuf> {
    let src = match std::env::var_os("XSTACK_PACKETDRILL") {
        Some(p) => PathBuf::from(p),
        None => default_data().join("packetdrill"),
    };
    if !src.join("packetdrill.h").is_file() {
        bail!(
            "no packetdrill source at {}: set $XSTACK_PACKETDRILL to a packetdrill checkout's gtests/net/packetdrill",
            src.display()
        );
    }
    Ok(src)
}

/// Builds packetdrill in `target/packetdrill/src` (a copy: the source may be
/// read-only) unless the copy is already built from the same source.
fn build_packetdrill() -> Result<PathBuf> {
    let src = packetdrill_source()?;
    let dir = workspace_root().join("target/packetdrill");
    let work = dir.join("src");
    let bin = work.join("packetdrill");
    let stamp = dir.join("source");
    let src_path = src
        .canonicalize()
        .unwrap_or(src.clone())
        .display()
        .to_string();
    // The stamp names the source and the patches: a change of either rebuilds.
    let src_s = format!("{src_path}\n{PATCHES_VERSION}");
    if bin.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(src_s.as_str()) {
        return Ok(bin);
    }
    for tool in ["bison", "flex"] {
        if sys::have_tool(tool) {
            continue;
        }
        if !sys::is_root() {
            bail!("building packetdrill needs bison and flex: install them (apt-get install bison flex)");
        }
        println!("xtask: installing bison and flex");
        sys::must(&["apt-get", "install", "-y", "bison", "flex"])?;
    }
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    println!(
        "xtask: building packetdrill from {src_path} in {}",
        work.display()
    );
    let copy = format!("{}/.", src.display());
    sys::must(&["cp", "-r", &copy, &work.display().to_string()])?;
    // The copy may carry the source's read-only permissions.
    sys::must(&["chmod", "-R", "u+w", &work.display().to_string()])?;
    patch_packetdrill(&work)?;
    for argv in [&["./configure"][..], &["make", "packetdrill"][..]] {
        let out = Command::new(argv[0])
            .args(&argv[1..])
            .current_dir(&work)
            .output()
            .with_context(|| format!("running {argv:?}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            bail!("packetdrill build failed at {argv:?}: {last}");
        }
    }
    std::fs::write(&stamp, &src_s)?;
    Ok(bin)
}

/// Bumped when [`patch_packetdrill`] changes, so a built copy is rebuilt.
const PATCHES_VERSION: &str = "patches 3";

/// The three changes made to packetdrill's source (each replaces one line):
///
/// - with `--so_filename`, a script's Python blocks read `TCP_INFO` (and
///   `TCP_CC_INFO`, `SO_MEMINFO`) through the shared object's `getsockopt`, as its
///   system-call events do; upstream calls the kernel's `getsockopt` on the descriptor
///   number, which names nothing in the kernel then;
/// - likewise, the sockets a script leaves open are closed at its end through the
///   shared object's `close` (upstream closes the descriptor number in the kernel and
///   dies with "close: Bad file descriptor": upstream's own scripts leave sockets open);
/// - a successful `bind` gives the socket its live addresses (the bound one and the
///   remote one the script's packets use), as nplab's packetdrill does: upstream sets
///   them only at `listen`/`connect`/a SYN, so a packet to a socket that is only bound
///   (the suite's CLOSED-state scripts) went from and to 0.0.0.0.
fn patch_packetdrill(work: &Path) -> Result<()> {
    patch_file(
        &work.join("code.c"),
        "int result = getsockopt(fd, level, opt_name, data, &opt_len);",
        "int result = state->so_instance ?\n\
         \t\tstate->so_instance->ifc.getsockopt(state->so_instance->ifc.userdata,\n\
         \t\t\tfd, level, opt_name, data, &opt_len) :\n\
         \t\tgetsockopt(fd, level, opt_name, data, &opt_len);",
    )?;
    patch_file(
        &work.join("run_system_call.c"),
        "\t\tresult = bind(live_fd, (struct sockaddr *)&live_addr,\n\t\t\t      live_addrlen);\n\t}\n",
        "\t\tresult = bind(live_fd, (struct sockaddr *)&live_addr,\n\t\t\t      live_addrlen);\n\t}\n\
         \t/* xstack runner: a bound socket gets its live addresses. */\n\
         \tstruct socket *bound = fd_to_socket(find_by_script_fd(state, script_fd));\n\
         \tif (result == 0 && bound != NULL && bound->live.local.port == 0) {\n\
         \t\tbound->live.local.ip = state->config->live_local_ip;\n\
         \t\tbound->live.local.port = htons(state->config->live_bind_port);\n\
         \t\tbound->live.remote.ip = state->config->live_remote_ip;\n\
         \t\tbound->live.remote.port = htons(state->config->live_connect_port);\n\
         \t}\n",
    )?;
    patch_file(
        &work.join("socket.c"),
        "\t\tif (close(fd->live_fd))\n",
        "\t\tif (state->so_instance ?\n\
         \t\t    state->so_instance->ifc.close(state->so_instance->ifc.userdata,\n\
         \t\t\t\t\t\t   fd->live_fd) :\n\
         \t\t    close(fd->live_fd))\n",
    )
}

/// Replaces the one occurrence of `old` in `file` with `new`; an error when `old` is
/// not there exactly once (a packetdrill version the runner does not know).
fn patch_file(file: &Path, old: &str, new: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if text.matches(old).count() != 1 {
        bail!(
            "packetdrill's {} does not have `{}` once: this packetdrill version is not one the runner knows how to patch",
            file.display(),
            old.lines().next().unwrap_or(old).trim()
        );
    }
    std::fs::write(file, text.replace(old, new))?;
    Ok(())
}

/// Builds the shared object (release) and returns its path.
fn build_shim() -> Result<PathBuf> {
    let status = Command::new(cargo())
        .current_dir(workspace_root())
        .args(["build", "-p", "xstack-packetdrill", "--release"])
        .status()?;
    if !status.success() {
        bail!("cargo build -p xstack-packetdrill --release failed ({status})");
    }
    let so = workspace_root().join("target/release/libxstack_packetdrill.so");
    if !so.is_file() {
        bail!("{} was not built", so.display());
    }
    Ok(so)
}

/// Stubs for the FreeBSD commands scripts run in backticks, so none reaches the
/// host: `sysctl` is logged for the shim, `sockstat` prints the shim's socket table,
/// `tcpdrop` is accepted without effect, the others fail saying they are missing.
fn write_stubs() -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let bin = workspace_root().join("target/conformance/bin");
    std::fs::create_dir_all(&bin)?;
    // `sysctl -w key=value`: logged for the shim (`$XSTACK_SYSCTL_LOG`), which
    // translates what it can (and lists the rest when it exits).
    let ignore = "#!/bin/sh\n[ \"$1\" = -w ] && shift\n[ -n \"$XSTACK_SYSCTL_LOG\" ] && echo \"$*\" >> \"$XSTACK_SYSCTL_LOG\"\nexit 0\n";
    let mut stubs = vec![
        ("sysctl".to_string(), ignore.to_string()),
        ("sockstat".to_string(), SOCKSTAT_STUB.to_string()),
        ("tcpdrop".to_string(), TCPDROP_STUB.to_string()),
    ];
    for tool in ["kldstat", "kldload", "setkey"] {
        stubs.push((
            tool.to_string(),
            format!("#!/bin/sh\necho \"xstack conformance: no translation for FreeBSD {tool} $*\" >&2\nexit 1\n"),
        ));
    }
    for (name, body) in stubs {
        let p = bin.join(name);
        std::fs::write(&p, body)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(bin)
}

/// `sockstat`: the shim keeps the stack's socket table in `$XSTACK_SOCKSTAT`, in
/// sockstat's columns (`USER COMMAND PID FD PROTO LOCAL FOREIGN STATE`, FreeBSD state
/// names, command `packetdril`; see `stack/packetdrill/src/sockstat.rs`); the stub
/// filters it as the options ask: `-4`/`-6` (the stack is IPv4: `-6` alone lists
/// nothing), `-P tcp`, `-p PORT,...` (local or foreign port), `-c` connected only,
/// `-l` listening only, `-s` keeps the state column, `-q` drops the header; the rest
/// (`-n`, `-N`, ...) change nothing here.
pub const SOCKSTAT_STUB: &str = r#"#!/bin/sh
four=0; six=0; proto=; ports=; conn=0; listen=0; state=0; quiet=0
while getopts 46cCf:ij:lLnNp:P:qsSuUvw o; do
  case $o in
    4) four=1;; 6) six=1;; c) conn=1;; l) listen=1;; p) ports=$OPTARG;;
    P) proto=$OPTARG;; s) state=1;; q) quiet=1;; *) ;;
  esac
done
if [ -z "$XSTACK_SOCKSTAT" ] || [ ! -r "$XSTACK_SOCKSTAT" ]; then
  echo "xstack conformance: sockstat: no socket table (\$XSTACK_SOCKSTAT)" >&2; exit 1
fi
awk -v four=$four -v six=$six -v proto="$proto" -v ports="$ports" -v conn=$conn     -v listen=$listen -v state=$state -v quiet=$quiet '
function port(a,  i) { i = match(a, /:[^:]*$/); return substr(a, i + 1) }
NR == 1 { if (!quiet) { if (!state) sub(/ +PATH STATE +CONN STATE$/, ""); print } next }
{
  if (six && !four) next
  if (proto != "" && index($5, proto) != 1) next
  if (conn && $8 == "LISTEN") next
  if (listen && $8 != "LISTEN") next
  if (ports != "") {
    n = split(ports, p, ","); ok = 0
    for (i = 1; i <= n; i++) if (port($6) == p[i] || port($7) == p[i]) ok = 1
    if (!ok) next
  }
  line = $0
  if (!state) sub(/ +[A-Z_0-9]+$/, "", line)
  print line
}' "$XSTACK_SOCKSTAT"
"#;

/// `tcpdrop`: accepted and ignored (the suite runs `tcpdrop -s TIME_WAIT` only to
/// clean up at a script's end; the stack goes with the script).
const TCPDROP_STUB: &str = "#!/bin/sh\nexit 0\n";

/// Every `.pkt` under `dir`, sorted.
fn find_scripts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pkt") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Shell-style glob: `*` any run of characters, `?` one character.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < s.len() {
        if i < p.len() && (p[i] == '?' || p[i] == s[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(st) = star {
            i = st + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

struct Runner {
    packetdrill: PathBuf,
    so: PathBuf,
    /// `--so_flags` for the stack (its profile).
    so_flags: String,
    /// The profile (which `#ifdef` branch of a script runs).
    profile: String,
    path: String,
    timeout: Duration,
}

fn run_all(r: &Runner, scripts: Vec<(PathBuf, String, PathBuf)>, jobs: usize) -> Vec<ScriptResult> {
    let queue = Arc::new(Mutex::new(
        scripts.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    let results = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for _ in 0..jobs {
            sc.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some((i, (suite, rel, path))) = next else {
                    return;
                };
                let res = run_one(r, &suite, &rel, &path);
                println!("{}", line_of(&res));
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, res));
            });
        }
    });
    let mut v = results.into_inner().unwrap_or_else(|e| e.into_inner());
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, r)| r).collect()
}

fn line_of(r: &ScriptResult) -> String {
    let tag = match r.outcome {
        Outcome::Pass => "pass",
        Outcome::Fail => "FAIL",
        Outcome::Skip => "skip",
    };
    if r.reason.is_empty() {
        format!("{tag} {}", r.script)
    } else {
        format!("{tag} {}: {}", r.script, r.reason)
    }
}

fn is_ipv6(path: &Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().any(|l| l.trim() == "--ip_version=ipv6")
}

fn run_one(r: &Runner, suite: &Path, rel: &str, path: &Path) -> ScriptResult {
    let folder = Path::new(rel)
        .components()
        .next()
        .filter(|_| Path::new(rel).components().count() > 1)
        .map_or(".".to_string(), |c| {
            c.as_os_str().to_string_lossy().into_owned()
        });
    let mut res = ScriptResult {
        suite: suite.display().to_string(),
        script: rel.to_string(),
        folder,
        outcome: Outcome::Skip,
        reason: String::new(),
        millis: 0,
        unsupported: Vec::new(),
    };
    if is_ipv6(path) {
        res.reason = "IPv6 (the stack is IPv4-only)".into();
        return res;
    }
    let t = Instant::now();
    let (outcome, reason) = match execute(r, path) {
        Ok(v) => v,
        Err(e) => (Outcome::Fail, format!("runner: {e:#}")),
    };
    let out = read_output(path).unwrap_or_default();
    res.unsupported = out
        .lines()
        .filter_map(|l| l.strip_prefix("xstack-packetdrill: unsupported call: "))
        .map(str::to_string)
        .collect();
    res.millis = t.elapsed().as_millis() as u64;
    res.outcome = outcome;
    res.reason = reason;
    res
}

/// Runs packetdrill on one script (its [`rewrite`] copy); the outcome and the first
/// error line (or why it was skipped). A failed script that set a sysctl the shim
/// has no translation for is a skip: it assumed a setting the stack cannot take.
fn execute(r: &Runner, path: &Path) -> Result<(Outcome, String)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Every per-script file (rewritten script, output, sysctls, sockstat) goes here; on a
    // fresh clone it does not exist yet.
    let out = out_path(path);
    std::fs::create_dir_all(out.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("creating {}", out.display()))?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let script = match rewrite(&text, &r.profile) {
        Ok(t) => {
            let p = out_path(path).with_extension("pkt");
            std::fs::write(&p, t)?;
            p
        }
        Err(why) => return Ok((Outcome::Skip, why)),
    };
    let out_file = tempfile(path)?;
    let sysctls = sysctl_log(path)?;
    let untranslated = PathBuf::from(format!("{}.untranslated", sysctls.display()));
    let _ = std::fs::remove_file(&untranslated);
    let sockstat = out_path(path).with_extension("sockstat");
    let _ = std::fs::remove_file(&sockstat);
    let mut child = Command::new(&r.packetdrill)
        .arg(format!("--so_filename={}", r.so.display()))
        .arg(format!("--so_flags={}{}", r.so_flags, mtu_flag(&text)))
        .arg("--local_ip=192.168.0.1")
        .arg(&script)
        .current_dir(dir)
        .env("PATH", &r.path)
        .env("XSTACK_SYSCTL_LOG", &sysctls)
        .env("XSTACK_SOCKSTAT", &sockstat)
        .stdin(Stdio::null())
        .stdout(out_file.try_clone()?)
        .stderr(out_file.try_clone()?)
        .spawn()
        .context("starting packetdrill")?;
    let began = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if began.elapsed() > r.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(out_file);
    let out = read_output(path)?;
    let reason = match status {
        None => format!("timeout after {}s", r.timeout.as_secs()),
        Some(s) if s.success() => return Ok((Outcome::Pass, String::new())),
        Some(s) => {
            let mut reason = first_error(&out).unwrap_or_else(|| format!("packetdrill {s}"));
            if out.contains("xstack-packetdrill: the stack sent nothing") {
                reason.push_str(" [the stack sent nothing]");
            }
            reason
        }
    };
    let missing = std::fs::read_to_string(&untranslated).unwrap_or_default();
    let missing: Vec<&str> = missing.split_whitespace().collect();
    if !missing.is_empty() {
        return Ok((
            Outcome::Skip,
            format!(
                "no translation for sysctl {} (failed: {reason})",
                missing.join(", ")
            ),
        ));
    }
    Ok((Outcome::Fail, reason))
}

/// The script's `--mtu=N` (packetdrill sets it on its tun device, which the in-process
/// stack does not have) as the shim's `,mtu=N`; empty when it sets none.
pub fn mtu_flag(text: &str) -> String {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("--mtu="))
        .filter_map(|n| n.trim().parse::<u32>().ok())
        .next_back()
        .map_or(String::new(), |n| format!(",mtu={n}"))
}

/// nplab packetdrill's spellings (the FreeBSD suite's dialect) that upstream
/// packetdrill cannot parse, rewritten in this one place: the copy packetdrill runs
/// keeps every line where it was (removed lines become `//` comments), so errors
/// name the original line numbers.
///
/// - `#ifdef NAME` ... `#endif` (and `#ifndef`, `#else`): the branch for the profile
///   stays (`FreeBSD` with `--profile freebsd`, `STANDARD` with `linux`), the other
///   is commented out;
/// - ICMP codes upstream has no name for: `ttl_exceeded_in_transit` -> `code_0`,
///   `frag_reass_exceeded` -> `code_1` (RFC 792's time-exceeded codes);
/// - FreeBSD's `TCP_KEEPINIT` and `TCP_NOOPT`, which packetdrill's Linux build cannot
///   name: the numbers the shared object takes them by (128, FreeBSD's own, for
///   `TCP_KEEPINIT`; 0x10008 for `TCP_NOOPT`, whose FreeBSD number 8 is Linux's
///   `TCP_WINDOW_CLAMP`);
/// - in Python blocks, FreeBSD's `TCPI_*` state names: Linux's (see [`TCPI_STATES`]).
///
/// `Err` is why the script is skipped: what upstream packetdrill has no equivalent
/// for (UDP encapsulation, TCP MD5, nplab's `!` packet marker, FreeBSD-only socket
/// options).
pub fn rewrite(text: &str, profile: &str) -> std::result::Result<String, String> {
    let want = if profile == "linux" {
        "STANDARD"
    } else {
        "FreeBSD"
    };
    let mut out = String::with_capacity(text.len() + 256);
    // Per open `#if`: whether its current branch is kept.
    let mut conds: Vec<bool> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        let n = i + 1;
        let code = !t.starts_with("//");
        let directive = t.split_whitespace().collect::<Vec<_>>();
        match directive.as_slice() {
            ["#ifdef", name] | ["#ifndef", name] => {
                conds.push((*name == want) == (directive[0] == "#ifdef"));
                out.push_str(&format!("// xstack rewrite: {t}\n"));
                continue;
            }
            ["#else"] => {
                let Some(c) = conds.last_mut() else {
                    return Err(format!("line {n}: #else without #ifdef"));
                };
                *c = !*c;
                out.push_str(&format!("// xstack rewrite: {t}\n"));
                continue;
            }
            ["#endif"] => {
                if conds.pop().is_none() {
                    return Err(format!("line {n}: #endif without #ifdef"));
                }
                out.push_str(&format!("// xstack rewrite: {t}\n"));
                continue;
            }
            _ => {}
        }
        if !conds.iter().all(|&c| c) {
            out.push_str(&format!("// xstack rewrite (other branch): {line}\n"));
            continue;
        }
        if code {
            for (what, why) in [
                ("udp_encapsulation", "nplab's udp_encapsulation"),
                ("tcp_md5", "the TCP MD5 option"),
                ("TCP_MD5SIG", "the TCP MD5 option"),
                (
                    "TCP_RACK_",
                    "FreeBSD's RACK stack options, unknown to packetdrill's Linux build,",
                ),
            ] {
                if line.contains(what) {
                    return Err(format!(
                        "line {n}: {why} has no upstream packetdrill equivalent"
                    ));
                }
            }
            let packet = t.contains(" > ") || t.contains(" < ");
            if packet && line.contains(")!") {
                return Err(format!(
                    "line {n}: nplab's `!` packet marker has no upstream packetdrill equivalent"
                ));
            }
            if packet && line.contains(" ...(") {
                return Err(format!(
                    "line {n}: nplab's `...` sequence-number wildcard has no upstream packetdrill equivalent"
                ));
            }
        }
        let mut line = line
            .replace("ttl_exceeded_in_transit", "code_0")
            .replace("frag_reass_exceeded", "code_1")
            .replace("TCP_KEEPINIT", "128")
            .replace("TCP_NOOPT", "65544");
        if line.contains("%{") {
            for (freebsd, linux) in TCPI_STATES {
                line = line.replace(freebsd, linux);
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    if !conds.is_empty() {
        return Err("#ifdef without #endif".into());
    }
    Ok(out)
}

/// nplab packetdrill's names for `tcpi_state` values (FreeBSD's TCPS_* order) and the
/// Linux names upstream packetdrill defines for the same states; the shared object
/// reports `TCP_INFO` in Linux's layout and numbering.
const TCPI_STATES: [(&str, &str); 11] = [
    ("TCPI_CLOSED", "TCP_CLOSE"),
    ("TCPI_LISTEN", "TCP_LISTEN"),
    ("TCPI_SYN_SENT", "TCP_SYN_SENT"),
    ("TCPI_SYN_RECEIVED", "TCP_SYN_RECV"),
    ("TCPI_ESTABLISHED", "TCP_ESTABLISHED"),
    ("TCPI_CLOSE_WAIT", "TCP_CLOSE_WAIT"),
    ("TCPI_FIN_WAIT_1", "TCP_FIN_WAIT1"),
    ("TCPI_CLOSING", "TCP_CLOSING"),
    ("TCPI_LAST_ACK", "TCP_LAST_ACK"),
    ("TCPI_FIN_WAIT_2", "TCP_FIN_WAIT2"),
    ("TCPI_TIME_WAIT", "TCP_TIME_WAIT"),
];

fn out_path(script: &Path) -> PathBuf {
    let name = script.to_string_lossy().replace(['/', ' '], "_");
    workspace_root()
        .join("target/conformance/out")
        .join(name + ".log")
}

/// A fresh file for the script's sysctls (see [`write_stubs`]).
fn sysctl_log(script: &Path) -> Result<PathBuf> {
    let p = out_path(script).with_extension("sysctl");
    std::fs::create_dir_all(p.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(&p, "")?;
    Ok(p)
}

fn tempfile(script: &Path) -> Result<std::fs::File> {
    let p = out_path(script);
    std::fs::create_dir_all(p.parent().unwrap_or(Path::new(".")))?;
    Ok(std::fs::File::create(p)?)
}

/// The captured output (left in target/conformance/out for a look afterwards).
fn read_output(script: &Path) -> Result<String> {
    Ok(String::from_utf8_lossy(&std::fs::read(out_path(script))?).into_owned())
}

/// packetdrill's error: the first line naming the script (`FILE:LINE: error ...`),
/// with the script path cut, else the first line that is not a stub's or the shim's
/// log.
pub fn first_error(out: &str) -> Option<String> {
    let noise = |l: &str| {
        l.trim().is_empty()
            || l.starts_with("xstack-packetdrill: unsupported")
            || l.starts_with("xstack-packetdrill: the stack sent nothing")
            || l.starts_with("xstack-packetdrill: untranslated")
    };
    let named = out.lines().find(|l| l.contains(".pkt:"));
    let line = named.or_else(|| out.lines().find(|l| !noise(l)))?;
    let line = match line.find(".pkt:") {
        Some(i) => line[i + 5..].trim(),
        None => line.trim(),
    };
    Some(line.chars().take(200).collect())
}

fn print_summary(results: &[ScriptResult], took: Duration) {
    let mut folders: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for r in results {
        let c = folders.entry(&r.folder).or_default();
        c[r.outcome as usize] += 1;
        if r.outcome == Outcome::Fail {
            *reasons.entry(reason_key(&r.reason)).or_default() += 1;
        }
    }
    let mut gaps: BTreeMap<&str, usize> = BTreeMap::new();
    for u in results.iter().flat_map(|r| &r.unsupported) {
        *gaps.entry(u).or_default() += 1;
    }
    if !gaps.is_empty() {
        println!("\nunsupported calls and options (scripts using them):");
        for (k, n) in &gaps {
            println!("{n:5}  {k}");
        }
    }
    let mut top: Vec<_> = reasons.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    println!("\nmost common failures:");
    for (k, n) in top.iter().take(15) {
        println!("{n:5}  {k}");
    }
    println!(
        "\n{:<24} {:>6} {:>6} {:>6}",
        "folder", "pass", "fail", "skip"
    );
    let mut total = [0usize; 3];
    for (f, c) in &folders {
        println!("{f:<24} {:>6} {:>6} {:>6}", c[0], c[1], c[2]);
        for i in 0..3 {
            total[i] += c[i];
        }
    }
    println!(
        "{:<24} {:>6} {:>6} {:>6}",
        "total", total[0], total[1], total[2]
    );
    println!("({} scripts in {:.1}s)", results.len(), took.as_secs_f64());
    println!(
        "conformance: {} passed, {} failed, {} skipped",
        total[0], total[1], total[2]
    );
}

/// A failure reason without its line number and numbers, to group alike failures.
pub fn reason_key(reason: &str) -> String {
    let r = reason
        .split_once(": ")
        .filter(|(l, _)| l.chars().all(|c| c.is_ascii_digit()));
    let mut r = r.map_or(reason, |(_, rest)| rest);
    // Group by what was expected, not by what the stack did.
    for cut in [" vs actual", " actual:"] {
        if let Some(i) = r.find(cut) {
            r = &r[..i];
        }
    }
    let mut out = String::new();
    let mut last_digit = false;
    for ch in r.chars().take(100) {
        if ch.is_ascii_digit() {
            if !last_digit {
                out.push('N');
            }
            last_digit = true;
        } else {
            out.push(ch);
            last_digit = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nplab_spellings_are_rewritten_in_place() {
        let text = "a\n#ifdef STANDARD\n+0 > R. 1:1(0)\n#endif\n#ifdef FreeBSD\n+0 > . 1:1(0)\n#else\nx\n#endif\n\
                    +0 < icmp time_exceeded ttl_exceeded_in_transit [0:0(0)]\n";
        let out = rewrite(text, "freebsd").unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), text.lines().count());
        assert!(lines[2].starts_with("//"));
        assert_eq!(lines[5], "+0 > . 1:1(0)");
        assert!(lines[7].starts_with("//"));
        assert_eq!(lines[9], "+0 < icmp time_exceeded code_0 [0:0(0)]");
        let linux = rewrite(text, "linux").unwrap();
        assert_eq!(linux.lines().nth(2), Some("+0 > R. 1:1(0)"));
        assert!(linux.lines().nth(5).unwrap().starts_with("//"));
        assert_eq!(linux.lines().nth(7), Some("x"));
        assert_eq!(
            rewrite(
                "+0 setsockopt(3, IPPROTO_TCP, TCP_NOOPT, [1], 4) = 0\n",
                "freebsd"
            )
            .unwrap(),
            "+0 setsockopt(3, IPPROTO_TCP, 65544, [1], 4) = 0\n"
        );
        assert!(rewrite(
            "+0 setsockopt(3, IPPROTO_TCP, TCP_MD5SIG, [1], 4) = 0\n",
            "freebsd"
        )
        .unwrap_err()
        .contains("MD5"));
        let py = rewrite(
            "+0 %{ assert tcpi_state == TCPI_SYN_RECEIVED }%\n",
            "freebsd",
        )
        .unwrap();
        assert_eq!(py, "+0 %{ assert tcpi_state == TCP_SYN_RECV }%\n");
        assert!(rewrite("+0 > (tos 0x20) R. 0:0(0)! ack 1 win 0\n", "freebsd").is_err());
        assert!(rewrite("// udp_encapsulation in a comment\n", "freebsd").is_ok());
        assert!(rewrite("#ifdef FreeBSD\n", "freebsd").is_err());
        assert!(rewrite(
            "+0 listen(3, 1) = 0\n+0 > S. ...(0) ack 1 win 0\n",
            "freebsd"
        )
        .is_err());
        assert_eq!(mtu_flag("--ip_version=ipv4\n--mtu=9000\n"), ",mtu=9000");
        assert_eq!(mtu_flag("--ip_version=ipv4\n"), "");
    }

    #[test]
    fn the_sockstat_stub_filters_the_table() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xstack-sockstat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stub = dir.join("sockstat");
        std::fs::write(&stub, SOCKSTAT_STUB).unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let table = dir.join("table");
        std::fs::write(
            &table,
            "USER     COMMAND    PID   FD  PROTO  LOCAL ADDRESS         FOREIGN ADDRESS       PATH STATE   CONN STATE\n\
             root     packetdril 7     3   tcp4   192.168.0.1:8080      *:*                   LISTEN\n\
             ?        ?          ?     ?   tcp4   192.168.0.1:8080      192.0.2.1:5000        SYN_RCVD\n\
             root     packetdril 7     4   tcp4   192.168.0.1:1234      192.0.2.1:80          TIME_WAIT\n",
        )
        .unwrap();
        let run = |args: &[&str]| {
            let o = Command::new(&stub)
                .args(args)
                .env("XSTACK_SOCKSTAT", &table)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8(o.stdout).unwrap()
        };
        let count = |out: &str, w: &str| out.lines().filter(|l| l.contains(w)).count();
        let out = run(&["-4", "-P", "tcp", "-s", "-p", "8080"]);
        assert_eq!(count(&out, "SYN_RCVD"), 1);
        assert_eq!(count(&out, "TIME_WAIT"), 0);
        assert_eq!(out.lines().count(), 3);
        let out = run(&["-4", "-P", "tcp", "-s"]);
        assert_eq!(count(&out, "packetdril"), 2);
        assert_eq!(count(&out, "TIME_WAIT"), 1);
        let out = run(&["-4", "-c"]);
        assert_eq!(count(&out, "LISTEN") + count(&out, "TIME_WAIT"), 0);
        assert_eq!(count(&out, "CONN STATE"), 0);
        assert_eq!(run(&["-6", "-q"]), "");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("*.pkt", "snd-syn/a-ipv4.pkt"));
        assert!(glob_match("snd-syn/*", "snd-syn/a.pkt"));
        assert!(!glob_match("snd-syn/*", "rcv-icmp/a.pkt"));
        assert!(glob_match("*ipv4*", "x-ipv4.pkt"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn the_first_error_names_the_script_line() {
        let out = "xstack-packetdrill: untranslated sysctls: a\n\
                   /x/s.pkt:57: error handling packet: bad outbound TCP options\n\
                   script packet: ...\n";
        assert_eq!(
            first_error(out).as_deref(),
            Some("57: error handling packet: bad outbound TCP options")
        );
        assert_eq!(first_error("\nboom\n").as_deref(), Some("boom"));
        assert_eq!(first_error(""), None);
        assert_eq!(
            reason_key("57: error handling packet: got 12 want 3"),
            "error handling packet: got N want N"
        );
    }
}
