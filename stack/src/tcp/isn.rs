//! Initial sequence numbers (RFC 6528): a clock plus a keyed hash of the connection's
//! 4-tuple, so ISNs are unpredictable to off-path attackers yet still advance for
//! successive incarnations of one 4-tuple.
//!
//! RFC 6528 §3: "TCP SHOULD generate its Initial Sequence Numbers with the expression:
//! ISN = M + F(localip, localport, remoteip, remoteport, secretkey) where M is the 4
//! microsecond timer, and F() is a pseudorandom function (PRF) of the connection-id. F()
//! MUST NOT be computable from the outside, or an attacker could still guess at sequence
//! numbers from the ISN used for some other connection."
//!
//! F is SipHash-2-4 (the `siphasher` crate) keyed with 128 random bits from the OS, the
//! PRF Linux uses for the same purpose (`secure_tcp_seq`); RFC 6528 suggests MD5 but only
//! as an example of a keyed hash. M ticks every 4 µs from when the generator was created,
//! as the RFC says (Linux ticks every 64 ns instead).
//!
//! Sans-IO: the caller passes `now`; only [`IsnGenerator::new`] reads the clock, once, to
//! set the epoch of M (a simulation uses [`IsnGenerator::with_key_at`]).

use std::net::SocketAddrV4;
use std::time::Instant;

use siphasher::sip::SipHasher24;

use super::seq::Seq;

/// Generates RFC 6528 initial sequence numbers for one stack instance.
#[derive(Clone)]
pub struct IsnGenerator {
    hasher: SipHasher24,
    epoch: Instant,
}

impl std::fmt::Debug for IsnGenerator {
    /// Does not print the key: it is the secret that keeps ISNs unguessable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsnGenerator")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl IsnGenerator {
    /// A generator with a random 128-bit key from the OS and M counting from now.
    ///
    /// # Panics
    /// If the OS random source fails ([`try_new`](Self::try_new) reports it instead).
    /// On Linux `getrandom(2)` only fails before the entropy pool is initialised at boot;
    /// falling back to a guessable key would defeat RFC 6528, so this does not.
    pub fn new() -> Self {
        match Self::try_new() {
            Ok(g) => g,
            Err(e) => panic!("no OS randomness for the ISN secret key: {e}"),
        }
    }

    /// A generator with a random 128-bit key from the OS, or the OS's error.
    pub fn try_new() -> std::io::Result<Self> {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key).map_err(std::io::Error::from)?;
        Ok(Self::with_key(key))
    }

    /// A generator with a fixed key (tests, reproducible simulations); M counts from now.
    pub fn with_key(key: [u8; 16]) -> Self {
        Self::with_key_at(key, Instant::now())
    }

    /// A generator with a fixed key whose M counts from `epoch`; fully deterministic.
    pub fn with_key_at(key: [u8; 16], epoch: Instant) -> Self {
        IsnGenerator {
            hasher: SipHasher24::new_with_key(&key),
            epoch,
        }
    }

    /// The ISN for a connection from `local` to `remote` opened at `now`:
    /// M (4 µs ticks since the epoch, wrapping) + F(4-tuple, key).
    /// A `now` before the epoch counts as the epoch.
    pub fn isn(&self, local: SocketAddrV4, remote: SocketAddrV4, now: Instant) -> Seq {
        let ticks = now.saturating_duration_since(self.epoch).as_micros() / 4;
        // Truncation is the wrap of the 32-bit sequence space.
        let m = ticks as u32;
        Seq(m) + self.f(local, remote)
    }

    /// F(localip, localport, remoteip, remoteport, secretkey).
    fn f(&self, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        let mut id = [0u8; 12];
        id[0..4].copy_from_slice(&local.ip().octets());
        id[4..6].copy_from_slice(&local.port().to_be_bytes());
        id[6..10].copy_from_slice(&remote.ip().octets());
        id[10..12].copy_from_slice(&remote.port().to_be_bytes());
        let h = self.hasher.hash(&id);
        // Fold so every output bit of the PRF contributes.
        (h ^ (h >> 32)) as u32
    }
}

impl Default for IsnGenerator {
    /// Same as [`IsnGenerator::new`].
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    const KEY: [u8; 16] = *b"0123456789abcdef";

    fn addr(a: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, a), port)
    }

    #[test]
    fn deterministic_with_a_fixed_key() {
        let t0 = Instant::now();
        let g1 = IsnGenerator::with_key_at(KEY, t0);
        let g2 = IsnGenerator::with_key_at(KEY, t0);
        let (l, r) = (addr(1, 80), addr(2, 40000));
        assert_eq!(g1.isn(l, r, t0), g2.isn(l, r, t0));
        // At the epoch M = 0, so the ISN is F alone: SipHash-2-4 of the 12-byte id.
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&[198, 18, 0, 1]);
        id[4..6].copy_from_slice(&80u16.to_be_bytes());
        id[6..10].copy_from_slice(&[198, 18, 0, 2]);
        id[10..12].copy_from_slice(&40000u16.to_be_bytes());
        let h = SipHasher24::new_with_key(&KEY).hash(&id);
        assert_eq!(g1.isn(l, r, t0), Seq((h ^ (h >> 32)) as u32));
    }

    #[test]
    fn different_tuples_and_keys_differ() {
        let t0 = Instant::now();
        let g = IsnGenerator::with_key_at(KEY, t0);
        let base = g.isn(addr(1, 80), addr(2, 40000), t0);
        assert_ne!(base, g.isn(addr(1, 80), addr(2, 40001), t0));
        assert_ne!(base, g.isn(addr(1, 81), addr(2, 40000), t0));
        assert_ne!(base, g.isn(addr(3, 80), addr(2, 40000), t0));
        assert_ne!(base, g.isn(addr(1, 80), addr(4, 40000), t0));
        // Direction matters: swapping local and remote is a different connection id.
        assert_ne!(base, g.isn(addr(2, 40000), addr(1, 80), t0));
        let other = IsnGenerator::with_key_at(*b"fedcba9876543210", t0);
        assert_ne!(base, other.isn(addr(1, 80), addr(2, 40000), t0));
    }

    #[test]
    fn m_advances_250_per_millisecond() {
        // RFC 6528 §3: M is the 4 microsecond timer.
        let t0 = Instant::now();
        let g = IsnGenerator::with_key_at(KEY, t0);
        let (l, r) = (addr(1, 80), addr(2, 40000));
        let a = g.isn(l, r, t0);
        assert_eq!(g.isn(l, r, t0 + Duration::from_millis(1)) - a, 250);
        assert_eq!(g.isn(l, r, t0 + Duration::from_micros(3)) - a, 0);
        assert_eq!(g.isn(l, r, t0 + Duration::from_micros(4)) - a, 1);
        assert_eq!(g.isn(l, r, t0 + Duration::from_secs(1)).dist(a), 250_000);
        // M wraps after 2**32 ticks (~4.77 hours).
        let wrap = Duration::from_micros(4 * (1u64 << 32));
        assert_eq!(g.isn(l, r, t0 + wrap), a);
        // A clock before the epoch counts as the epoch.
        let g_late = IsnGenerator::with_key_at(KEY, t0 + Duration::from_secs(1));
        assert_eq!(g_late.isn(l, r, t0), a);
    }

    #[test]
    fn os_keys_differ() {
        let (l, r) = (addr(1, 80), addr(2, 40000));
        let a = IsnGenerator::try_new().unwrap();
        let b = IsnGenerator::new();
        // Same tuple at each one's epoch (M = 0), different random keys: the ISNs differ
        // (except with probability 2**-32).
        assert_ne!(a.isn(l, r, a.epoch), b.isn(l, r, b.epoch));
        // Debug output does not leak the key.
        assert!(!format!("{a:?}").contains("hasher"));
    }
}
