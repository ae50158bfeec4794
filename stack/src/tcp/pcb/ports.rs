//! Where the search for an ephemeral port starts: RFC 6056 §3.3.4, algorithm 4
//! ("Double-Hash Port Selection"):
//!
//! ```text
//! offset = F(local_IP, remote_IP, remote_port, secret_key1)
//! index  = G(local_IP, remote_IP, remote_port, secret_key2)
//! port   = min_ephemeral + (offset + table[index]) % num_ephemeral
//! table[index] = table[index] + 1
//! ```
//!
//! Ports towards one destination advance from a secret per-destination offset, so
//! they do not collide with the ports recently used towards it, while an observer of
//! one destination learns nothing about the ports used towards others (a global counter
//! would tell it how many connections the stack opened). F and G are the two halves of
//! one SipHash-2-4 output keyed with 128 random bits, the PRF the ISNs use
//! (`tcp/isn.rs`). The table picks the search's start; the table's caller skips ports
//! in use and ports whose reply would land on another worker.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU32, Ordering};

use siphasher::sip::SipHasher24;

/// Counters in the table (RFC 6056 suggests 10 to 65,536: a larger table mixes
/// destinations less).
const TABLE_LEN: usize = 256;

/// The secret and the table of increments.
pub(super) struct PortSelector {
    hasher: SipHasher24,
    table: Box<[AtomicU32]>,
}

impl std::fmt::Debug for PortSelector {
    /// Does not print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortSelector").finish_non_exhaustive()
    }
}

impl PortSelector {
    /// A selector with a random key from the OS.
    ///
    /// # Panics
    /// If the OS random source fails (only before the entropy pool is initialised at
    /// boot on Linux): a guessable key would make ports predictable again.
    pub(super) fn new() -> Self {
        let mut key = [0u8; 16];
        if let Err(e) = getrandom::fill(&mut key) {
            panic!("no OS randomness for the ephemeral port secret: {e}");
        }
        Self::with_key(key)
    }

    /// A selector with a fixed key (reproducible simulations).
    pub(super) fn with_key(key: [u8; 16]) -> Self {
        PortSelector {
            hasher: SipHasher24::new_with_key(&key),
            table: (0..TABLE_LEN).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// The table slot and the position in the range (`0..span`) where the search for a
    /// port from `local_ip` to `remote` starts.
    pub(super) fn start(
        &self,
        local_ip: Ipv4Addr,
        remote: SocketAddrV4,
        span: u32,
    ) -> (usize, u32) {
        let mut id = [0u8; 10];
        id[0..4].copy_from_slice(&local_ip.octets());
        id[4..8].copy_from_slice(&remote.ip().octets());
        id[8..10].copy_from_slice(&remote.port().to_be_bytes());
        let h = self.hasher.hash(&id);
        let (offset, index) = (h as u32, (h >> 32) as usize % TABLE_LEN);
        let count = self.table[index].load(Ordering::Relaxed);
        (index, offset.wrapping_add(count) % span)
    }

    /// Records that the search in slot `index` went `tried` ports forward (the port
    /// taken included): the next search there starts after it.
    pub(super) fn advance(&self, index: usize, tried: u32) {
        self.table[index].fetch_add(tried, Ordering::Relaxed);
    }
}
