//! A helper module (hhook/khelp) written outside the stack, against its public API only:
//! it counts each connection's retransmitted segments and bytes at the `Output` hook
//! point, is registered on a stack at run time, and reports through the connection's
//! `helper_info` (what `GET /info` shows) and `with_helper_data`.
//!
//! It runs a 2 MB transfer between two simulated stacks over a link that loses 2% of
//! the frames and checks its count against the connection's own `TcpInfo`.
//!
//! ```text
//! cargo run -p xstack --features sim --example rexmit_count
//! ```

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::time::Duration;

use xstack::hhook::{Helper, HookPoint, HookPoints, OutputCtx};
use xstack::sim::{host_addr, LinkConfig, Sim};
use xstack::{TcpListener, TcpStream};

/// The helper: stateless; its per-connection data is [`Counts`].
struct RexmitCount;

/// One connection's retransmissions, as its output hook saw them.
#[derive(Debug, Default)]
struct Counts {
    segments: u64,
    bytes: u64,
}

impl Helper for RexmitCount {
    type Data = Counts;

    fn name(&self) -> &str {
        "rexmit-count"
    }

    fn hook_points(&self) -> HookPoints {
        HookPoints::of(&[HookPoint::Output])
    }

    fn new_conn_data(&self) -> Counts {
        Counts::default()
    }

    fn output(&self, c: &mut Counts, ctx: &OutputCtx) {
        if ctx.retransmit {
            c.segments += 1;
            c.bytes += ctx.len as u64;
        }
    }

    fn info_json(&self, c: &Counts) -> Option<String> {
        Some(format!(
            "{{\"segments\":{},\"bytes\":{}}}",
            c.segments, c.bytes
        ))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let link = LinkConfig {
        loss: 0.02,
        ..LinkConfig::default()
    };
    let sim = Sim::new(5, link, 1).spawn();
    sim.net(0).register_helper(RexmitCount)?;
    let addr = SocketAddrV4::new(host_addr(1), 80);
    let listener = TcpListener::bind(sim.net(1), addr)?;
    let total = 2 << 20;
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(got),
                n => got += n,
            }
        }
    });
    let mut c = TcpStream::connect_timeout(sim.net(0), addr, Duration::from_secs(10))?;
    c.write_all(&vec![0x5a; total])?;
    c.shutdown(std::net::Shutdown::Write)?;
    let got = reader.join().map_err(|_| "reader panicked")??;
    assert_eq!(got, total);

    let info = c.info();
    let (segments, bytes) = c
        .with_helper_data("rexmit-count", |d: &Counts| (d.segments, d.bytes))
        .ok_or("no helper data")?;
    println!("helpers on the connection: {:?}", c.helpers());
    println!("helper_info: {:?}", c.helper_info());
    println!(
        "retransmitted: {segments} segments, {bytes} bytes (TcpInfo: {} segments, {} bytes)",
        info.retransmits, info.bytes_retrans
    );
    // The hook sees each retransmission once, as the control block counts it.
    assert_eq!(bytes, info.bytes_retrans);
    Ok(())
}
