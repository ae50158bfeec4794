//! ARP (RFC 826) for Ethernet/IPv4: answering for owned addresses, resolving next hops
//! with a cache, a hold queue for packets waiting on resolution, retries, expiry and the
//! gratuitous announcement at start-up. After FreeBSD's `if_ether.c` / `in_arp`.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::RwLock;
use std::time::Instant;

use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetProtocol};

use super::{ether, ArpConfig, Interface, NetCtx};
use crate::mbuf::Pkt;
use crate::ratelimit::RateLimit;
use crate::stats::Counters;

/// Length of an Ethernet/IPv4 ARP packet.
const ARP_LEN: usize = 28;

#[derive(Debug)]
enum Entry {
    /// Resolved; valid until `expires`.
    Resolved {
        mac: EthernetAddress,
        expires: Instant,
    },
    /// A request is out. `hold` keeps IPv4 packets (no Ethernet header) to send once the
    /// reply arrives.
    Incomplete {
        hold: VecDeque<Vec<u8>>,
        tries: u32,
        next_retry: Instant,
    },
    /// Unanswered after `max_tries` requests: packets are dropped and no request is
    /// sent until `until` (FreeBSD's `arpt_down`), unless the host speaks up first.
    Down { until: Instant },
}

impl Entry {
    /// When [`timer`] next has something to do with this entry.
    fn deadline(&self, cfg: &ArpConfig) -> Instant {
        match self {
            Entry::Resolved { expires, .. } => *expires + cfg.entry_timeout,
            Entry::Incomplete { next_retry, .. } => *next_retry,
            Entry::Down { until } => *until,
        }
    }
}

/// The entries, and the earliest time one of them needs the timer (never later than
/// the true earliest deadline: refreshes push deadlines later without updating it).
#[derive(Debug, Default)]
struct Table {
    map: HashMap<Ipv4Addr, Entry>,
    next_due: Option<Instant>,
}

impl Table {
    fn note(&mut self, deadline: Instant) {
        self.next_due = Some(self.next_due.map_or(deadline, |d| d.min(deadline)));
    }
}

/// The neighbour cache of one interface, shared by its workers.
#[derive(Debug)]
pub struct ArpCache {
    cfg: ArpConfig,
    entries: RwLock<Table>,
    /// All requests we send, together (`cfg.max_requests_per_sec`).
    requests: RateLimit,
}

/// What [`ArpCache::resolve`] did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolve {
    /// The link address is known: send now.
    Known(EthernetAddress),
    /// The entry is stale: send now to the old address, and send a request to
    /// revalidate it (RFC 1122 §2.3.2.1: a cache entry in use must be revalidated, and
    /// traffic keeps flowing meanwhile, as Linux's STALE/PROBE states do).
    KnownRefresh(EthernetAddress),
    /// The packet was queued; a request must be sent now (first miss).
    HeldAndAsk,
    /// The packet was queued behind a request already out.
    Held,
    /// The hold queue was full; the packet was dropped.
    Dropped,
    /// The destination did not answer recently ([`Entry::Down`]); the packet was dropped.
    HostDown,
    /// The cache is full (`max_entries`); the packet was dropped.
    CacheFull,
}

impl ArpCache {
    /// An empty cache.
    pub fn new(cfg: ArpConfig) -> Self {
        ArpCache {
            cfg,
            entries: RwLock::new(Table::default()),
            requests: RateLimit::new(cfg.max_requests_per_sec),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The resolved link address of `ip`, if fresh.
    pub fn lookup(&self, ip: Ipv4Addr, now: Instant) -> Option<EthernetAddress> {
        match self.read().map.get(&ip) {
            Some(Entry::Resolved { mac, expires }) if *expires > now => Some(*mac),
            _ => None,
        }
    }

    /// A resolved entry found fresh or stale by `resolve`: a stale one is used and asked
    /// for again at most once per retry interval; a reply makes it fresh, and `timer`
    /// deletes it after a whole timeout unanswered.
    fn use_resolved(&self, mac: EthernetAddress, expires: &mut Instant, now: Instant) -> Resolve {
        if *expires > now {
            return Resolve::Known(mac);
        }
        *expires = now + self.cfg.retry_interval;
        Resolve::KnownRefresh(mac)
    }

    /// Looks `ip` up; on a miss, holds `packet` (built lazily) until resolution.
    pub fn resolve(&self, ip: Ipv4Addr, now: Instant, packet: impl FnOnce() -> Vec<u8>) -> Resolve {
        if let Some(mac) = self.lookup(ip, now) {
            return Resolve::Known(mac);
        }
        let mut table = self.write();
        if !table.map.contains_key(&ip) && table.map.len() >= self.cfg.max_entries {
            return Resolve::CacheFull;
        }
        let fresh = || Entry::Incomplete {
            hold: VecDeque::new(),
            tries: 0,
            next_retry: now,
        };
        let entry = table.map.entry(ip).or_insert_with(fresh);
        // A destination that went down is asked again once its time is up.
        if let Entry::Down { until } = entry {
            if *until > now {
                return Resolve::HostDown;
            }
            *entry = fresh();
        }
        let r = match entry {
            Entry::Resolved { mac, expires } => self.use_resolved(*mac, expires, now),
            Entry::Incomplete {
                hold,
                tries,
                next_retry,
            } => {
                if hold.len() >= self.cfg.max_hold {
                    return Resolve::Dropped;
                }
                hold.push_back(packet());
                if *tries > 0 {
                    return Resolve::Held;
                }
                *tries = 1;
                *next_retry = now + self.cfg.retry_interval;
                Resolve::HeldAndAsk
            }
            // Replaced above.
            Entry::Down { .. } => return Resolve::HostDown,
        };
        let deadline = table.map[&ip].deadline(&self.cfg);
        table.note(deadline);
        r
    }

    /// Looks `ip` up for a packet that only answers one of its (a RST for a closed port,
    /// an echo reply): a fresh or stale entry is used (`Known`, `KnownRefresh`); a miss
    /// (`None`) makes no entry, so forged sources cannot fill the cache.
    pub fn resolve_answer(&self, ip: Ipv4Addr, now: Instant) -> Option<Resolve> {
        if let Some(mac) = self.lookup(ip, now) {
            return Some(Resolve::Known(mac));
        }
        match self.write().map.get_mut(&ip) {
            Some(Entry::Resolved { mac, expires }) => Some(self.use_resolved(*mac, expires, now)),
            _ => None,
        }
    }

    /// Records `ip` at `mac`. With `create` false only an existing entry is updated
    /// (RFC 826's merge step); a new entry beyond `max_entries` is refused and counted.
    /// Returns the packets that were waiting for it.
    fn update(
        &self,
        ip: Ipv4Addr,
        mac: EthernetAddress,
        now: Instant,
        create: bool,
        counters: &Counters,
    ) -> Vec<Vec<u8>> {
        // Most ARP traffic on a busy link is broadcast requests between other hosts:
        // a read lock tells there is nothing to merge.
        if !create && !self.read().map.contains_key(&ip) {
            return Vec::new();
        }
        let mut table = self.write();
        let expires = now + self.cfg.entry_timeout;
        let resolved = Entry::Resolved { mac, expires };
        let deadline = resolved.deadline(&self.cfg);
        let full = table.map.len() >= self.cfg.max_entries;
        let held = match table.map.get_mut(&ip) {
            Some(entry) => match std::mem::replace(entry, resolved) {
                Entry::Incomplete { hold, .. } => hold.into(),
                Entry::Resolved { .. } | Entry::Down { .. } => Vec::new(),
            },
            None if !create => return Vec::new(),
            None if full => {
                Counters::inc(&counters.arp_cache_full);
                return Vec::new();
            }
            None => {
                table.map.insert(ip, resolved);
                Vec::new()
            }
        };
        table.note(deadline);
        held
    }

    /// Records a neighbour whose handshake proved it: the ACK of a SYN cookie the XDP
    /// program sent to the SYN's link source (`tcp/listen.rs`). Nothing else of ours had
    /// gone to it, so nothing had asked for its address, and the connection's first
    /// data would wait for ARP (and, in a burst, overflow the hold queue). Only a
    /// neighbour with no entry at all is recorded (an entry already there, even one
    /// being resolved, is left to ARP); `max_entries` still bounds the cache.
    pub fn learn_from_handshake(
        &self,
        ip: Ipv4Addr,
        mac: EthernetAddress,
        now: Instant,
        counters: &Counters,
    ) {
        if self.read().map.contains_key(&ip) {
            return;
        }
        let mut table = self.write();
        if table.map.contains_key(&ip) {
            return;
        }
        if table.map.len() >= self.cfg.max_entries {
            Counters::inc(&counters.arp_cache_full);
            return;
        }
        let resolved = Entry::Resolved {
            mac,
            expires: now + self.cfg.entry_timeout,
        };
        let deadline = resolved.deadline(&self.cfg);
        table.map.insert(ip, resolved);
        table.note(deadline);
    }

    /// Resolves `ip` to `mac` as a reply would, returning the held packets unsent.
    #[cfg(test)]
    pub(crate) fn resolve_for_test(
        &self,
        ip: Ipv4Addr,
        mac: EthernetAddress,
        now: Instant,
    ) -> Vec<Vec<u8>> {
        self.update(ip, mac, now, true, &Counters::default())
    }

    #[cfg(any(test, feature = "sim"))]
    /// When [`timer`] next has something to do: the earliest retry of an incomplete
    /// entry, deletion of a resolved one or end of a down one (`None` for an empty
    /// cache). It may be early (a refresh moved an entry's deadline later), never late.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.read().next_due
    }

    /// Number of entries (resolved or not).
    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    /// True when the cache is empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Retries, gives up on and expires the entries due at `now`; returns the
    /// addresses to ask for again. Costs a read lock when nothing is due, a pass over
    /// the cache under the write lock when something is.
    fn expire(&self, now: Instant, counters: &Counters) -> Vec<Ipv4Addr> {
        if self.read().next_due.is_none_or(|t| t > now) {
            return Vec::new();
        }
        let cfg = self.cfg;
        let mut ask = Vec::new();
        let mut table = self.write();
        table
            .map
            .retain(|ip, entry| expire_entry(&cfg, *ip, entry, now, counters, &mut ask));
        table.next_due = table.map.values().map(|e| e.deadline(&cfg)).min();
        ask
    }
}

/// What the timer does with one entry at `now`; false deletes it.
fn expire_entry(
    cfg: &ArpConfig,
    ip: Ipv4Addr,
    entry: &mut Entry,
    now: Instant,
    counters: &Counters,
    ask: &mut Vec<Ipv4Addr>,
) -> bool {
    if entry.deadline(cfg) > now {
        return true;
    }
    match entry {
        // Deleted once stale for a whole timeout (refreshes push `expires` by one retry
        // interval at a time, so an entry in use but unanswered also ends up here).
        Entry::Resolved { .. } => {
            Counters::inc(&counters.arp_expired);
            false
        }
        Entry::Incomplete {
            hold,
            tries,
            next_retry,
        } => {
            if *tries < cfg.max_tries {
                *tries += 1;
                *next_retry = now + cfg.retry_interval;
                ask.push(ip);
                return true;
            }
            counters
                .arp_unresolved
                .fetch_add(hold.len() as u64, std::sync::atomic::Ordering::Relaxed);
            *entry = Entry::Down {
                until: now + cfg.down_time,
            };
            !cfg.down_time.is_zero()
        }
        Entry::Down { .. } => false,
    }
}

/// Handles one received ARP frame (Ethernet header included).
pub fn input(ifp: &Interface, ctx: &mut impl NetCtx, pkt: Pkt<'_>) {
    Counters::inc(&ctx.counters().arp_rx);
    let Some(body) = pkt.data.get(ether::HEADER_LEN..) else {
        Counters::inc(&ctx.counters().arp_malformed);
        return;
    };
    let repr = match ArpPacket::new_checked(body).and_then(|p| ArpRepr::parse(&p)) {
        Ok(r) => r,
        Err(_) => {
            Counters::inc(&ctx.counters().arp_malformed);
            return;
        }
    };
    let ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: sha,
        source_protocol_addr: spa,
        target_protocol_addr: tpa,
        ..
    } = repr
    else {
        Counters::inc(&ctx.counters().arp_malformed);
        return;
    };
    if !sha.is_unicast() || spa.is_unspecified() && operation != ArpOperation::Request {
        Counters::inc(&ctx.counters().arp_malformed);
        return;
    }
    // A sender address no neighbour can have is neither cached nor answered: otherwise
    // requests from anywhere (any address, broadcast or multicast ones too) grow the
    // cache without bound and bind those addresses to the asker's MAC. A probe's
    // unspecified sender (RFC 5227) is answered.
    if !spa.is_unspecified() && !ifp.is_neighbour(spa) {
        Counters::inc(&ctx.counters().arp_bad_sender);
        return;
    }
    let now = ctx.now();
    let for_us = ifp.owns(tpa);
    // RFC 826: "If the pair <protocol type, sender protocol address> is already in my
    // translation table, update the sender hardware address field of the entry with the
    // new information ... If I am the target protocol address: If the merge flag is
    // false, add the triplet to the translation table." New entries are made only for
    // requests (a reply we did not ask for has no entry to merge into), and only for
    // a neighbour on one of our subnets; a probe's unspecified sender address is never
    // recorded.
    let released = if spa.is_unspecified() {
        Vec::new()
    } else {
        let asked = for_us && operation == ArpOperation::Request;
        let neighbour = ifp.is_neighbour(spa);
        if asked && !neighbour {
            Counters::inc(&ctx.counters().arp_off_subnet);
        }
        ifp.arp
            .update(spa, sha, now, asked && neighbour, ctx.counters())
    };
    for ip_packet in released {
        send_ipv4_frame(ifp, ctx, sha, &ip_packet);
    }
    if !for_us {
        Counters::inc(&ctx.counters().arp_not_for_us);
        return;
    }
    match operation {
        ArpOperation::Request => {
            // "Swap hardware and protocol fields, putting the local hardware and protocol
            // addresses in the sender fields. Set the opcode field to ares_op$REPLY."
            let reply = ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: ifp.mac,
                source_protocol_addr: tpa,
                target_hardware_addr: sha,
                target_protocol_addr: spa,
            };
            if send_arp(ifp, ctx, sha, &reply) {
                Counters::inc(&ctx.counters().arp_requests_answered);
            }
        }
        ArpOperation::Reply => Counters::inc(&ctx.counters().arp_replies_rx),
        _ => Counters::inc(&ctx.counters().arp_malformed),
    }
}

/// Sends a broadcast request for `target`, from our address on its subnet, unless the
/// stack-wide request budget (`max_requests_per_sec`) is spent.
pub fn request(ifp: &Interface, ctx: &mut impl NetCtx, target: Ipv4Addr) {
    let Some(spa) = ifp.source_for(target) else {
        return;
    };
    let now = ctx.now();
    if !ifp
        .arp
        .requests
        .allow_or_count(now, &ctx.counters().arp_requests_suppressed)
    {
        return;
    }
    let req = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: ifp.mac,
        source_protocol_addr: spa,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    if send_arp(ifp, ctx, EthernetAddress::BROADCAST, &req) {
        Counters::inc(&ctx.counters().arp_requests_tx);
    }
}

/// Announces each owned address with a gratuitous ARP request (sender = target = our
/// address, RFC 5227 §3), so neighbours refresh stale entries for us.
pub fn announce(ifp: &Interface, ctx: &mut impl NetCtx) {
    for cidr in &ifp.addrs {
        let req = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: ifp.mac,
            source_protocol_addr: cidr.addr,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: cidr.addr,
        };
        if send_arp(ifp, ctx, EthernetAddress::BROADCAST, &req) {
            Counters::inc(&ctx.counters().arp_requests_tx);
        }
    }
}

/// Retries outstanding requests, gives up on those out of tries (dropping their held
/// packets; the destination is then down for `down_time`) and expires old entries. Call
/// it periodically from one worker; it does nothing, under a read lock, until an entry
/// is due.
pub fn timer(ifp: &Interface, ctx: &mut impl NetCtx) {
    for ip in ifp.arp.expire(ctx.now(), ctx.counters()) {
        request(ifp, ctx, ip);
    }
}

fn send_arp(ifp: &Interface, ctx: &mut impl NetCtx, dst: EthernetAddress, repr: &ArpRepr) -> bool {
    debug_assert_eq!(repr.buffer_len(), ARP_LEN);
    // Pad to the Ethernet minimum (60 bytes without FCS).
    let len = (ether::HEADER_LEN + ARP_LEN).max(60);
    ctx.transmit(len, &mut |buf| {
        ether::write_header(buf, ifp.mac, dst, EthernetProtocol::Arp);
        let mut p =
            ArpPacket::new_unchecked(&mut buf[ether::HEADER_LEN..ether::HEADER_LEN + ARP_LEN]);
        repr.emit(&mut p);
        buf[ether::HEADER_LEN + ARP_LEN..].fill(0);
    })
}

/// Sends an already-built IPv4 packet to `mac`.
pub(crate) fn send_ipv4_frame(
    ifp: &Interface,
    ctx: &mut impl NetCtx,
    mac: EthernetAddress,
    ip_packet: &[u8],
) -> bool {
    let len = ether::HEADER_LEN + ip_packet.len();
    let ok = ctx.transmit(len, &mut |buf| {
        ether::write_header(buf, ifp.mac, mac, EthernetProtocol::Ipv4);
        buf[ether::HEADER_LEN..].copy_from_slice(ip_packet);
    });
    if ok {
        Counters::inc(&ctx.counters().ip_tx);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::PktMeta;
    use crate::net::testctx::*;
    use std::time::Duration;

    fn arp_frame(
        op: ArpOperation,
        sha: EthernetAddress,
        spa: Ipv4Addr,
        tpa: Ipv4Addr,
        dst: EthernetAddress,
    ) -> Vec<u8> {
        let repr = ArpRepr::EthernetIpv4 {
            operation: op,
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: tpa,
        };
        let mut f = vec![0u8; 42];
        ether::write_header(&mut f, sha, dst, EthernetProtocol::Arp);
        repr.emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
        f
    }

    fn feed(ifp: &Interface, ctx: &mut TestCtx, f: &[u8]) {
        input(
            ifp,
            ctx,
            Pkt {
                data: f,
                meta: PktMeta::rx(f.len(), 0),
            },
        );
    }

    #[test]
    fn answers_request_for_owned_address() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        let req = arp_frame(
            ArpOperation::Request,
            PEER_MAC,
            PEER_IP,
            OUR_IP,
            EthernetAddress::BROADCAST,
        );
        feed(&ifp, &mut ctx, &req);
        let sent = ctx.take_sent();
        assert_eq!(sent.len(), 1);
        let r = &sent[0];
        assert_eq!(r.len(), 60);
        assert_eq!(&r[0..6], &PEER_MAC.0);
        assert_eq!(&r[6..12], &OUR_MAC.0);
        let repr = ArpRepr::parse(&ArpPacket::new_checked(&r[14..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: OUR_MAC,
                source_protocol_addr: OUR_IP,
                target_hardware_addr: PEER_MAC,
                target_protocol_addr: PEER_IP,
            }
        );
        // The requester was learned (RFC 826: target adds the sender).
        assert_eq!(ifp.arp.lookup(PEER_IP, ctx.now), Some(PEER_MAC));
        assert_eq!(ctx.count("arp.requests_answered"), 1);
    }

    #[test]
    fn ignores_requests_for_others_without_learning() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        let req = arp_frame(
            ArpOperation::Request,
            PEER_MAC,
            PEER_IP,
            Ipv4Addr::new(198, 18, 0, 9),
            EthernetAddress::BROADCAST,
        );
        feed(&ifp, &mut ctx, &req);
        assert!(ctx.take_sent().is_empty());
        assert!(ifp.arp.is_empty());
        assert_eq!(ctx.count("arp.drop_not_for_us"), 1);
    }

    #[test]
    fn malformed_is_counted() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        let req = arp_frame(
            ArpOperation::Request,
            PEER_MAC,
            PEER_IP,
            OUR_IP,
            EthernetAddress::BROADCAST,
        );
        feed(&ifp, &mut ctx, &req[..30]); // truncated
        let mut bad = req.clone();
        bad[14 + 5] = 16; // plen 16: not IPv4
        feed(&ifp, &mut ctx, &bad);
        feed(&ifp, &mut ctx, &req[..10]); // shorter than Ethernet
        assert_eq!(ctx.count("arp.drop_malformed"), 3);
        assert!(ctx.take_sent().is_empty());
    }

    // Found by the fuzzer: requests for us from senders off our subnet, broadcast or
    // multicast were answered and cached, so a flood of them grew the cache without
    // bound (and bound the broadcast address to the asker's MAC).
    #[test]
    fn senders_that_cannot_be_neighbours_are_dropped() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        let bad = [
            Ipv4Addr::new(10, 1, 2, 3),
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(198, 18, 0, 255),
            Ipv4Addr::new(198, 18, 0, 0),
            Ipv4Addr::new(224, 0, 0, 1),
            OUR_IP,
        ];
        for spa in bad {
            let req = arp_frame(
                ArpOperation::Request,
                PEER_MAC,
                spa,
                OUR_IP,
                EthernetAddress::BROADCAST,
            );
            feed(&ifp, &mut ctx, &req);
        }
        assert!(ctx.take_sent().is_empty(), "none answered");
        assert!(ifp.arp.is_empty(), "none cached");
        assert_eq!(ctx.count("arp.drop_bad_sender"), bad.len() as u64);
        // A probe (RFC 5227: unspecified sender) is still answered, and not cached.
        let probe = arp_frame(
            ArpOperation::Request,
            PEER_MAC,
            Ipv4Addr::UNSPECIFIED,
            OUR_IP,
            EthernetAddress::BROADCAST,
        );
        feed(&ifp, &mut ctx, &probe);
        assert_eq!(ctx.take_sent().len(), 1);
        assert!(ifp.arp.is_empty());
    }

    #[test]
    fn resolve_holds_then_releases_on_reply() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        let now = ctx.now;
        assert_eq!(
            ifp.arp.resolve(PEER_IP, now, || vec![0x45; 20]),
            Resolve::HeldAndAsk
        );
        assert_eq!(
            ifp.arp.resolve(PEER_IP, now, || vec![0x46; 20]),
            Resolve::Held
        );
        let reply = arp_frame(ArpOperation::Reply, PEER_MAC, PEER_IP, OUR_IP, OUR_MAC);
        feed(&ifp, &mut ctx, &reply);
        let sent = ctx.take_sent();
        assert_eq!(sent.len(), 2, "both held packets go out, in order");
        assert_eq!(sent[0][14], 0x45);
        assert_eq!(sent[1][14], 0x46);
        assert_eq!(&sent[0][0..6], &PEER_MAC.0);
        assert_eq!(
            ifp.arp.resolve(PEER_IP, now, Vec::new),
            Resolve::Known(PEER_MAC)
        );
    }

    #[test]
    fn hold_queue_is_bounded() {
        let ifp = iface();
        let now = std::time::Instant::now();
        for _ in 0..ArpConfig::default().max_hold {
            assert_ne!(
                ifp.arp.resolve(PEER_IP, now, || vec![0; 20]),
                Resolve::Dropped
            );
        }
        assert_eq!(
            ifp.arp.resolve(PEER_IP, now, || vec![0; 20]),
            Resolve::Dropped
        );
    }

    #[test]
    fn retries_then_gives_up_and_counts_held_packets() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        let cfg = ArpConfig::default();
        ifp.arp.resolve(PEER_IP, ctx.now, || vec![0; 20]);
        ifp.arp.resolve(PEER_IP, ctx.now, || vec![0; 20]);
        // The first request is the caller's; the timer sends max_tries - 1 more.
        for _ in 1..cfg.max_tries {
            ctx.now += cfg.retry_interval;
            timer(&ifp, &mut ctx);
        }
        assert_eq!(ctx.take_sent().len() as u32, cfg.max_tries - 1);
        ctx.now += cfg.retry_interval;
        timer(&ifp, &mut ctx);
        assert!(ctx.take_sent().is_empty());
        assert_eq!(ctx.count("arp.drop_unresolved"), 2);
        // Down: packets are dropped without asking again until `down_time` has passed.
        assert_eq!(
            ifp.arp.resolve(PEER_IP, ctx.now, || vec![0; 20]),
            Resolve::HostDown
        );
        ctx.now += cfg.down_time;
        timer(&ifp, &mut ctx);
        assert!(ifp.arp.is_empty());
        assert_eq!(
            ifp.arp.resolve(PEER_IP, ctx.now, || vec![0; 20]),
            Resolve::HeldAndAsk
        );
    }

    #[test]
    fn a_down_host_that_speaks_up_is_resolved_at_once() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        let cfg = ArpConfig::default();
        ifp.arp.resolve(PEER_IP, ctx.now, || vec![0; 20]);
        for _ in 0..cfg.max_tries {
            ctx.now += cfg.retry_interval;
            timer(&ifp, &mut ctx);
        }
        assert_eq!(
            ifp.arp.resolve(PEER_IP, ctx.now, Vec::new),
            Resolve::HostDown
        );
        let req = arp_frame(
            ArpOperation::Request,
            PEER_MAC,
            PEER_IP,
            OUR_IP,
            EthernetAddress::BROADCAST,
        );
        feed(&ifp, &mut ctx, &req);
        assert_eq!(ifp.arp.lookup(PEER_IP, ctx.now), Some(PEER_MAC));
    }

    #[test]
    fn a_request_from_off_our_subnet_is_neither_answered_nor_recorded() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        // Off the subnet, our own address, the subnet's broadcast and network address:
        // no neighbour has them (the fuzzer found such senders growing the cache).
        for spa in [
            Ipv4Addr::new(203, 0, 113, 7),
            OUR_IP,
            Ipv4Addr::new(198, 18, 0, 255),
            Ipv4Addr::new(198, 18, 0, 0),
        ] {
            let req = arp_frame(
                ArpOperation::Request,
                PEER_MAC,
                spa,
                OUR_IP,
                EthernetAddress::BROADCAST,
            );
            feed(&ifp, &mut ctx, &req);
        }
        assert!(ctx.take_sent().is_empty());
        assert!(ifp.arp.is_empty());
        assert_eq!(ctx.count("arp.drop_bad_sender"), 4);
    }

    #[test]
    fn replies_and_requests_for_others_only_update() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        // A reply nobody asked for makes no entry, even addressed to us.
        let reply = arp_frame(ArpOperation::Reply, PEER_MAC, PEER_IP, OUR_IP, OUR_MAC);
        feed(&ifp, &mut ctx, &reply);
        assert!(ifp.arp.is_empty());
        // A request for someone else updates a known sender's address...
        ifp.arp.resolve_for_test(PEER_IP, PEER_MAC, ctx.now);
        let moved = EthernetAddress([0x02, 0, 0, 0, 0, 9]);
        let other = Ipv4Addr::new(198, 18, 0, 9);
        let req = arp_frame(
            ArpOperation::Request,
            moved,
            PEER_IP,
            other,
            EthernetAddress::BROADCAST,
        );
        feed(&ifp, &mut ctx, &req);
        assert_eq!(ifp.arp.lookup(PEER_IP, ctx.now), Some(moved));
        // ...and records no one new.
        let third = Ipv4Addr::new(198, 18, 0, 3);
        let req = arp_frame(
            ArpOperation::Request,
            PEER_MAC,
            third,
            other,
            EthernetAddress::BROADCAST,
        );
        feed(&ifp, &mut ctx, &req);
        assert_eq!(ifp.arp.len(), 1);
        assert!(ctx.take_sent().is_empty());
    }

    fn small_iface(cfg: ArpConfig) -> Interface {
        let base = iface();
        Interface::new(base.mac, base.mtu, base.addrs, base.gateway, cfg)
    }

    #[test]
    fn the_cache_is_capped() {
        let ifp = small_iface(ArpConfig {
            max_entries: 2,
            ..ArpConfig::default()
        });
        let mut ctx = TestCtx::new();
        for host in 2..=4u8 {
            let spa = Ipv4Addr::new(198, 18, 0, host);
            let req = arp_frame(
                ArpOperation::Request,
                PEER_MAC,
                spa,
                OUR_IP,
                EthernetAddress::BROADCAST,
            );
            feed(&ifp, &mut ctx, &req);
        }
        assert_eq!(ctx.take_sent().len(), 3, "all answered");
        assert_eq!(ifp.arp.len(), 2);
        assert_eq!(ctx.count("arp.refused_cache_full"), 1);
        // Nor does a miss on output make a third.
        let far = Ipv4Addr::new(198, 18, 0, 50);
        assert_eq!(
            ifp.arp.resolve(far, ctx.now, || vec![0; 20]),
            Resolve::CacheFull
        );
        assert_eq!(ifp.arp.len(), 2);
        // An address already in the cache is still resolved and updated.
        let known = Ipv4Addr::new(198, 18, 0, 2);
        assert_eq!(
            ifp.arp.resolve(known, ctx.now, Vec::new),
            Resolve::Known(PEER_MAC)
        );
    }

    #[test]
    fn requests_are_rate_limited_stack_wide() {
        let ifp = small_iface(ArpConfig {
            max_requests_per_sec: Some(3),
            ..ArpConfig::default()
        });
        let mut ctx = TestCtx::new();
        for host in 10..20u8 {
            let ip = Ipv4Addr::new(198, 18, 0, host);
            assert_eq!(
                ifp.arp.resolve(ip, ctx.now, || vec![0; 20]),
                Resolve::HeldAndAsk
            );
            request(&ifp, &mut ctx, ip);
        }
        assert_eq!(ctx.take_sent().len(), 3);
        assert_eq!(ctx.count("arp.requests_suppressed"), 7);
        // The retries a second later are limited too; those suppressed are tried again
        // at the next interval.
        ctx.now += ArpConfig::default().retry_interval;
        timer(&ifp, &mut ctx);
        assert_eq!(ctx.take_sent().len(), 3);
    }

    #[test]
    fn one_request_per_destination_per_retry_interval() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        assert_eq!(
            ifp.arp.resolve(PEER_IP, ctx.now, || vec![0; 20]),
            Resolve::HeldAndAsk
        );
        for _ in 0..5 {
            assert_eq!(
                ifp.arp.resolve(PEER_IP, ctx.now, || vec![0; 20]),
                Resolve::Held
            );
        }
        ctx.now += ArpConfig::default().retry_interval / 2;
        timer(&ifp, &mut ctx);
        assert!(ctx.take_sent().is_empty());
    }

    #[test]
    fn answers_make_no_entry() {
        let ifp = iface();
        let now = std::time::Instant::now();
        assert_eq!(ifp.arp.resolve_answer(PEER_IP, now), None);
        assert!(ifp.arp.is_empty());
        ifp.arp.resolve_for_test(PEER_IP, PEER_MAC, now);
        assert_eq!(
            ifp.arp.resolve_answer(PEER_IP, now),
            Some(Resolve::Known(PEER_MAC))
        );
    }

    #[test]
    fn the_timer_does_nothing_until_an_entry_is_due() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        let cfg = ArpConfig::default();
        ifp.arp.resolve_for_test(PEER_IP, PEER_MAC, ctx.now);
        // A stale entry in use pushes its own deadline later; the cache's earliest
        // deadline may then be early, and a timer run at it finds nothing to do but
        // moves it to the true one.
        let due = ifp.arp.next_deadline().unwrap();
        assert_eq!(due, ctx.now + cfg.entry_timeout * 2);
        ctx.now += cfg.entry_timeout;
        assert_eq!(
            ifp.arp.resolve(PEER_IP, ctx.now, Vec::new),
            Resolve::KnownRefresh(PEER_MAC)
        );
        ctx.now = due;
        timer(&ifp, &mut ctx);
        assert_eq!(ifp.arp.len(), 1);
        assert_eq!(ifp.arp.next_deadline(), Some(due + cfg.retry_interval));
        assert_eq!(ctx.count("arp.entries_expired"), 0);
    }

    #[test]
    fn next_deadline_is_the_earliest_retry_or_deletion() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        let cfg = ArpConfig::default();
        assert_eq!(ifp.arp.next_deadline(), None);
        // Learned from a request for us: deleted a whole timeout after going stale.
        let req = arp_frame(
            ArpOperation::Request,
            PEER_MAC,
            PEER_IP,
            OUR_IP,
            EthernetAddress::BROADCAST,
        );
        feed(&ifp, &mut ctx, &req);
        let learned = ctx.now;
        assert_eq!(
            ifp.arp.next_deadline(),
            Some(learned + cfg.entry_timeout * 2)
        );
        // A miss: the retry comes first.
        let other = Ipv4Addr::new(198, 18, 0, 9);
        ctx.now += Duration::from_secs(5);
        assert_eq!(
            ifp.arp.resolve(other, ctx.now, Vec::new),
            Resolve::HeldAndAsk
        );
        assert_eq!(ifp.arp.next_deadline(), Some(ctx.now + cfg.retry_interval));
    }

    #[test]
    fn entries_go_stale_then_expire() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        let cfg = ArpConfig::default();
        let req = arp_frame(
            ArpOperation::Request,
            PEER_MAC,
            PEER_IP,
            OUR_IP,
            EthernetAddress::BROADCAST,
        );
        feed(&ifp, &mut ctx, &req);
        ctx.take_sent();
        ctx.now += cfg.entry_timeout - Duration::from_millis(1);
        timer(&ifp, &mut ctx);
        assert_eq!(ifp.arp.lookup(PEER_IP, ctx.now), Some(PEER_MAC));
        // Past the timeout the entry is stale: still used, and revalidated (once per
        // retry interval), never holding traffic back.
        ctx.now += Duration::from_millis(1);
        assert_eq!(
            ifp.arp.resolve(PEER_IP, ctx.now, Vec::new),
            Resolve::KnownRefresh(PEER_MAC)
        );
        assert_eq!(
            ifp.arp.resolve(PEER_IP, ctx.now, Vec::new),
            Resolve::Known(PEER_MAC)
        );
        // A reply makes it fresh again.
        let reply = arp_frame(ArpOperation::Reply, PEER_MAC, PEER_IP, OUR_IP, OUR_MAC);
        feed(&ifp, &mut ctx, &reply);
        assert_eq!(ifp.arp.lookup(PEER_IP, ctx.now), Some(PEER_MAC));
        // Unanswered for a whole timeout after going stale: deleted.
        ctx.now += cfg.entry_timeout * 2 + cfg.retry_interval;
        timer(&ifp, &mut ctx);
        assert_eq!(ifp.arp.lookup(PEER_IP, ctx.now), None);
        assert_eq!(ctx.count("arp.entries_expired"), 1);
    }

    #[test]
    fn gratuitous_announcement() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        announce(&ifp, &mut ctx);
        let sent = ctx.take_sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(&sent[0][0..6], &[0xff; 6]);
        let repr = ArpRepr::parse(&ArpPacket::new_checked(&sent[0][14..42]).unwrap()).unwrap();
        match repr {
            ArpRepr::EthernetIpv4 {
                operation,
                source_protocol_addr,
                target_protocol_addr,
                ..
            } => {
                assert_eq!(operation, ArpOperation::Request);
                assert_eq!(source_protocol_addr, OUR_IP);
                assert_eq!(target_protocol_addr, OUR_IP);
            }
            _ => panic!("not Ethernet/IPv4"),
        }
    }
}

#[cfg(test)]
mod handshake_tests {
    use super::*;

    /// A neighbour proved by a handshake is recorded only where there is no entry, and
    /// the cache bound holds.
    #[test]
    fn a_handshake_records_only_an_unknown_neighbour() {
        let cfg = ArpConfig {
            max_entries: 2,
            ..ArpConfig::default()
        };
        let cache = ArpCache::new(cfg);
        let c = Counters::default();
        let now = Instant::now();
        let (a, b, d) = (
            Ipv4Addr::new(198, 18, 0, 2),
            Ipv4Addr::new(198, 18, 0, 3),
            Ipv4Addr::new(198, 18, 0, 4),
        );
        let (m1, m2) = (
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            EthernetAddress([2, 0, 0, 0, 0, 2]),
        );
        cache.learn_from_handshake(a, m1, now, &c);
        assert_eq!(cache.lookup(a, now), Some(m1));
        // An entry already there is ARP's to change.
        cache.learn_from_handshake(a, m2, now, &c);
        assert_eq!(cache.lookup(a, now), Some(m1));
        // One being resolved is left alone too (its held packets wait for the reply).
        assert_eq!(cache.resolve(b, now, Vec::new), Resolve::HeldAndAsk);
        cache.learn_from_handshake(b, m2, now, &c);
        assert_eq!(cache.lookup(b, now), None);
        // Full: refused and counted.
        cache.learn_from_handshake(d, m2, now, &c);
        assert_eq!(cache.lookup(d, now), None);
        assert_eq!(
            c.arp_cache_full.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}
