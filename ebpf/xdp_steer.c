// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// xstack's XDP steering program.
//
// Frames the stack owns -- ARP whose target protocol address is one of the stack's
// addresses, and IPv4 whose destination is one of them -- are redirected to the AF_XDP
// socket bound to the queue they arrived on. Everything else is passed to the kernel, so
// the host keeps its own traffic (ssh, its own addresses) on the same interface.
//
// The stack fills `owned_addrs` at start-up and reads `queue_stats`.
//
// SYN cookies at the driver (optional, `syn_listen` and `syn_config`): a bare SYN to a
// port the stack listens on, carrying timestamps, is answered here with a SYN,ACK whose
// ISS is the stack's own SYN cookie (the MAC of `stack/src/tcp/syncache.rs`: SipHash-2-4
// under the stack's key, the MSS index and time step in the low byte; the peer's window
// scale, SACK-permitted and ECN in our TSval's low 6 bits). The SYN is rewritten in place
// into the SYN,ACK and passed up with a mark in the XDP metadata; the tc ingress program
// below sends marked frames straight back out of the interface. So a handshake's first
// exchange costs the stack nothing and happens on the CPU the SYN arrived on, and the
// stack only sees the ACK, which it checks as it checks its own cookies. A SYN this
// program cannot answer without losing something (no timestamps, IP options, data,
// unusual lengths) goes to the stack as before.
//
// Build: cargo xtask build-ebpf (clang -O2 -g -target bpf). The object is committed beside
// this file and embedded in the library, so building the stack needs no clang.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_QUEUES 64

// Must match `stack/src/device/xdp.rs` (QueueStats).
struct queue_stats {
	__u64 redirected; // handed to the AF_XDP socket of this queue
	__u64 passed;     // not the stack's: given to the kernel
	__u64 no_socket;  // the stack's, but no socket bound on this queue: given to the kernel
	__u64 syn_answered; // SYNs answered here with a cookie SYN,ACK
};

// A listening address (network byte order) and what its SYN,ACKs carry. Must match
// `stack/src/device/xdp.rs` (SynListenKey, SynListen).
struct syn_listen_key {
	__u32 addr;
	__u16 port;
	__u16 pad;
};

#define SYN_SACK 1 // the listener grants SACK-permitted
#define SYN_ECN 2  // the listener takes ECN

struct syn_listen {
	__u16 mss;    // our MSS option
	__u16 window; // the SYN,ACK's window (never scaled)
	__u8 wscale;  // our window scale, sent when the peer sent one
	__u8 flags;   // SYN_SACK | SYN_ECN
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct syn_listen_key);
	__type(value, struct syn_listen);
} syn_listen SEC(".maps");

// The stack's cookie key and time base. Must match `stack/src/device/xdp.rs` (SynConfig).
struct syn_config {
	__u64 k0, k1;   // SipHash key, little-endian halves
	__u64 epoch_ns; // CLOCK_MONOTONIC of the cookies' step 0
	__u32 ts_off;   // added to the microsecond clock of our TSval
	__u32 enabled;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct syn_config);
} syn_config SEC(".maps");

// Key: IPv4 address in network byte order. Value: unused (1).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} owned_addrs SEC(".maps");

// One AF_XDP socket per rx queue, indexed by queue id.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

// Per-queue counters, per CPU (the stack sums over CPUs).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, struct queue_stats);
} queue_stats SEC(".maps");

// ARP for Ethernet/IPv4, the fixed-size layout of RFC 826.
struct arp_eth_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
} __attribute__((packed));

static __always_inline int owned(__u32 addr_be)
{
	return bpf_map_lookup_elem(&owned_addrs, &addr_be) != 0;
}

static __always_inline int is_ours(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return 0;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return 0;
		return owned(ip->daddr);
	}
	if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
		struct arp_eth_ipv4 *arp = (void *)(eth + 1);
		if ((void *)(arp + 1) > data_end)
			return 0;
		if (arp->ptype != bpf_htons(ETH_P_IP) || arp->plen != 4)
			return 0;
		__u32 tpa;
		__builtin_memcpy(&tpa, arp->tpa, 4);
		return owned(tpa);
	}
	return 0;
}

// --- SYN cookies ---------------------------------------------------------------

// Marks a frame for the tc program: the XDP metadata's first word.
#define SYNACK_MARK 0x78735341 // "xsSA"

// FreeBSD's tcp_sc_msstab, as the stack's MSS_TABLE.
static const __u16 msstab[8] = {216, 536, 1200, 1360, 1400, 1440, 1452, 1460};

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                   \
	do {                                                                       \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);          \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                             \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                             \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);          \
	} while (0)

// SipHash-2-4 of the 20 bytes the stack hashes for a cookie (`Cookies::mac`): local
// address, local port, remote address, remote port, the SYN's sequence number and the
// time step, each little-endian, the addresses as host-order integers. Low 32 bits.
static __always_inline __u32 cookie_mac(const struct syn_config *c, __u32 laddr, __u16 lport,
					__u32 raddr, __u16 rport, __u32 irs, __u32 step)
{
	__u64 k0 = c->k0, k1 = c->k1;
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = k1 ^ 0x7465646279746573ULL;
	__u64 m[3];
	m[0] = (__u64)laddr | (__u64)lport << 32 | (__u64)(raddr & 0xffff) << 48;
	m[1] = (__u64)(raddr >> 16) | (__u64)rport << 16 | (__u64)irs << 32;
	m[2] = (__u64)step | (__u64)20 << 56;
#pragma unroll
	for (int i = 0; i < 3; i++) {
		v3 ^= m[i];
		SIPROUND;
		SIPROUND;
		v0 ^= m[i];
	}
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return (__u32)(v0 ^ v1 ^ v2 ^ v3);
}

static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~(__u16)sum;
}

// The frame a SYN,ACK takes: Ethernet, IPv4 without options, TCP with 20 bytes of
// options (MSS; SACK-permitted or two NOPs; timestamps; NOP and window scale or four
// NOPs... laid out as Linux lays its own).
#define SYNACK_OPTS 20
#define SYNACK_LEN (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr) + SYNACK_OPTS)

// What a SYN's options say.
struct syn_opts {
	__u32 tsval;
	__u16 mss;
	__u8 wscale; // 0xff: none
	__u8 sack;
	__u8 ts;
};

// A walk over a SYN's options, copied to the stack; one option per `bpf_loop` step, so
// the verifier checks the step once instead of every path through 40 bytes.
struct opt_walk {
	__u8 buf[64]; // the options (at most 40 bytes); indices masked to 63
	__u32 len;
	__u32 off;
	__u32 bad;
	struct syn_opts o;
};

static long opt_step(__u64 index, void *ctx)
{
	struct opt_walk *w = ctx;
	__u32 off = w->off;
	if (off >= w->len || off >= 40)
		return 1;
	__u8 kind = w->buf[off & 63];
	if (kind == 0) // end of options
		return 1;
	if (kind == 1) { // NOP
		w->off = off + 1;
		return 0;
	}
	__u8 olen = w->buf[(off + 1) & 63];
	if (olen < 2 || off + olen > w->len) {
		w->bad = 1;
		return 1;
	}
	if (kind == 2 && olen == 4) {
		w->o.mss = (__u16)w->buf[(off + 2) & 63] << 8 | w->buf[(off + 3) & 63];
	} else if (kind == 3 && olen == 3) {
		__u8 ws = w->buf[(off + 2) & 63];
		w->o.wscale = ws > 14 ? 14 : ws;
	} else if (kind == 4 && olen == 2) {
		w->o.sack = 1;
	} else if (kind == 8 && olen == 10) {
		w->o.tsval = (__u32)w->buf[(off + 2) & 63] << 24 | (__u32)w->buf[(off + 3) & 63] << 16 |
			     (__u32)w->buf[(off + 4) & 63] << 8 | w->buf[(off + 5) & 63];
		w->o.ts = 1;
	}
	w->off = off + olen;
	return 0;
}

// Parses a SYN's options (`len` bytes, at most 40, at `at` in the frame). Returns 0 if
// they are well formed.
static __always_inline int parse_syn_opts(struct xdp_md *ctx, __u32 at, __u32 len,
					  struct syn_opts *o)
{
	struct opt_walk w = {};
	w.o.mss = 536;
	w.o.wscale = 0xff;
	if (len > 40)
		return -1;
	if (len == 0) {
		*o = w.o;
		return 0;
	}
	if (bpf_xdp_load_bytes(ctx, at, w.buf, len))
		return -1;
	w.len = len;
	bpf_loop(40, opt_step, &w, 0);
	if (w.bad)
		return -1;
	*o = w.o;
	return 0;
}

// Answers a bare SYN for one of the stack's listeners with a cookie SYN,ACK, rewriting
// the frame in place. Returns XDP_PASS with the frame marked for the tc program, or -1
// when the SYN is left to the stack.
static __always_inline int answer_syn(struct xdp_md *ctx, struct queue_stats *st)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
	if ((void *)(tcp + 1) > data_end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_TCP ||
	    (ip->frag_off & bpf_htons(0x3fff)))
		return -1;
	// A bare SYN (ECE and CWR allowed), no data.
	__u8 flags = ((__u8 *)tcp)[13];
	if ((flags & 0x3f) != 0x02)
		return -1;
	__u32 thl = tcp->doff * 4;
	if (thl < sizeof(struct tcphdr) || bpf_ntohs(ip->tot_len) != sizeof(struct iphdr) + thl)
		return -1;
	__u32 zero = 0;
	struct syn_config *cfg = bpf_map_lookup_elem(&syn_config, &zero);
	if (!cfg || !cfg->enabled)
		return -1;
	struct syn_listen_key key = {.addr = ip->daddr, .port = tcp->dest, .pad = 0};
	struct syn_listen *l = bpf_map_lookup_elem(&syn_listen, &key);
	if (!l) {
		key.addr = 0; // a wildcard listener
		l = bpf_map_lookup_elem(&syn_listen, &key);
		if (!l)
			return -1;
	}
	struct syn_opts o;
	if (parse_syn_opts(ctx, (__u8 *)(tcp + 1) - (__u8 *)data, thl - sizeof(struct tcphdr), &o) ||
	    !o.ts)
		return -1;

	__u32 laddr = bpf_ntohl(ip->daddr), raddr = bpf_ntohl(ip->saddr);
	__u16 lport = bpf_ntohs(tcp->dest), rport = bpf_ntohs(tcp->source);
	__u32 irs = bpf_ntohl(tcp->seq);
	__u64 now = bpf_ktime_get_ns();
	__u32 step = now > cfg->epoch_ns ? (__u32)((now - cfg->epoch_ns) / 64000000000ULL) : 0;
	__u32 idx = 0;
#pragma unroll
	for (int i = 0; i < 8; i++)
		if (msstab[i] <= o.mss)
			idx = i;
	__u32 iss = (cookie_mac(cfg, laddr, lport, raddr, rport, irs, step) & ~0xffU) |
		    (step & 0x1f) << 3 | idx;
	int ecn = (flags & 0xc0) == 0xc0 && (l->flags & SYN_ECN);
	__u32 bits = (o.wscale == 0xff ? 0xf : o.wscale) | (o.sack ? 0x10 : 0) | (ecn ? 0x20 : 0);
	// A microsecond clock above the option bits (`Cookies::tsval`): the ACK's echo
	// dates the SYN,ACK for the stack's RTT sample.
	__u32 us = now > cfg->epoch_ns ? (__u32)((now - cfg->epoch_ns) / 1000) : 0;
	__u32 tsval = (us + cfg->ts_off) << 6 | bits;
	__u16 mss = l->mss, window = l->window;
	__u8 wscale = l->wscale, sack = o.sack && (l->flags & SYN_SACK), peer_ws = o.wscale != 0xff;

	// Resize to the SYN,ACK's length.
	int delta = (int)SYNACK_LEN - (int)(data_end - data);
	if (delta && bpf_xdp_adjust_tail(ctx, delta))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	tcp = (void *)(ip + 1);
	__u8 *opt = (__u8 *)(tcp + 1);
	if ((void *)(opt + SYNACK_OPTS) > data_end)
		return -1;

	__u8 mac[ETH_ALEN];
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);

	__u32 a = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = a;
	ip->tos = 0;
	ip->tot_len = bpf_htons(sizeof(struct iphdr) + sizeof(struct tcphdr) + SYNACK_OPTS);
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000); // DF
	ip->ttl = 64;
	ip->check = 0;
	__u64 sum = 0;
	__u16 *w = (__u16 *)ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	ip->check = csum_fold(sum);

	__u16 p = tcp->source;
	tcp->source = tcp->dest;
	tcp->dest = p;
	tcp->ack_seq = bpf_htonl(irs + 1);
	tcp->seq = bpf_htonl(iss);
	((__u8 *)tcp)[12] = (sizeof(struct tcphdr) + SYNACK_OPTS) / 4 << 4;
	((__u8 *)tcp)[13] = 0x12 | (ecn ? 0x40 : 0); // SYN, ACK (ECE)
	tcp->window = bpf_htons(window);
	tcp->check = 0;
	tcp->urg_ptr = 0;
	opt[0] = 2; opt[1] = 4; opt[2] = mss >> 8; opt[3] = mss & 0xff;
	if (sack) {
		opt[4] = 4; opt[5] = 2;
	} else {
		opt[4] = 1; opt[5] = 1;
	}
	opt[6] = 8; opt[7] = 10;
	opt[8] = tsval >> 24; opt[9] = tsval >> 16; opt[10] = tsval >> 8; opt[11] = tsval;
	opt[12] = o.tsval >> 24; opt[13] = o.tsval >> 16; opt[14] = o.tsval >> 8; opt[15] = o.tsval;
	opt[16] = 1;
	if (peer_ws) {
		opt[17] = 3; opt[18] = 3; opt[19] = wscale;
	} else {
		opt[17] = 1; opt[18] = 1; opt[19] = 1;
	}
	// The checksum over the pseudo-header and the 40 bytes of TCP.
	sum = (ip->saddr & 0xffff) + (ip->saddr >> 16) + (ip->daddr & 0xffff) + (ip->daddr >> 16) +
	      bpf_htons(IPPROTO_TCP) + bpf_htons(sizeof(struct tcphdr) + SYNACK_OPTS);
	w = (__u16 *)tcp;
#pragma unroll
	for (int i = 0; i < 20; i++)
		sum += w[i];
	tcp->check = csum_fold(sum);

	// The mark for the tc program.
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(__u32)))
		return XDP_DROP; // no metadata room: the peer retransmits its SYN
	__u32 *meta = (void *)(long)ctx->data_meta;
	if ((void *)(meta + 1) > (void *)(long)ctx->data)
		return XDP_DROP;
	*meta = SYNACK_MARK;
	if (st)
		st->syn_answered++;
	return XDP_PASS;
}

// tc ingress: sends the SYN,ACKs the XDP program made back out of the interface they
// came in on. Anything without the mark goes on into the kernel untouched.
SEC("classifier")
int xstack_synack_out(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	__u32 *meta = (void *)(long)skb->data_meta;
	if ((void *)(meta + 1) > data || *meta != SYNACK_MARK)
		return TC_ACT_OK;
	return bpf_redirect(skb->ifindex, 0);
}

SEC("xdp")
int xstack_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 queue = ctx->rx_queue_index;
	struct queue_stats *st = bpf_map_lookup_elem(&queue_stats, &queue);

	if (!is_ours(data, data_end)) {
		if (st)
			st->passed++;
		return XDP_PASS;
	}

	int synack = answer_syn(ctx, st);
	if (synack >= 0)
		return synack;

	// With XDP_PASS as the fallback action, a queue without a socket keeps working
	// through the kernel instead of dropping.
	long action = bpf_redirect_map(&xsks, queue, XDP_PASS);
	if (st) {
		if (action == XDP_REDIRECT)
			st->redirected++;
		else
			st->no_socket++;
	}
	return action;
}

char _license[] SEC("license") = "Dual BSD/GPL";
