// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// RSS emulation for tests: a tc egress (clsact, direct-action) program for the Linux side
// of a veth pair. veth delivers a frame on the peer's rx queue that the sender's tx queue
// names, so setting the tx queue from the Toeplitz hash of the flow -- through the same
// indirection table the stack uses -- makes veth place flows as an RSS NIC would.
//
// Hash input (Microsoft RSS): source address, destination address, and for TCP/UDP the
// source and destination ports, all in network byte order.
// The loader (`xstack rss-emulate`) fills `rss_indir` (128 entries, queue per entry).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define INDIR_SIZE 128

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, INDIR_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} rss_indir SEC(".maps");

// Frames placed, per queue (the loader reads it for diagnostics).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} rss_placed SEC(".maps");

// Toeplitz is linear in the input bytes, so the hash is the XOR over input positions of
// a per-(position, byte value) table, which the loader computes from the key with the
// stack's own implementation (`xstack::rss::Toeplitz`) and writes here before loading.
// Table lookups keep the program free of data-dependent branches for the verifier.
volatile const __u32 rss_table[12 * 256] = {0};

static __always_inline __u32 toeplitz(const __u8 *in, int len)
{
	__u32 result = 0;
#pragma unroll
	for (int i = 0; i < 8; i++)
		result ^= rss_table[i * 256 + in[i]];
	if (len == 12) {
#pragma unroll
		for (int i = 8; i < 12; i++)
			result ^= rss_table[i * 256 + in[i]];
	}
	return result;
}

SEC("classifier")
int xstack_rss(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;
	__u8 in[12];
	__builtin_memcpy(in, &ip->saddr, 4);
	__builtin_memcpy(in + 4, &ip->daddr, 4);
	int len = 8;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		__u32 ihl = ip->ihl * 4;
		if (ihl < sizeof(*ip))
			return TC_ACT_OK;
		__u8 *ports = (__u8 *)ip + ihl;
		if ((void *)(ports + 4) > data_end)
			return TC_ACT_OK;
		__builtin_memcpy(in + 8, ports, 4);
		len = 12;
	}
	__u32 hash = toeplitz(in, len);
	__u32 idx = hash & (INDIR_SIZE - 1);
	__u32 *queue = bpf_map_lookup_elem(&rss_indir, &idx);
	if (!queue)
		return TC_ACT_OK;
	__u32 q = *queue;
	__u64 *placed = bpf_map_lookup_elem(&rss_placed, &q);
	if (placed)
		__sync_fetch_and_add(placed, 1);
	skb->queue_mapping = q;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "Dual BSD/GPL";
