//! xstack as a packetdrill shared-object stack: `packetdrill --so_filename=THIS.so`.
//!
//! packetdrill (`--so_filename`) `dlopen`s this library and calls
//! [`packetdrill_interface_init`], which fills its `struct packetdrill_interface`
//! ([`ffi::PacketdrillInterface`]): socket calls go to the sockets of a
//! [`xstack::sim::SimStack`] (one per instance, owning the local address,
//! `--so_flags=local=IP`, default 192.168.0.1: pass packetdrill `--local_ip` to match),
//! `netdev_send` injects the script's packets, `netdev_receive` returns what the stack
//! sent, and `usleep`/`gettimeofday` run the stack's virtual clock (see [`shim`]).
//!
//! - [`posix`]: descriptor table, errno mapping, `sockaddr_in` (reusable by an
//!   `LD_PRELOAD` shim);
//! - [`frames`]: Ethernet framing and ARP answers;
//! - [`shim`]: the instance: lock, packet queue, time, blocking;
//! - [`sockets`]: one non-blocking attempt of each socket call;
//! - [`sockstat`]: the socket table FreeBSD's `sockstat` prints, for the runner's stub;
//! - [`sysctl`]: the FreeBSD sysctls scripts set, as far as they are translated;
//! - [`ffi`]: the C entry points.

mod epoll;
pub mod ffi;
mod ffi_opts;
pub mod frames;
pub mod posix;
pub mod shim;
pub mod sockets;
pub mod sockstat;
pub mod sysctl;
mod tcpinfo;

pub use ffi::{packetdrill_interface_init, PacketdrillInterface};

#[cfg(test)]
mod tests;
