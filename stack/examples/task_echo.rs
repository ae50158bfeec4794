//! An echo server that runs inside the stack's worker thread (run-to-completion): no
//! thread of its own, no file descriptor per connection, no thread switch between a
//! packet and its answer.
//!
//! ```sh
//! sudo cargo run --release --example task_echo -- vstk 198.18.0.1/24 7
//! # from the Linux side:  nc 198.18.0.1 7
//! ```
//!
//! The worker calls the task on every turn of its loop. The task drains the tokens of the
//! sockets whose readiness changed from a `ReadyQueue` made for the worker, and reads,
//! writes or accepts until `WouldBlock`, as with mio. It must never block: inside a task
//! every socket call that would wait answers `WouldBlock`.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use xstack::{
    Ipv4Cidr, ReadyQueue, Stack, StackConfig, TaskContext, TaskStatus, TcpListener, TcpStream,
};

/// The listener's token on the queue; connections get 1, 2, ...
const LISTENER: usize = 0;

/// One connection: the stream and what it has read but not yet echoed.
struct Client {
    stream: TcpStream,
    pending: Vec<u8>,
    /// The peer sent FIN: close once `pending` is written.
    eof: bool,
}

/// The whole server: the task's state between calls.
struct Echo {
    listener: TcpListener,
    queue: Arc<ReadyQueue>,
    clients: HashMap<usize, Client>,
    next: usize,
    tokens: Vec<usize>,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(iface), Some(addr)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: task_echo IFACE A.B.C.D/NN [PORT]");
    };
    let addr: Ipv4Cidr = addr.parse()?;
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(7);

    let mut cfg = StackConfig::new(&iface, vec![addr]);
    cfg.idle = xstack::IdleMode::Sleep;
    let stack = Stack::start(cfg)?;
    let listener = TcpListener::bind(&stack, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
    // Worker 0 runs the task. With more queues, connections other workers own are
    // served too: their readiness wakes worker 0 (per-worker listeners and a task per
    // worker keep each connection on its own core instead).
    let queue = ReadyQueue::for_worker(stack.net(), 0)?;
    listener.register_ready_queue(&queue, LISTENER)?;
    let mut echo = Echo {
        listener,
        queue,
        clients: HashMap::new(),
        next: 1,
        tokens: Vec::new(),
    };
    stack
        .net()
        .run_on_worker(0, move |_: &TaskContext| echo.turn())?;
    eprintln!("task_echo: listening on {addr} port {port} (Ctrl-C stops)");
    loop {
        std::thread::park();
    }
}

impl Echo {
    /// One call from the worker: everything that became ready since the last one.
    fn turn(&mut self) -> TaskStatus {
        self.queue.drain(&mut self.tokens);
        for t in std::mem::take(&mut self.tokens) {
            if t == LISTENER {
                self.accept();
                continue;
            }
            let done = self.clients.get_mut(&t).is_some_and(|c| !c.drive());
            if done {
                if let Some(c) = self.clients.remove(&t) {
                    c.stream.deregister_ready_queue();
                }
            }
        }
        TaskStatus::Idle(None)
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let token = self.next;
                    self.next += 1;
                    // Registering reports the socket ready at once if it already is.
                    if stream.register_ready_queue(&self.queue, token).is_ok() {
                        eprintln!("task_echo: {peer} connected");
                        let c = Client {
                            stream,
                            pending: Vec::new(),
                            eof: false,
                        };
                        self.clients.insert(token, c);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    eprintln!("task_echo: accept: {e}");
                    return;
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
