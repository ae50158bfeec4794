//! A hyper 1.x HTTP/1.1 server on xstack through `xstack-tokio` and hyper-util's
//! `TokioIo`, serving the endpoints of `xstack http`:
//!
//! | request | response |
//! | --- | --- |
//! | `GET /bytes/N` | `N` bytes where byte `i` is `(i % 251) as u8` |
//! | `POST /sha256` | the lowercase hex SHA-256 of the request body |
//! | `GET /info[?cc=NAME]` | this connection's `tcp_info` as JSON (after switching its congestion control to `NAME`) |
//! | `GET /stats` | the stack's counters as JSON |
//!
//! ```sh
//! sudo cargo run --release -p xstack-tokio --example hyper_http -- vstk 198.18.0.1/24 80
//! # from the Linux side:  curl http://198.18.0.1/info
//! ```
//!
//! It prints `hyper_http: listening on port P` once it serves.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use xstack::{Ipv4Cidr, Stack, StackConfig};
use xstack_tokio::{StreamHandle, TcpListener};
// `info_json` and `set_congestion` as `xstack http` serves them.
use xstack_tools::http::ConnControl as _;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(iface), Some(addr)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: hyper_http IFACE A.B.C.D/NN [PORT]");
    };
    let addr: Ipv4Cidr = addr.parse()?;
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(80);

    let mut cfg = StackConfig::new(&iface, vec![addr]);
    cfg.idle = xstack::IdleMode::Sleep;
    let stack = Arc::new(Stack::start(cfg)?);
    let listener =
        TcpListener::bind(&*stack, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).await?;
    eprintln!("hyper_http: listening on port {port}");
    loop {
        let (conn, peer) = listener.accept().await?;
        conn.set_nodelay(true)?;
        let stack = stack.clone();
        let sock = conn.handle();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, sock.clone(), stack.clone()));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(conn), service)
                .await
            {
                eprintln!("hyper_http: {peer}: {e}");
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    sock: StreamHandle,
    stack: Arc<Stack>,
) -> Result<Response<BoxBody>, hyper::Error> {
    let path = req.uri().path();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    if let Some(n) = path.strip_prefix("/bytes/") {
        if !get {
            return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into()));
        }
        return Ok(match n.parse::<u64>() {
            Ok(n) => Response::builder()
                .header("content-type", "application/octet-stream")
                .body(PatternBody { left: n }.boxed())
                .expect("static head"),
            Err(_) => plain(
                StatusCode::BAD_REQUEST,
                format!("bad length {n:?}: /bytes/N takes N as a decimal u64\n"),
            ),
        });
    }
    match (path, get) {
        ("/sha256", false) if req.method() == Method::POST => {
            let mut body = req.into_body();
            let mut hasher = Sha256::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    hasher.update(&data);
                }
            }
            let digest = xstack_tools::http::hex(&hasher.finalize());
            Ok(plain(StatusCode::OK, digest))
        }
        ("/info", true) => {
            let cc = req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("cc="))
                    .map(str::to_string)
            });
            if let Some(name) = cc {
                if let Err(e) = sock.set_congestion(&name) {
                    return Ok(plain(StatusCode::BAD_REQUEST, format!("{e}\n")));
                }
            }
            Ok(json(&sock.info_json()))
        }
        ("/stats", true) => Ok(json(&stack.stats_json())),
        ("/sha256" | "/info" | "/stats", _) => Ok(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "wrong method\n".into(),
        )),
        _ => Ok(plain(StatusCode::NOT_FOUND, "not found\n".into())),
    }
}

fn plain(status: StatusCode, text: String) -> Response<BoxBody> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(full(text.into_bytes()))
        .expect("static head")
}

fn json(v: &serde_json::Value) -> Response<BoxBody> {
    let mut body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    body.push(b'\n');
    Response::builder()
        .header("content-type", "application/json")
        .body(full(body))
        .expect("static head")
}

fn full(bytes: Vec<u8>) -> BoxBody {
    Full::new(Bytes::from(bytes))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// The `GET /bytes/N` body: slices of the shared pattern, no copy.
struct PatternBody {
    left: u64,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let pattern = xstack_tools::http::pattern();
        let take = self.left.min(pattern.len() as u64) as usize;
        self.left -= take as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&pattern[..take])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}
