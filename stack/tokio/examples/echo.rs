//! An echo server on tokio: xstack's sockets through `xstack-tokio`, one task per
//! connection on the multi-thread runtime.
//!
//! ```sh
//! sudo cargo run --release -p xstack-tokio --example tokio_echo -- vstk 198.18.0.1/24 7
//! # from the Linux side:  nc 198.18.0.1 7
//! ```

use std::net::{Ipv4Addr, SocketAddrV4};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xstack::{Ipv4Cidr, Stack, StackConfig};
use xstack_tokio::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(iface), Some(addr)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: echo IFACE A.B.C.D/NN [PORT]");
    };
    let addr: Ipv4Cidr = addr.parse()?;
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(7);

    let mut cfg = StackConfig::new(&iface, vec![addr]);
    cfg.idle = xstack::IdleMode::Sleep;
    let stack = Stack::start(cfg)?;
    let listener =
        TcpListener::bind(&stack, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).await?;
    eprintln!("echo: listening on {addr} port {port}");
    loop {
        let (mut conn, peer) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Err(e) = conn.write_all(&buf[..n]).await {
                            eprintln!("echo: {peer}: {e}");
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("echo: {peer}: {e}");
                        break;
                    }
                }
            }
        });
    }
}
