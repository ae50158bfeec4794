//! Pcbgroups (FreeBSD `in_pcbgroup`): the partition of the table by RSS hash, which
//! worker owns which group, and the per-group counters.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::{Conn, FourTuple, Listener, PcbTable};
use crate::rss::{FlowEvent, INDIRECTION_SIZE};

/// One pcbgroup (FreeBSD `in_pcbgroup`): the connections whose RSS hash maps to it,
/// and a replica of every listener (wildcard members of every group), behind the
/// group's own lock. A worker owns a set of groups; its hot path takes only their locks.
#[derive(Default)]
pub(super) struct PcbGroup {
    pub(super) conns: RwLock<HashMap<FourTuple, Arc<Conn>>>,
    pub(super) listeners: RwLock<HashMap<SocketAddrV4, Arc<Listener>>>,
    /// IP packets of the group's flows placed on its owner (directly or handed off).
    packets: AtomicU64,
    /// Of those, packets that arrived on another worker's queue and were handed off.
    handoffs_in: AtomicU64,
    /// Packets of the group's flows dropped because the owner's netisr queue was full.
    qdrops: AtomicU64,
}

/// How RSS hashes map to groups and groups to workers: the device's indirection entry
/// `e` (of [`INDIRECTION_SIZE`]) sends a flow to queue `e mod nworkers`; entry `e` maps to
/// one of the groups that queue's worker owns (group `g` is owned by worker
/// `g mod nworkers`), so a group's connections always arrive on its owner's queue.
#[derive(Clone, Debug)]
pub struct GroupMap {
    entry_group: Vec<u16>,
    nworkers: usize,
    ngroups: usize,
}

impl GroupMap {
    /// `ngroups` is rounded up to a power of two of at least `nworkers`.
    pub fn new(nworkers: usize, ngroups: usize) -> GroupMap {
        let nworkers = nworkers.max(1);
        let ngroups = ngroups.max(nworkers).next_power_of_two();
        let entry_group = (0..INDIRECTION_SIZE)
            .map(|e| {
                let w = e % nworkers;
                let owned: Vec<usize> = (0..ngroups).filter(|g| g % nworkers == w).collect();
                owned[(e / nworkers) % owned.len()] as u16
            })
            .collect();
        GroupMap {
            entry_group,
            nworkers,
            ngroups,
        }
    }

    /// The group of an RSS hash.
    pub fn group(&self, hash: u32) -> usize {
        self.entry_group[hash as usize & (INDIRECTION_SIZE - 1)] as usize
    }

    /// The worker that owns a group.
    pub fn owner(&self, group: usize) -> usize {
        group % self.nworkers
    }

    /// Number of groups.
    pub fn ngroups(&self) -> usize {
        self.ngroups
    }

    /// Number of workers the groups are spread over.
    pub fn nworkers(&self) -> usize {
        self.nworkers
    }
}

/// One group's counters and owner (for `/stats` and the exit counters).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupStats {
    /// Group index.
    pub group: usize,
    /// Owning worker.
    pub worker: usize,
    /// Connections in the group.
    pub connections: usize,
    /// IP packets of the group's flows placed on its owner, directly or handed off.
    pub packets: u64,
    /// Of `packets`, those handed to the owner from another worker's queue.
    pub handoffs_in: u64,
    /// Packets of the group's flows dropped at the owner's full netisr queue.
    pub qdrops: u64,
}

impl GroupStats {
    /// Nothing happened in this group (left out of compact output).
    pub fn is_empty(&self) -> bool {
        self.connections == 0 && self.packets == 0 && self.qdrops == 0
    }
}

impl PcbTable {
    /// Connections per group.
    pub fn group_stats(&self) -> Vec<GroupStats> {
        self.groups
            .iter()
            .enumerate()
            .map(|(g, grp)| GroupStats {
                group: g,
                worker: self.map.owner(g),
                connections: grp.conns.read().unwrap_or_else(|e| e.into_inner()).len(),
                packets: grp.packets.load(Ordering::Relaxed),
                handoffs_in: grp.handoffs_in.load(Ordering::Relaxed),
                qdrops: grp.qdrops.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Counts one IP packet of the flow with RSS hash `hash` in its group: where netisr
    /// placed it (the FLOW observer of a stack, or the simulator).
    pub fn note_flow(&self, hash: u32, event: FlowEvent) {
        let g = &self.groups[self.map.group(hash)];
        match event {
            FlowEvent::Direct => {
                g.packets.fetch_add(1, Ordering::Relaxed);
            }
            FlowEvent::HandedOff => {
                g.packets.fetch_add(1, Ordering::Relaxed);
                g.handoffs_in.fetch_add(1, Ordering::Relaxed);
            }
            FlowEvent::QDropped => {
                g.qdrops.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
