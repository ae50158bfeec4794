//! Named drop and event counters, one set per worker, summed when read.
//!
//! Every drop in the stack has its own counter here, named `layer.reason` as in
//! `netstat -s`. Workers bump their own set with relaxed atomics (no sharing on the hot
//! path: each set sits in its own cache lines); readers sum the sets.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $field:ident => $name:literal, )*) => {
        /// One worker's counters. Field names follow the counter names with `.` → `_`.
        #[derive(Debug, Default)]
        pub struct Counters {
            $( $(#[doc = $doc])* pub $field: AtomicU64, )*
        }

        impl Counters {
            /// Every counter's name, in a stable order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// `(name, value)` for every counter.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$( ($name, self.$field.load(Ordering::Relaxed)), )*]
            }
        }
    };
}

counters! {
    /// Frames taken off the AF_XDP rx rings.
    rx_frames => "device.rx_frames",
    /// Frames put on the AF_XDP tx rings.
    tx_frames => "device.tx_frames",
    /// Frames not sent because no tx frame or ring slot was free.
    tx_drop_no_room => "device.tx_drop_no_room",
    /// Frames not sent because they were larger than a UMEM frame or the MTU.
    tx_drop_too_big => "device.tx_drop_too_big",
    /// TCP segments LRO appended to an aggregate (each saves one pass through IP and
    /// TCP input's lookup, lock and dispatch).
    lro_merged => "lro.merged",
    /// Aggregates of two or more segments LRO handed to IP input.
    lro_aggregates => "lro.aggregates",
    /// Frames sent with their L4 checksum left to the device (AF_XDP TX metadata).
    tx_csum_offloaded => "device.tx_csum_offloaded",
    /// Frames whose L4 checksum was finished in software (no TX checksum offload).
    tx_csum_software => "device.tx_csum_software",
    /// TCP frames longer than one MSS handed to the kernel to segment (GSO through a
    /// packet socket, `device/gso.rs`).
    tx_gso_frames => "device.tx_gso_frames",
    /// Wire segments those frames became.
    tx_gso_segments => "device.tx_gso_segments",
    /// Of those frames, the ones the kernel refused (dropped; TCP retransmits them). After
    /// one, the worker cuts TSO segments in software again.
    tx_gso_refused => "device.tx_gso_refused",
    /// Ethernet frames shorter than the header.
    ether_truncated => "ether.drop_truncated",
    /// Frames addressed to another unicast MAC.
    ether_not_ours => "ether.drop_not_ours",
    /// Frames with an ethertype the stack does not handle (VLAN, IPv6, ...).
    ether_unknown_type => "ether.drop_unknown_ethertype",
    /// ARP packets received.
    arp_rx => "arp.rx",
    /// ARP packets too short or not Ethernet/IPv4.
    arp_malformed => "arp.drop_malformed",
    /// ARP requests for one of our addresses, answered.
    arp_requests_answered => "arp.requests_answered",
    /// ARP replies received and merged into the cache.
    arp_replies_rx => "arp.replies_rx",
    /// ARP packets for someone else (dropped after merging a known sender).
    arp_not_for_us => "arp.drop_not_for_us",
    /// ARP packets whose sender address no neighbour can have (broadcast, multicast,
    /// ours, off our subnets): neither answered nor cached.
    arp_bad_sender => "arp.drop_bad_sender",
    /// ARP requests we sent (resolution, retries, gratuitous).
    arp_requests_tx => "arp.requests_tx",
    /// Packets put on an incomplete entry's hold queue.
    arp_held => "arp.held",
    /// Packets dropped because the hold queue was full.
    arp_hold_overflow => "arp.drop_hold_overflow",
    /// Packets dropped because resolution failed after all retries.
    arp_unresolved => "arp.drop_unresolved",
    /// Cache entries that expired.
    arp_expired => "arp.entries_expired",
    /// Neighbours not recorded because the cache held `arp.max_entries` entries
    /// (learned from a request, or a miss on output, whose packet was dropped).
    arp_cache_full => "arp.refused_cache_full",
    /// Requests for our address whose sender is not a neighbour on our subnets: answered,
    /// not recorded.
    arp_off_subnet => "arp.refused_off_subnet",
    /// ARP requests not sent because the stack-wide budget was spent
    /// (`arp.max_requests_per_sec`).
    arp_requests_suppressed => "arp.requests_suppressed",
    /// Packets dropped because their next hop did not answer recently (`arp.down_time`).
    arp_host_down => "arp.drop_host_down",
    /// Answers (RSTs, echo replies) to an on-link sender with no cache entry, sent to
    /// the link-layer source of the packet they answer (answers make no entry).
    arp_answer_to_source => "arp.answers_to_link_source",
    /// Answers dropped: no cache entry, and the packet they answer came from no unicast
    /// link-layer address.
    arp_answer_no_entry => "arp.drop_answer_no_entry",
    /// IPv4 packets received.
    ip_rx => "ip.rx",
    /// Shorter than a header, or total length beyond the frame.
    ip_truncated => "ip.drop_truncated",
    /// Version is not 4, or IHL < 5.
    ip_bad_header => "ip.drop_bad_header",
    /// Header checksum wrong.
    ip_bad_checksum => "ip.drop_bad_checksum",
    /// Fragments (reassembly is not supported).
    ip_fragments => "ip.drop_fragments",
    /// Destination is not one of our addresses.
    ip_not_ours => "ip.drop_not_ours",
    /// Source is broadcast, multicast, loopback or unspecified.
    ip_martian => "ip.drop_martian_source",
    /// Protocols with no handler.
    ip_unknown_proto => "ip.drop_unknown_protocol",
    /// IPv4 packets sent.
    ip_tx => "ip.tx",
    /// Output with no route (off-link destination and no gateway).
    ip_no_route => "ip.drop_no_route",
    /// ICMP messages received.
    icmp_rx => "icmp.rx",
    /// ICMP messages too short.
    icmp_truncated => "icmp.drop_truncated",
    /// ICMP checksum wrong.
    icmp_bad_checksum => "icmp.drop_bad_checksum",
    /// Echo requests answered.
    icmp_echo_replied => "icmp.echo_replies_tx",
    /// Echo requests not answered because the stack-wide budget was spent
    /// (`RateLimits::icmp_echo_per_sec`).
    icmp_echo_suppressed => "icmp.echo_replies_suppressed",
    /// ICMP types the stack does not act on (counted, then dropped).
    icmp_other => "icmp.rx_other_types",
    /// ICMP errors (destination unreachable, time exceeded) quoting a TCP segment of
    /// ours, handed to TCP.
    icmp_tcp_errors => "icmp.tcp_errors_rx",
    /// ICMP errors whose quoted packet is too short, not ours or not TCP.
    icmp_bad_quote => "icmp.drop_bad_quote",
    /// ICMP errors TCP ignored: no such connection, or a sequence number not in flight
    /// (RFC 5927 §4.1), or a soft error.
    tcp_icmp_ignored => "tcp.icmp_ignored",
    /// Connection attempts ended by an ICMP hard error (RFC 1122 §4.2.3.9).
    tcp_icmp_dropped => "tcp.icmp_dropped",
    /// ICMP "fragmentation needed" errors that lowered a connection's MSS (path MTU
    /// discovery, RFC 1191).
    tcp_pmtu_lowered => "tcp.pmtu_lowered",
    /// ICMP "fragmentation needed" errors quoting a sequence number not in flight, or
    /// for no connection (RFC 5927 §4.1): ignored.
    tcp_pmtu_bogus => "tcp.pmtu_bogus",
    /// TCP segments received.
    tcp_rx => "tcp.rx",
    /// TCP segments shorter than a header or with a bad data offset.
    tcp_malformed => "tcp.drop_malformed",
    /// TCP checksum wrong.
    tcp_bad_checksum => "tcp.drop_bad_checksum",
    /// TCP options malformed (truncated, looping, wrong lengths).
    tcp_bad_options => "tcp.drop_bad_options",
    /// Impossible flag combinations (SYN+FIN, SYN+RST) or a zero port.
    tcp_bad_flags => "tcp.drop_bad_flags",
    /// Segments for no connection and no listener (answered with RST unless a RST).
    tcp_no_conn => "tcp.rx_no_connection",
    /// Segments of a connection processed on a worker other than the connection's owner:
    /// netisr's FLOW placement and the pcbgroups disagree (should stay 0).
    tcp_misplaced => "tcp.rx_misplaced",
    /// RSTs sent for segments that belong to no connection.
    tcp_rst_tx => "tcp.rst_tx",
    /// RSTs not sent because the stack-wide budget was spent (`RateLimits::rst_per_sec`).
    tcp_rst_suppressed => "tcp.rst_suppressed",
    /// Challenge ACKs and ACKs for unacceptable segments without data not sent because
    /// the stack-wide budget was spent (`RateLimits::ack_per_sec`).
    tcp_ack_suppressed => "tcp.acks_suppressed",
    /// ACKs for unacceptable segments without data not sent because the connection sent
    /// one less than 500 ms before.
    tcp_ack_conn_limited => "tcp.acks_suppressed_per_conn",
    /// SYNs dropped because the listener's backlog was full.
    tcp_listen_overflow => "tcp.drop_listen_overflow",
    /// SYNs a listener's worker kept in its SYN cache (no control block yet).
    tcp_syncache_added => "tcp.syncache_added",
    /// Retransmitted SYNs answered again from the SYN cache.
    tcp_syncache_dupsyn => "tcp.syncache_dupsyn",
    /// SYN,ACKs the SYN cache retransmitted.
    tcp_syncache_retransmitted => "tcp.syncache_retransmitted",
    /// SYN cache entries dropped after their last SYN,ACK went unanswered.
    tcp_syncache_expired => "tcp.syncache_expired",
    /// SYN cache entries turned into connections by the peer's next segment.
    tcp_syncache_completed => "tcp.syncache_completed",
    /// SYNs dropped because the SYN cache was full and cookies are off.
    tcp_syncache_overflow => "tcp.drop_syncache_overflow",
    /// SYN,ACKs sent with a SYN cookie (cache full, or cookies only).
    tcp_syncookies_sent => "tcp.syncookies_sent",
    /// ACKs that carried a valid SYN cookie: connections made from it.
    tcp_syncookies_ok => "tcp.syncookies_ok",
    /// ACKs to a listener with no SYN cache entry whose cookie did not validate.
    tcp_syncookies_bad => "tcp.syncookies_bad",
    /// Connections opened (active + passive).
    tcp_conns_opened => "tcp.conns_opened",
    /// Connections closed and freed.
    tcp_conns_closed => "tcp.conns_closed",
    /// TIME-WAIT connections that gave way to a new SYN for the same 4-tuple.
    tcp_tw_reopened => "tcp.time_wait_reopened",
    /// TCP segments sent.
    tcp_tx => "tcp.tx",
    /// TSO segments (longer than one MSS) cut into pieces in software.
    tcp_tso_bursts => "tcp.tso_bursts",
    /// Wire segments those TSO segments were cut into.
    tcp_tso_segments => "tcp.tso_segments",
    /// TSO segments handed to the device whole (it segments them: `device.tx_gso_*`).
    tcp_tso_offloaded => "tcp.tso_offloaded",
    /// TCP segments retransmitted (RTO, fast retransmit, SYN retries).
    tcp_retransmits => "tcp.retransmits",
    /// Segments RACK (RFC 8985) marked lost by time.
    tcp_rack_lost => "tcp.rack_lost",
    /// RACK reordering-timer expiries that marked losses.
    tcp_rack_reo_timeouts => "tcp.rack_reo_timeouts",
    /// Tail loss probes sent (RFC 8985 §7).
    tcp_tlp_probes => "tcp.tlp_probes",
    /// Probes sent in fast recovery that had gone silent (no ACK for a PTO, nothing
    /// allowed out): instead of the RTO (`TcpConfig::recovery_probe`).
    tcp_recovery_probes => "tcp.recovery_probes",
    /// Losses repaired by a tail loss probe (each reduced cwnd, RFC 8985 §7.4).
    tcp_tlp_recoveries => "tcp.tlp_recoveries",
    /// Retransmission timer expiries (each backed-off expiry counts too).
    tcp_rtos => "tcp.rtos",
    /// D-SACK blocks received (RFC 2883): segments the peer got twice, e.g. spurious
    /// retransmissions.
    tcp_dsacks_rx => "tcp.dsacks_rx",
    /// TCP segments that could not be sent (no route, ARP hold full, tx ring full).
    tcp_tx_fail => "tcp.tx_fail",
    /// Connections that negotiated ECN (RFC 3168) on their handshake.
    tcp_ecn_negotiated => "tcp.ecn_negotiated",
    /// Data segments sent ECT(0) (new data of ECN connections).
    tcp_ecn_ect_tx => "tcp.ecn_ect_tx",
    /// Data segments received with CE in the IP header, on ECN connections.
    tcp_ecn_ce_rx => "tcp.ecn_ce_rx",
    /// Segments sent with ECN-Echo (echoing CE until the peer's CWR).
    tcp_ecn_ece_tx => "tcp.ecn_ece_tx",
    /// ACKs received with ECN-Echo, on ECN connections.
    tcp_ecn_ece_rx => "tcp.ecn_ece_rx",
    /// Segments sent with CWR (first new data after a window reduction).
    tcp_ecn_cwr_tx => "tcp.ecn_cwr_tx",
    /// Segments received with CWR, on ECN connections.
    tcp_ecn_cwr_rx => "tcp.ecn_cwr_rx",
    /// Congestion-window reductions in response to ECN-Echo (at most one per window).
    tcp_ecn_reductions => "tcp.ecn_reductions",
}

impl Counters {
    /// Adds one to a counter.
    #[inline]
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Sums several workers' counters into one `(name, value)` list.
pub fn sum<'a>(sets: impl IntoIterator<Item = &'a Counters>) -> Vec<(&'static str, u64)> {
    let mut total: Vec<(&'static str, u64)> = Counters::NAMES.iter().map(|n| (*n, 0)).collect();
    for set in sets {
        for (slot, (_, v)) in total.iter_mut().zip(set.snapshot()) {
            slot.1 += v;
        }
    }
    total
}
