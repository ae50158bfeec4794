//! The SYN cache and SYN cookies, after FreeBSD's `tcp_syncache.c`.
//!
//! A SYN for a listener does not create a control block. It creates a [`SynEntry`]: the
//! SYN's header and options, our ISS, when the SYN,ACK went out and how often. The
//! cache retransmits the SYN,ACK itself; the segment that completes the handshake (or
//! anything else for that 4-tuple) turns the entry into a control block in SYN-RECEIVED,
//! which then processes the segment as if it had been there all along
//! (`TcpLayer::input_listen`). A flood of SYNs from forged sources thus costs one small
//! entry each, for as long as the SYN,ACK retransmissions last, and never a connection.
//!
//! Each worker has its own cache (in its `TimerHeap`): a flow's SYN and its ACK hash to
//! the same worker (RSS), so no lock is taken. When a worker's cache is full, or always
//! if so configured, the SYN,ACK carries a SYN cookie instead (RFC 4987 §3.6) and
//! nothing is kept: [`Cookies`] encodes the MSS in the ISS and, when the peer uses
//! timestamps, the window scale, SACK and ECN in our TSval (as Linux does); the
//! returning ACK is validated against a keyed hash and rebuilds the SYN.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hasher;
use std::sync::Weak;
use std::time::{Duration, Instant};

use siphasher::sip::SipHasher24;

use super::pcb::{FourTuple, Listener};
use super::segment::{Segment, TcpFlags, TcpOptions};
use super::seq::Seq;

/// When a listener answers SYNs with cookies ([`super::TcpConfig::syncookies`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SynCookies {
    /// Never: a SYN that finds the cache full is dropped.
    Off,
    /// When the worker's cache is full (FreeBSD's `syncookies=1`, Linux's
    /// `tcp_syncookies=1`).
    #[default]
    WhenFull,
    /// Always, keeping no state at all (FreeBSD's `syncookies_only`).
    Always,
}

/// A SYN waiting for the rest of its handshake.
#[derive(Clone, Debug)]
pub(crate) struct SynEntry {
    /// The SYN's header and options (its text, if any, is not kept).
    pub syn: Segment<'static>,
    /// Our ISS.
    pub iss: Seq,
    /// The listener it came to.
    pub listener: Weak<Listener>,
    /// When the SYN arrived (the control block's clock starts there).
    pub created: Instant,
    /// SYN,ACKs sent so far (1 after the first).
    pub sent: u32,
    /// When the last one went out.
    pub last_sent: Instant,
    /// Next retransmission (or, after the last, expiry).
    pub due: Instant,
    /// Our timestamp clock read this then: an entry made from a cookie ACK that found the
    /// accept queue full goes on with the cookie's clock, which the peer has seen.
    pub ts_base: Option<(u32, Instant)>,
    /// The peer's ACK came and found the accept queue full, when `sent` SYN,ACKs had
    /// gone out: the peer holds an established connection and only our queue keeps it
    /// waiting ([`ACKED_RESENDS`]).
    pub acked_at: Option<u32>,
}

/// SYN,ACKs resent, one per initial RTO, for an entry whose peer has completed the
/// handshake ([`SynEntry::acked_at`]) before it is given up: about a minute, as Linux
/// keeps such a request (`tcp_synack_retries` 5: 63 s). Not doubled like the resends
/// of an unanswered SYN,ACK (`TcpConfig::synack_retries`): the path works, and each
/// resend draws the peer's ACK, the entry's chance at a queue with room again. With
/// doubling and three resends, entries whose ACKs arrived together met a full queue
/// together at each resend, and those still left after 15 s were dropped while their
/// peers thought them connected (3,000 idle clients at a backlog of 64, a slow machine).
pub(crate) const ACKED_RESENDS: u32 = 60;

impl SynEntry {
    /// Our TSval now, when the entry carries a clock of its own.
    pub fn ts_at(&self, now: Instant) -> Option<u32> {
        self.ts_base
            .map(|(v, t)| v.wrapping_add(now.saturating_duration_since(t).as_millis() as u32))
    }
}

/// One worker's SYN cache: entries by 4-tuple and their deadlines.
#[derive(Debug, Default)]
pub struct SynCache {
    entries: HashMap<FourTuple, SynEntry>,
    deadlines: BinaryHeap<Reverse<(Instant, FourTupleKey)>>,
}

/// A 4-tuple in a form the deadline heap can order.
type FourTupleKey = (u32, u16, u32, u16);

fn key(t: &FourTuple) -> FourTupleKey {
    (
        u32::from(*t.local.ip()),
        t.local.port(),
        u32::from(*t.remote.ip()),
        t.remote.port(),
    )
}

fn tuple(k: FourTupleKey) -> FourTuple {
    use std::net::{Ipv4Addr, SocketAddrV4};
    FourTuple {
        local: SocketAddrV4::new(Ipv4Addr::from(k.0), k.1),
        remote: SocketAddrV4::new(Ipv4Addr::from(k.2), k.3),
    }
}

impl SynCache {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The earliest deadline (a stale one may come first: it is skipped when due).
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((t, _))| *t)
    }

    /// The entries' 4-tuples.
    #[cfg(any(test, feature = "sim"))]
    pub fn tuples(&self) -> impl Iterator<Item = FourTuple> + '_ {
        self.entries.keys().copied()
    }

    pub(crate) fn get(&self, t: &FourTuple) -> Option<&SynEntry> {
        self.entries.get(t)
    }

    /// Adds or replaces the entry for `t`.
    pub(crate) fn insert(&mut self, t: FourTuple, e: SynEntry) {
        self.deadlines.push(Reverse((e.due, key(&t))));
        self.entries.insert(t, e);
    }

    pub(crate) fn remove(&mut self, t: &FourTuple) -> Option<SynEntry> {
        let e = self.entries.remove(t);
        if self.is_empty() {
            self.deadlines.clear();
        }
        e
    }

    /// Takes the entries whose deadline has come (by `now`); stale heap entries are
    /// dropped on the way.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<(FourTuple, SynEntry)> {
        let mut due = Vec::new();
        while let Some(Reverse((t, k))) = self.deadlines.peek().copied() {
            if t > now {
                break;
            }
            self.deadlines.pop();
            let tup = tuple(k);
            if self.entries.get(&tup).is_some_and(|e| e.due == t) {
                if let Some(e) = self.entries.remove(&tup) {
                    due.push((tup, e));
                }
            }
        }
        due
    }
}

/// FreeBSD's `tcp_sc_msstab`: the MSS values a cookie can carry (3 bits).
const MSS_TABLE: [u16; 8] = [216, 536, 1200, 1360, 1400, 1440, 1452, 1460];

/// A cookie's time step: it is valid in the step it was made and the next.
const COOKIE_STEP: Duration = Duration::from_secs(64);

/// TSval bits that carry the SYN's other options in a cookie: window scale (4 bits, 15
/// for none), SACK-permitted, ECN.
const TS_BITS: u32 = 0x3f;
const TS_NO_WSCALE: u32 = 0xf;
const TS_SACK: u32 = 0x10;
const TS_ECN: u32 = 0x20;

/// SYN cookies for one stack: a keyed hash (SipHash-2-4 with a random key, as the ISNs)
/// and a time base.
#[derive(Clone)]
pub struct Cookies {
    hasher: SipHasher24,
    key: [u8; 16],
    epoch: Instant,
    /// Added to the microsecond clock of cookie TSvals, so they do not tell uptime.
    ts_off: u32,
}

impl std::fmt::Debug for Cookies {
    /// Does not print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cookies").finish_non_exhaustive()
    }
}

/// The cookie key and time base, for a program that answers SYNs on the stack's
/// behalf ([`Cookies::export`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookieParams {
    pub k0: u64,
    pub k1: u64,
    pub epoch_ns: u64,
    /// The microsecond offset of cookie TSvals ([`Cookies::tsval`]).
    pub ts_off: u32,
}

impl std::fmt::Debug for CookieParams {
    /// Does not print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieParams")
            .field("epoch_ns", &self.epoch_ns)
            .finish_non_exhaustive()
    }
}

/// What a listener's SYN,ACKs carry, for a program that answers SYNs with cookies on
/// the stack's behalf: the stack's own SYN,ACK for a SYN with every option
/// ([`super::TcpLayer::synack_template`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynTemplate {
    /// Our MSS option.
    pub mss: u16,
    /// The SYN,ACK's window field.
    pub window: u16,
    /// Our window scale, sent when the peer sent one.
    pub wscale: u8,
    /// SACK-permitted is granted.
    pub sack: bool,
    /// ECN is taken.
    pub ecn: bool,
}

/// Somewhere SYNs are answered before the stack sees them (the XDP program,
/// `device/xdp.rs`): told which addresses listen and what their SYN,ACKs carry.
pub trait SynOffload: Send + Sync {
    /// `local` now listens with `t`, or (`None`) is not answered there any more.
    fn publish(&self, local: std::net::SocketAddrV4, t: Option<SynTemplate>);
}

/// What a valid cookie ACK says about the SYN it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieSyn {
    /// The MSS (from the table, at most the peer's).
    pub mss: u16,
    /// The peer's window scale, SACK-permitted and ECN, when timestamps carried them.
    pub wscale: Option<u8>,
    pub sack: bool,
    pub ecn: bool,
}

impl Default for Cookies {
    fn default() -> Self {
        Self::new()
    }
}

impl Cookies {
    /// Cookies with a random 128-bit key from the OS, steps counted from now. Without
    /// OS randomness (only before the entropy pool is ready at boot) the key is derived
    /// from the clock and the address of a local: unguessable enough for the minutes a
    /// cookie lives, and no reason to refuse to start.
    pub fn new() -> Cookies {
        let mut key = [0u8; 16];
        if getrandom::fill(&mut key).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let a = &key as *const _ as usize as u128;
            key = (t ^ a.rotate_left(64)).to_le_bytes();
        }
        Self::with_key(key, Instant::now())
    }

    pub fn with_key(key: [u8; 16], epoch: Instant) -> Cookies {
        Cookies {
            hasher: SipHasher24::new_with_key(&key),
            key,
            epoch,
            ts_off: {
                // A keyed hash of a constant: unpredictable, and it tells nothing of the key.
                let mut h = SipHasher24::new_with_key(&key);
                h.write(b"xstack cookie tsval offset");
                h.finish() as u32
            },
        }
    }

    /// What a program answering SYNs for this stack needs to make the same cookies
    /// (`device/xdp.rs`): the key as SipHash's two little-endian words, and the time
    /// base as a CLOCK_MONOTONIC reading in nanoseconds (what `Instant` counts on
    /// Linux and `bpf_ktime_get_ns` returns).
    pub fn export(&self) -> CookieParams {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.key[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let mono_now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        let since = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos() as u64;
        CookieParams {
            k0: word(0),
            k1: word(8),
            epoch_ns: mono_now.saturating_sub(since),
            ts_off: self.ts_off,
        }
    }

    fn step(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.epoch).as_secs() / COOKIE_STEP.as_secs()) as u32
    }

    fn mac(&self, t: &FourTuple, irs: Seq, step: u32) -> u32 {
        let mut h = self.hasher;
        let (a, b, c, d) = key(t);
        h.write_u32(a);
        h.write_u16(b);
        h.write_u32(c);
        h.write_u16(d);
        h.write_u32(irs.0);
        h.write_u32(step);
        h.finish() as u32
    }

    /// The ISS for a SYN from `t` with sequence number `irs` and the peer's `mss`: 24
    /// bits of MAC, 5 bits of time step, 3 bits of MSS index.
    pub fn iss(&self, t: &FourTuple, irs: Seq, mss: u16, now: Instant) -> Seq {
        let idx = MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32;
        let step = self.step(now);
        Seq((self.mac(t, irs, step) & !0xff) | (step & 0x1f) << 3 | idx)
    }

    fn ts_micros(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.epoch).as_micros() as u32).wrapping_add(self.ts_off)
    }

    /// The TSval of a cookie SYN,ACK: the SYN's options in the low 6 bits ([`Self::ts_bits`]),
    /// above them a microsecond clock (26 bits, 67 s round), so that the echo in the ACK
    /// gives the handshake's round-trip time ([`Self::handshake_rtt`]) though nothing
    /// was kept. The connection's own millisecond clock then goes on from this value.
    pub fn tsval(&self, bits: u32, now: Instant) -> u32 {
        self.ts_micros(now) << 6 | bits & TS_BITS
    }

    /// The round-trip time since the cookie SYN,ACK whose TSval the ACK echoes: `None`
    /// for an echo from the future or more than a minute old.
    pub fn handshake_rtt(&self, tsecr: u32, now: Instant) -> Option<Duration> {
        let us = self.ts_micros(now).wrapping_sub(tsecr >> 6) & ((1 << 26) - 1);
        (us < 60_000_000).then(|| Duration::from_micros(u64::from(us)))
    }

    /// The TSval low bits for the SYN's window scale, SACK and ECN.
    pub fn ts_bits(wscale: Option<u8>, sack: bool, ecn: bool) -> u32 {
        wscale.map_or(TS_NO_WSCALE, |w| u32::from(w.min(14)))
            | if sack { TS_SACK } else { 0 }
            | if ecn { TS_ECN } else { 0 }
    }

    /// Checks the ACK of a cookie SYN,ACK from `t`: `None` unless it acknowledges an ISS
    /// this stack made for this 4-tuple and sequence number within the last two steps.
    pub fn check(&self, t: &FourTuple, ack: &Segment<'_>, now: Instant) -> Option<CookieSyn> {
        let (irs, iss) = (ack.seq - 1, ack.ack - 1);
        let step = self.step(now);
        let made = [step, step.wrapping_sub(1)]
            .into_iter()
            .find(|s| s & 0x1f == (iss.0 >> 3) & 0x1f)?;
        if self.mac(t, irs, made) & !0xff != iss.0 & !0xff {
            return None;
        }
        let mss = MSS_TABLE[(iss.0 & 7) as usize];
        let bits = ack.options.timestamps.map(|(_, ecr)| ecr & TS_BITS);
        Some(CookieSyn {
            mss,
            wscale: bits.and_then(|b| (b & 0xf != TS_NO_WSCALE).then_some((b & 0xf) as u8)),
            sack: bits.is_some_and(|b| b & TS_SACK != 0),
            ecn: bits.is_some_and(|b| b & TS_ECN != 0),
        })
    }
}

impl CookieSyn {
    /// The SYN a cookie ACK stands for: sequence number, options and ECN as the
    /// original carried them (as far as the cookie kept them), its window the ACK's.
    pub fn syn(&self, ack: &Segment<'_>) -> Segment<'static> {
        let mut flags = TcpFlags::SYN;
        if self.ecn {
            flags |= TcpFlags::ECE | TcpFlags::CWR;
        }
        Segment {
            src_port: ack.src_port,
            dst_port: ack.dst_port,
            seq: ack.seq - 1,
            ack: Seq(0),
            flags,
            window: ack.window,
            urgent: 0,
            options: TcpOptions {
                mss: Some(self.mss),
                wscale: self.wscale,
                sack_permitted: self.sack,
                timestamps: ack.options.timestamps.map(|(val, _)| (val, 0)),
                ..TcpOptions::default()
            },
            payload: &[],
            ecn: ack.ecn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn t() -> FourTuple {
        FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80),
            remote: SocketAddrV4::new(Ipv4Addr::new(198, 19, 3, 4), 40000),
        }
    }

    fn ack_of(iss: Seq, irs: Seq, ecr: Option<u32>) -> Segment<'static> {
        Segment {
            src_port: 40000,
            dst_port: 80,
            seq: irs + 1,
            ack: iss + 1,
            flags: TcpFlags::ACK,
            window: 100,
            urgent: 0,
            options: TcpOptions {
                timestamps: ecr.map(|e| (7, e)),
                ..TcpOptions::default()
            },
            payload: &[],
            ecn: Default::default(),
        }
    }

    #[test]
    fn a_cookie_validates_and_carries_mss_and_options() {
        let t0 = Instant::now();
        let c = Cookies::with_key([7; 16], t0);
        let irs = Seq(123_456);
        let iss = c.iss(&t(), irs, 1400, t0);
        let bits = Cookies::ts_bits(Some(7), true, false);
        let got = c.check(
            &t(),
            &ack_of(iss, irs, Some(0x1234_5600 | bits)),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(
            got,
            Some(CookieSyn {
                mss: 1400,
                wscale: Some(7),
                sack: true,
                ecn: false
            })
        );
        // No timestamps on the ACK: MSS only.
        let got = c.check(&t(), &ack_of(iss, irs, None), t0).unwrap();
        assert_eq!((got.mss, got.wscale, got.sack), (1400, None, false));
        // The MSS rounds down to the table.
        assert_eq!(
            c.check(&t(), &ack_of(c.iss(&t(), irs, 1000, t0), irs, None), t0)
                .unwrap()
                .mss,
            536
        );
    }

    #[test]
    fn forged_or_stale_cookies_fail() {
        let t0 = Instant::now();
        let c = Cookies::with_key([7; 16], t0);
        let irs = Seq(99);
        let iss = c.iss(&t(), irs, 1460, t0);
        assert!(
            c.check(&t(), &ack_of(iss + 256, irs, None), t0).is_none(),
            "another MAC"
        );
        assert!(
            c.check(&t(), &ack_of(iss, irs + 1, None), t0).is_none(),
            "another SYN"
        );
        let mut other = t();
        other.remote.set_port(40001);
        assert!(
            c.check(&other, &ack_of(iss, irs, None), t0).is_none(),
            "another flow"
        );
        // Valid through the next step, not after.
        assert!(c
            .check(&t(), &ack_of(iss, irs, None), t0 + COOKIE_STEP)
            .is_some());
        assert!(c
            .check(&t(), &ack_of(iss, irs, None), t0 + 2 * COOKIE_STEP)
            .is_none());
        // Another key knows nothing of it.
        let d = Cookies::with_key([8; 16], t0);
        assert!(d.check(&t(), &ack_of(iss, irs, None), t0).is_none());
    }

    #[test]
    fn due_entries_come_out_in_order_and_stale_deadlines_are_skipped() {
        let t0 = Instant::now();
        let mut c = SynCache::default();
        let e = |due: Instant| SynEntry {
            ts_base: None,
            acked_at: None,
            syn: ack_of(Seq(1), Seq(2), None),
            iss: Seq(1),
            listener: Weak::new(),
            created: t0,
            sent: 1,
            last_sent: t0,
            due,
        };
        let a = t();
        let mut b = t();
        b.remote.set_port(5);
        c.insert(a, e(t0 + Duration::from_secs(1)));
        c.insert(b, e(t0 + Duration::from_secs(2)));
        // Rescheduled: the old deadline is stale.
        c.insert(a, e(t0 + Duration::from_secs(3)));
        assert_eq!(c.next(), Some(t0 + Duration::from_secs(1)));
        let due = c.take_due(t0 + Duration::from_secs(2));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, b);
        assert_eq!(c.len(), 1);
        assert!(c.remove(&a).is_some());
        assert!(c.is_empty() && c.next().is_none());
    }
}
