//! A small application on xstack's socket API: a line-echo server that reports each
//! connection's `tcp_info` when it closes.
//!
//! ```sh
//! sudo cargo run --release --example echo -- vstk 198.18.0.1/24 7
//! # from the Linux side:  nc 198.18.0.1 7
//! ```
//!
//! It brings a stack up on the interface, listens, and serves each connection from its
//! own thread with the blocking `std::io` API: the handles are usable from any thread.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};

use xstack::Ipv4Cidr;
use xstack::{Stack, StackConfig, TcpListener, TcpStream};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(iface), Some(addr)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: echo IFACE A.B.C.D/NN [PORT]");
    };
    let addr: Ipv4Cidr = addr.parse()?;
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(7);

    let mut cfg = StackConfig::new(&iface, vec![addr]);
    cfg.idle = xstack::IdleMode::Sleep;
    let stack = Stack::start(cfg)?;
    let listener = TcpListener::bind(&stack, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
    eprintln!(
        "echo: listening on {addr} port {port}; congestion control: {:?}",
        stack.net().congestion_control().available()
    );

    std::thread::scope(|s| loop {
        let (conn, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => return Err(anyhow::Error::from(e)),
        };
        s.spawn(move || serve(conn, peer));
    })
}

fn serve(conn: TcpStream, peer: std::net::SocketAddr) {
    // Per-socket congestion control, switchable at any time (TCP_CONGESTION).
    if let Err(e) = conn.set_congestion("newreno") {
        eprintln!("echo: {e}");
    }
    let _ = conn.set_nodelay(true);
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if (&conn).write_all(line.as_bytes()).is_err() {
                    break;
                }
            }
        }
    }
    let info = conn.info();
    eprintln!(
        "echo: {peer} done: {} bytes in, {} out, srtt {} us, cwnd {}, {} retransmits",
        info.bytes_received, info.bytes_acked, info.srtt_us, info.cwnd, info.retransmits
    );
}
