//! `xstack http --cwnd-trace DIR`: the server's connections record their cwnd trace from
//! the SYN on (the stack's `TcpConfig::cwnd_trace`), and each one's trace is written to
//! `DIR/conn-N-PEERADDR-PEERPORT.csv` when the server is done with it. On a download the
//! server is the sender, so the trace is the download's congestion window.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xstack::{TcpListener, TcpStream};
use xstack_tools::http::{Conn, ConnControl, Listener};

/// Wraps the server's listener: accepted connections write their trace when dropped.
pub struct TracingListener {
    inner: TcpListener,
    dir: Arc<PathBuf>,
    accepted: AtomicU64,
}

impl TracingListener {
    /// Creates `dir` (and its parents) and wraps `inner`.
    pub fn new(inner: TcpListener, dir: PathBuf) -> io::Result<TracingListener> {
        std::fs::create_dir_all(&dir)?;
        Ok(TracingListener {
            inner,
            dir: Arc::new(dir),
            accepted: AtomicU64::new(0),
        })
    }
}

impl Listener for TracingListener {
    type Stream = TracedConn;

    fn accept(&self) -> io::Result<TracedConn> {
        let s = Listener::accept(&self.inner)?;
        // Already on through the stack config; this only covers a stack started without it.
        s.set_cwnd_trace(true)?;
        let n = self.accepted.fetch_add(1, Ordering::Relaxed) + 1;
        let peer = s.peer_addr()?;
        let name = format!("conn-{n}-{}-{}.csv", peer.ip(), peer.port());
        Ok(TracedConn {
            inner: s,
            path: self.dir.join(name),
        })
    }
}

/// A server connection that writes its cwnd trace to `path` when dropped.
pub struct TracedConn {
    inner: TcpStream,
    path: PathBuf,
}

impl Drop for TracedConn {
    fn drop(&mut self) {
        let Some(t) = self.inner.take_cwnd_trace() else {
            return;
        };
        // Written to a temporary name and renamed, so a reader never sees half a file.
        let tmp = self.path.with_extension("csv.part");
        let res = std::fs::write(&tmp, t.to_csv()).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = res {
            eprintln!("xstack: warning: cwnd trace {}: {e}", self.path.display());
        } else if t.dropped() > 0 {
            eprintln!(
                "xstack: warning: cwnd trace {}: full, {} samples not recorded",
                self.path.display(),
                t.dropped()
            );
        }
    }
}

impl Read for TracedConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for TracedConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Conn for TracedConn {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Conn::set_read_timeout(&self.inner, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Conn::set_write_timeout(&self.inner, timeout)
    }
}

impl ConnControl for TracedConn {
    fn info_json(&self) -> serde_json::Value {
        self.inner.info_json()
    }
    fn set_congestion(&self, name: &str) -> io::Result<()> {
        ConnControl::set_congestion(&self.inner, name)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.inner.shutdown_write()
    }
}
