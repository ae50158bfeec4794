//! xstack-tokio on two simulated stacks (`xstack::sim`, run on a background thread by
//! `Sim::spawn`) under tokio's multi-thread runtime: echo, many concurrent connections,
//! split halves in different tasks, shutdown and EOF, a refused connect.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddrV4;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xstack::sim::{host_addr, LinkConfig, Sim, SimThread};
use xstack_tokio::{TcpListener, TcpStream};

/// Each test's bound: a lost wakeup shows as a timeout, not a hang.
const LIMIT: Duration = Duration::from_secs(60);

fn sim(seed: u64) -> SimThread {
    let link = LinkConfig {
        delay: Duration::from_millis(1),
        ..LinkConfig::default()
    };
    Sim::new(seed, link, 2).spawn()
}

fn server(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(host_addr(1), port)
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {LIMIT:?}"))
}

/// Bytes `0, 1, ... 250, 0, ...` offset by `seed`, so streams cannot be mixed up.
fn payload(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i + seed) % 251) as u8).collect()
}

/// An echo server on host 1: one task per connection.
fn spawn_echo(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = conn.shutdown().await;
            });
        }
    })
}

/// Writes `data`, shuts down writing and reads everything back (from one task, the
/// reads interleaved with the writes so neither side's buffers fill).
async fn echo_once(conn: TcpStream, data: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = conn.into_split();
    let reader = async {
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.expect("read back");
        got
    };
    let writer = async {
        for chunk in data.chunks(1000) {
            wr.write_all(chunk).await.expect("write");
        }
        wr.shutdown().await.expect("shutdown");
    };
    let (got, ()) = tokio::join!(reader, writer);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trip() {
    let sim = sim(1);
    let listener = TcpListener::bind(sim.net(1), server(7)).await.unwrap();
    let echo = spawn_echo(listener);
    let data = payload(512 * 1024, 0);
    let got = bounded("echo 512 KiB", async {
        let conn = TcpStream::connect(sim.net(0), server(7))
            .await
            .expect("connect");
        assert_eq!(conn.peer_addr().unwrap(), server(7).into());
        echo_once(conn, &data).await
    })
    .await;
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");
    echo.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections() {
    let sim = sim(2);
    let listener = TcpListener::bind(sim.net(1), server(8)).await.unwrap();
    let echo = spawn_echo(listener);
    const CONNS: usize = 64;
    let mut clients = Vec::new();
    for i in 0..CONNS {
        let net = sim.net(0);
        clients.push(tokio::spawn(async move {
            let data = payload(20_000 + i * 97, i);
            let conn = TcpStream::connect(net, server(8)).await.expect("connect");
            let got = echo_once(conn, &data).await;
            got == data
        }));
    }
    let ok = bounded("64 concurrent echoes", async {
        let mut ok = 0;
        for c in clients {
            ok += c.await.expect("client task") as usize;
        }
        ok
    })
    .await;
    assert_eq!(ok, CONNS, "every connection echoes its own bytes");
    echo.abort();
}

/// The halves of one stream in two spawned tasks (possibly on two runtime threads): one
/// only writes, the other only reads, each waiting on its own readiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_in_different_tasks() {
    let sim = sim(3);
    let listener = TcpListener::bind(sim.net(1), server(9)).await.unwrap();
    let echo = spawn_echo(listener);
    let data = payload(1 << 20, 7);
    let conn = bounded("connect", TcpStream::connect(sim.net(0), server(9)))
        .await
        .expect("connect");
    let (mut rd, mut wr) = conn.into_split();
    let writer = {
        let data = data.clone();
        tokio::spawn(async move {
            for chunk in data.chunks(3000) {
                wr.write_all(chunk).await.expect("write");
            }
            // Dropping the write half sends FIN, as tokio's.
            drop(wr);
        })
    };
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.expect("read");
        got
    });
    let got = bounded("split echo of 1 MiB", async {
        writer.await.expect("writer task");
        reader.await.expect("reader task")
    })
    .await;
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");
    echo.abort();
}

/// `shutdown()` sends FIN: the peer reads EOF after the data, and can still answer; the
/// answer and then EOF reach the side that shut down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_eof_both_ways() {
    let sim = sim(4);
    let listener = TcpListener::bind(sim.net(1), server(10)).await.unwrap();
    bounded("shutdown and EOF", async {
        let mut client = TcpStream::connect(sim.net(0), server(10))
            .await
            .expect("connect");
        let (mut srv, peer) = listener.accept().await.expect("accept");
        assert_eq!(peer, client.local_addr().unwrap());
        client.write_all(b"question").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        srv.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"question");
        assert_eq!(srv.read(&mut [0u8; 8]).await.unwrap(), 0, "EOF stays EOF");
        srv.write_all(b"answer").await.unwrap();
        srv.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"answer");
        assert_eq!(
            client.write_all(b"late").await.unwrap_err().kind(),
            ErrorKind::BrokenPipe,
            "writing after shutdown"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refused() {
    let sim = sim(5);
    let err = bounded(
        "refused connect",
        TcpStream::connect(sim.net(0), server(11)),
    )
    .await
    .expect_err("nothing listens on port 11");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

/// A reset by the peer wakes a pending read with `ConnectionReset`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_reset_wakes_reader() {
    let sim = sim(6);
    let listener = TcpListener::bind(sim.net(1), server(12)).await.unwrap();
    bounded("reset", async {
        let client = TcpStream::connect(sim.net(0), server(12))
            .await
            .expect("connect");
        let (mut srv, _) = listener.accept().await.expect("accept");
        let reader = tokio::spawn(async move { srv.read(&mut [0u8; 16]).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.get_ref().set_linger(Some(Duration::ZERO)).unwrap();
        drop(client);
        let res = reader.await.expect("reader task");
        assert_eq!(res.unwrap_err().kind(), ErrorKind::ConnectionReset);
    })
    .await;
}
