//! The tools built on the xstack library: the HTTP/1.1 server and client behind the
//! `xstack http`, `xstack get` and `xstack post` commands ([`http`]). The `xstack` CLI
//! itself is this package's binary (`src/bin/xstack/`).

pub mod http;
