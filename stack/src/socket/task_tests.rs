//! Application tasks on a worker's thread (`crate::task`), against two simulated stacks
//! on a background thread: an echo server that lives entirely inside a task on host 1's
//! worker 0 (readiness through a worker ready queue, connections owned by both workers),
//! sockets that answer `WouldBlock` inside a task whatever their mode, and the errors
//! for a worker that does not exist.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::{ReadyQueue, TcpListener, TcpStream};
use crate::sim::{host_addr, LinkConfig, Sim, SimThread};
use crate::task::{TaskContext, TaskStatus};

const TIMEOUT: Duration = Duration::from_secs(20);

fn sim(seed: u64) -> SimThread {
    let link = LinkConfig {
        delay: Duration::from_millis(1),
        ..LinkConfig::default()
    };
    Sim::new(seed, link, 2).spawn()
}

/// An echo server as a task: token 0 is the listener, `k + 1` stream `k`. Streams are
/// left in blocking mode on purpose: inside a task they must answer `WouldBlock`.
struct EchoTask {
    listener: TcpListener,
    queue: Arc<ReadyQueue>,
    tokens: Vec<usize>,
    served: Vec<Option<(TcpStream, Vec<u8>, bool)>>,
    finished: Arc<AtomicUsize>,
    /// Stop after this many streams were served to the end.
    limit: usize,
    done: mpsc::Sender<usize>,
}

impl EchoTask {
    fn run(&mut self, cx: &TaskContext) -> TaskStatus {
        assert_eq!(cx.worker(), 0);
        self.queue.drain(&mut self.tokens);
        let mut buf = [0u8; 64];
        for t in std::mem::take(&mut self.tokens) {
            if t == 0 {
                loop {
                    match self.listener.accept() {
                        Ok((s, _)) => {
                            self.served.push(Some((s, Vec::new(), false)));
                            let (s, ..) = self.served.last().unwrap().as_ref().unwrap();
                            s.register_ready_queue(&self.queue, self.served.len())
                                .unwrap();
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("accept: {e}"),
                    }
                }
                continue;
            }
            let Some(Some((s, pending, eof))) = self.served.get_mut(t - 1) else {
                continue;
            };
            if super::mio_tests::pump_echo(s, pending, eof, &mut buf) {
                s.deregister_ready_queue();
                self.served[t - 1] = None;
                self.finished.fetch_add(1, Ordering::Relaxed);
            }
        }
        let finished = self.finished.load(Ordering::Relaxed);
        if finished == self.limit {
            let _ = self.done.send(finished);
            return TaskStatus::Done;
        }
        TaskStatus::Idle(None)
    }
}

#[test]
fn an_echo_server_runs_inside_a_worker_task() {
    const CLIENTS: usize = 12;
    let sim = sim(21);
    let net = sim.net(1);
    let listener = TcpListener::bind(&net, SocketAddrV4::new(host_addr(1), 7)).expect("bind");
    let queue = ReadyQueue::for_worker(&net, 0).unwrap();
    listener.register_ready_queue(&queue, 0).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut task = EchoTask {
        listener,
        queue,
        tokens: Vec::new(),
        served: Vec::new(),
        finished: finished.clone(),
        limit: CLIENTS,
        done: done_tx,
    };
    net.run_on_worker(0, move |cx: &TaskContext| task.run(cx))
        .unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let net = sim.net(0).clone();
            std::thread::spawn(move || {
                let c =
                    TcpStream::connect_timeout(&net, SocketAddrV4::new(host_addr(1), 7), TIMEOUT)
                        .expect("connect");
                c.set_read_timeout(Some(TIMEOUT)).unwrap();
                c.set_nodelay(true).unwrap();
                let want: Vec<u8> = (0..200)
                    .flat_map(|m| format!("c{i}m{m};").into_bytes())
                    .collect();
                for chunk in want.chunks(13) {
                    (&c).write_all(chunk).expect("client write");
                }
                c.shutdown(Shutdown::Write).unwrap();
                let mut got = Vec::new();
                (&c).read_to_end(&mut got).expect("client read");
                assert!(got == want, "client {i}: echo differs");
                c.local_addr().unwrap()
            })
        })
        .collect();
    let mut ports = Vec::new();
    for c in clients {
        ports.push(c.join().expect("client"));
    }
    let served = done_rx
        .recv_timeout(TIMEOUT)
        .expect("the task reports it is done");
    assert_eq!(served, CLIENTS);
    // The task's sender is gone with the task: Done dropped it.
    assert!(done_rx.recv_timeout(Duration::from_secs(5)).is_err());
    // Connections spread over both of host 1's workers, and the task on worker 0 served
    // them all: readiness on worker 1 reached it.
    let owners: std::collections::HashSet<usize> = ports
        .iter()
        .map(|p| {
            let std::net::SocketAddr::V4(p) = p else {
                unreachable!()
            };
            net.tcp.owner_of(SocketAddrV4::new(host_addr(1), 7), *p)
        })
        .collect();
    assert_eq!(owners.len(), 2, "a test with one owner proves nothing");
}

#[test]
fn sockets_never_block_inside_a_task_and_bad_workers_are_refused() {
    let sim = sim(22);
    let net = sim.net(1);
    let listener = TcpListener::bind(&net, SocketAddrV4::new(host_addr(1), 8)).expect("bind");
    let client =
        TcpStream::connect_timeout(sim.net(0), SocketAddrV4::new(host_addr(1), 8), TIMEOUT)
            .expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let (tx, rx) = mpsc::channel();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let mut state = Some((listener, server));
    net.run_on_worker(1, move |_: &TaskContext| {
        let (listener, mut server) = state.take().expect("called once: Done");
        let mut buf = [0u8; 8];
        let read = server.read(&mut buf).map_err(|e| e.kind());
        let accept = listener.accept().map(|_| ()).map_err(|e| e.kind());
        r.store(true, Ordering::Relaxed);
        tx.send((read, accept)).unwrap();
        TaskStatus::Done
    })
    .unwrap();
    let (read, accept) = rx
        .recv_timeout(TIMEOUT)
        .expect("the task ran and did not hang");
    assert!(ran.load(Ordering::Relaxed));
    assert_eq!(read, Err(ErrorKind::WouldBlock));
    assert_eq!(accept, Err(ErrorKind::WouldBlock));
    drop(client);

    let e = net
        .run_on_worker(2, |_: &TaskContext| TaskStatus::Done)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        ReadyQueue::for_worker(&net, 2).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}
