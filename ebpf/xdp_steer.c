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
// Build: cargo xtask build-ebpf (clang -O2 -g -target bpf). The object is committed beside
// this file and embedded in the library, so building the stack needs no clang.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_QUEUES 64

// Must match `stack/src/device/xdp.rs` (QueueStats).
struct queue_stats {
	__u64 redirected; // handed to the AF_XDP socket of this queue
	__u64 passed;     // not the stack's: given to the kernel
	__u64 no_socket;  // the stack's, but no socket bound on this queue: given to the kernel
};

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
