//! An echo server on mio: xstack's `TcpListener` and `TcpStream` are `mio::event::Source`s
//! (feature `mio`), so one thread serves every connection from a `mio::Poll`.
//!
//! ```sh
//! sudo cargo run --release --features mio --example mio_echo -- vstk 198.18.0.1/24 7
//! # from the Linux side:  nc 198.18.0.1 7
//! ```
//!
//! Readiness is edge-triggered, as with mio's own sockets: after an event, read (or
//! write, or accept) until `WouldBlock`; the `WouldBlock` arms the next event.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};

use mio::{Events, Interest, Poll, Token};
use xstack::Ipv4Cidr;
use xstack::{Stack, StackConfig, TcpListener, TcpStream};

const LISTENER: Token = Token(0);

/// One connection: the stream and what it has read but not yet echoed.
struct Client {
    stream: TcpStream,
    pending: Vec<u8>,
    /// The peer sent FIN: close once `pending` is written.
    eof: bool,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(iface), Some(addr)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: mio_echo IFACE A.B.C.D/NN [PORT]");
    };
    let addr: Ipv4Cidr = addr.parse()?;
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(7);

    let mut cfg = StackConfig::new(&iface, vec![addr]);
    cfg.idle = xstack::IdleMode::Sleep;
    let stack = Stack::start(cfg)?;
    let mut listener = TcpListener::bind(&stack, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
    listener.set_nonblocking(true)?;
    eprintln!("mio_echo: listening on {addr} port {port}");
    serve(&mut listener)
}

/// The event loop: accepts on `listener`, echoes every connection.
fn serve(listener: &mut TcpListener) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(listener, LISTENER, Interest::READABLE)?;
    let mut clients: HashMap<Token, Client> = HashMap::new();
    let mut next = 1;
    let mut events = Events::with_capacity(256);
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, peer)) => {
                            stream.set_nonblocking(true)?;
                            let token = Token(next);
                            next += 1;
                            poll.registry().register(
                                &mut stream,
                                token,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            eprintln!("mio_echo: {peer} connected");
                            clients.insert(
                                token,
                                Client {
                                    stream,
                                    pending: Vec::new(),
                                    eof: false,
                                },
                            );
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                continue;
            }
            let token = ev.token();
            let done = match clients.get_mut(&token) {
                Some(c) => !c.drive(),
                None => false,
            };
            if done {
                if let Some(mut c) = clients.remove(&token) {
                    poll.registry().deregister(&mut c.stream)?;
                }
            }
        }
    }
}

impl Client {
    /// Reads and writes until both would block; false once the connection is finished.
    fn drive(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let mut progress = false;
            if !self.eof && self.pending.len() < 1 << 20 {
                match self.stream.read(&mut buf) {
                    Ok(0) => self.eof = true,
                    Ok(n) => {
                        self.pending.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => return false,
                }
            }
            if !self.pending.is_empty() {
                match self.stream.write(&self.pending) {
                    Ok(n) => {
                        self.pending.drain(..n);
                        progress = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => return false,
                }
            }
            if self.eof && self.pending.is_empty() {
                return false;
            }
            if !progress {
                return true;
            }
        }
    }
}
