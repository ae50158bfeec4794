use super::*;
use crate::rss::FlowEvent;
use crate::rss::{Toeplitz, INDIRECTION_SIZE};
use crate::tcp::seq::Seq;
use crate::tcp::tcb::Tcb;
use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

fn tcb(local: SocketAddrV4, remote: SocketAddrV4) -> Tcb {
    let cc = xstack_cc::Registry::with_builtins().create_default();
    Tcb::connect(
        crate::tcp::config::TcpConfig::default(),
        local,
        remote,
        Seq(1),
        cc,
        Instant::now(),
    )
}

#[test]
fn group_owner_is_the_rss_queue_for_any_worker_count() {
    for nworkers in 1..=6 {
        for ngroups in [1, 2, 4, 8, 16, 64] {
            let map = GroupMap::new(nworkers, ngroups);
            assert!(map.ngroups().is_power_of_two() && map.ngroups() >= nworkers);
            for h in (0u32..4096).map(|x| x.wrapping_mul(0x9e37_79b9)) {
                assert_eq!(
                    map.owner(map.group(h)),
                    Toeplitz::queue_of(h, nworkers),
                    "{nworkers} workers {ngroups} groups"
                );
            }
            // Every group is reachable from the indirection table.
            let mut seen = vec![false; map.ngroups()];
            for e in 0..INDIRECTION_SIZE as u32 {
                seen[map.group(e)] = true;
            }
            assert!(
                seen.iter().all(|&s| s),
                "{nworkers} workers {ngroups} groups: {seen:?}"
            );
        }
    }
}

// `max_connections`: the table refuses a connection beyond it (counted), a taken tuple
// is still "in use", and a removed connection makes room.
#[test]
fn insert_stops_at_max_connections() {
    let table = PcbTable::new();
    let cfg = crate::tcp::TcpConfig {
        max_connections: 2,
        ..Default::default()
    };
    let bounds = cfg.bounds.clone();
    let local = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80);
    let remote = |p| SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), p);
    let tcb = |p| {
        let cc = xstack_cc::Registry::with_builtins().create_default();
        Tcb::connect(cfg.clone(), local, remote(p), Seq(1), cc, Instant::now())
    };
    let tuple = |p| FourTuple {
        local,
        remote: remote(p),
    };
    let a = table.insert(tuple(1), 0, tcb(1)).expect("first");
    table.insert(tuple(2), 0, tcb(2)).expect("second");
    assert_eq!(
        table.insert(tuple(2), 0, tcb(2)).err(),
        Some(PcbError::AddrInUse)
    );
    let err = table.insert(tuple(3), 0, tcb(3)).err();
    assert_eq!(err, Some(PcbError::ConnLimit(2)));
    assert!(err.unwrap().to_string().contains("max_connections (2)"));
    let counted = bounds.counters().snapshot();
    assert!(
        counted.contains(&("tcp.conns_refused_limit", 1)),
        "{counted:?}"
    );
    table.remove(&a);
    table.insert(tuple(3), 0, tcb(3)).expect("room again");
    assert_eq!(table.len(), 2);
}

#[test]
fn concurrent_connects_never_share_a_tuple() {
    let table = Arc::new(PcbTable::with_groups(
        GroupMap::new(4, 16),
        Arc::new(Toeplitz::default()),
    ));
    let local_ip = Ipv4Addr::new(198, 18, 0, 1);
    let remote = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let t = table.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for _ in 0..500 {
                    // pick_port and insert race with the other threads: a lost race
                    // must show up as AddrInUse, never as a shared tuple.
                    let Ok(p) = t.pick_port(local_ip, remote, &|_| true) else {
                        continue;
                    };
                    let local = SocketAddrV4::new(local_ip, p);
                    if let Ok(c) = t.insert(FourTuple { local, remote }, 0, tcb(local, remote)) {
                        mine.push(c.tuple);
                    }
                }
                mine
            })
        })
        .collect();
    let all: Vec<FourTuple> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len());
    assert_eq!(table.len(), all.len());
    assert_eq!(table.all().len(), all.len());
    // Each connection sits in the group its hash names.
    for c in table.all() {
        assert!(table.lookup(&c.tuple).is_some_and(|x| x.id == c.id));
    }
    let per_group: usize = table.group_stats().iter().map(|g| g.connections).sum();
    assert_eq!(per_group, all.len());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// The reservation table keeps 4-tuples unique under any interleaving of
    /// concurrent connects and closes: threads pick ports towards a few remotes
    /// (aligned to a random worker, falling back to any port) and close a random
    /// share of their connections as they go; at the end every live tuple is
    /// distinct, findable, and counted once.
    #[test]
    fn reservations_stay_unique_under_concurrent_connects_and_closes(
        nthreads in 2usize..6,
        ops in 20usize..200,
        nremotes in 1u16..4,
        close_every in 2usize..7,
        seed in proptest::prelude::any::<u64>(),
    ) {
        let table = Arc::new(PcbTable::with_groups(
            GroupMap::new(4, 16),
            Arc::new(Toeplitz::default()),
        ));
        let local_ip = Ipv4Addr::new(198, 18, 0, 1);
        let threads: Vec<_> = (0..nthreads)
            .map(|t| {
                let table = table.clone();
                std::thread::spawn(move || {
                    let mut live: Vec<Arc<Conn>> = Vec::new();
                    let mut x = seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    for i in 0..ops {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let remote = SocketAddrV4::new(
                            Ipv4Addr::new(198, 18, 0, 2),
                            80 + (x % nremotes as u64) as u16,
                        );
                        let want = (x >> 8) as usize % 4;
                        let rss = table.rss.clone();
                        let aligned = move |p: u16| {
                            let h = rss.ipv4_ports(*remote.ip(), local_ip, remote.port(), p);
                            Toeplitz::queue_of(h, 4) == want
                        };
                        if let Ok(p) = table.pick_port(local_ip, remote, &aligned) {
                            let local = SocketAddrV4::new(local_ip, p);
                            if let Ok(c) =
                                table.insert(FourTuple { local, remote }, 0, tcb(local, remote))
                            {
                                live.push(c);
                            }
                        }
                        if i % close_every == 0 && !live.is_empty() {
                            let c = live.swap_remove((x >> 16) as usize % live.len());
                            table.remove(&c);
                        }
                    }
                    live.into_iter().map(|c| c.tuple).collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<FourTuple> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let unique: HashSet<_> = all.iter().copied().collect();
        proptest::prop_assert_eq!(unique.len(), all.len());
        proptest::prop_assert_eq!(table.len(), all.len());
        for t in &all {
            proptest::prop_assert!(table.lookup(t).is_some());
        }
    }
}

#[test]
fn listeners_are_members_of_every_group_and_leave_all() {
    let table = PcbTable::with_groups(GroupMap::new(2, 8), Arc::new(Toeplitz::default()));
    let l = table
        .listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 16)
        .unwrap();
    let local = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80);
    for p in 1000..1100 {
        let tuple = FourTuple {
            local,
            remote: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), p),
        };
        assert!(table.lookup_listener(&tuple).is_some());
    }
    table.unlisten(&l);
    let tuple = FourTuple {
        local,
        remote: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 1000),
    };
    assert!(table.lookup_listener(&tuple).is_none());
    assert!(table
        .listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 16)
        .is_ok());
}

fn tuple_from(port: u16) -> FourTuple {
    FourTuple {
        local: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80),
        remote: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), port),
    }
}

#[test]
fn per_worker_listeners_take_their_own_groups_and_survive_a_sibling_closing() {
    let table = PcbTable::with_groups(GroupMap::new(4, 16), Arc::new(Toeplitz::default()));
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80);
    let set = table.listen_per_worker(any, 16).unwrap();
    assert_eq!(set.len(), 4);
    // The address is taken, for a shared listener and for another set alike.
    assert_eq!(table.listen(any, 16).err(), Some(PcbError::AddrInUse));
    assert_eq!(
        table.listen_per_worker(any, 16).err(),
        Some(PcbError::AddrInUse)
    );
    let owner = |t: &FourTuple| table.group_map().owner(table.group_of(t));
    let taker = |t: &FourTuple| table.lookup_listener(t).and_then(|l| l.worker);
    for p in 1000..1400 {
        let t = tuple_from(p);
        assert_eq!(taker(&t), Some(owner(&t)), "port {p}");
    }
    // Worker 1's listener closes: its groups go to worker 2's, the rest stay.
    table.unlisten(&set[1]);
    for p in 1000..1400 {
        let t = tuple_from(p);
        let want = if owner(&t) == 1 { 2 } else { owner(&t) };
        assert_eq!(taker(&t), Some(want), "port {p}");
    }
    // Closing 2 and 3 too: everything wraps round to worker 0's.
    table.unlisten(&set[2]);
    table.unlisten(&set[3]);
    assert!((1000..1100).all(|p| taker(&tuple_from(p)) == Some(0)));
    assert_eq!(table.listen(any, 16).err(), Some(PcbError::AddrInUse));
    // The last one closes: the port is free again.
    table.unlisten(&set[0]);
    assert!(table.lookup_listener(&tuple_from(1000)).is_none());
    let shared = table.listen(any, 16).unwrap();
    assert_eq!(shared.worker, None);
    assert!(table
        .lookup_listener(&tuple_from(1000))
        .is_some_and(|l| Arc::ptr_eq(&l, &shared)));
}

#[test]
fn group_counters_follow_the_flow_hash() {
    let table = PcbTable::with_groups(GroupMap::new(2, 4), Arc::new(Toeplitz::default()));
    let t = tuple_from(4242);
    let (l, r) = (t.local, t.remote);
    let hash = Toeplitz::default().ipv4_ports(*r.ip(), *l.ip(), r.port(), l.port());
    table.note_flow(hash, FlowEvent::Direct);
    table.note_flow(hash, FlowEvent::HandedOff);
    table.note_flow(hash, FlowEvent::QDropped);
    let g = table.group_of(&t);
    let stats = table.group_stats();
    assert_eq!(
        (stats[g].packets, stats[g].handoffs_in, stats[g].qdrops),
        (2, 1, 1)
    );
    assert_eq!(stats.iter().filter(|s| !s.is_empty()).count(), 1);
}

/// A four-worker table with a fixed port secret; picks and inserts a port from
/// 198.18.0.1 to `remote` whose reply lands on worker `want`.
fn connect_aligned(table: &PcbTable, remote: SocketAddrV4, want: usize) -> u16 {
    let local_ip = Ipv4Addr::new(198, 18, 0, 1);
    let rss = table.rss.clone();
    let aligned = move |p: u16| {
        let h = rss.ipv4_ports(*remote.ip(), local_ip, remote.port(), p);
        Toeplitz::queue_of(h, 4) == want
    };
    let p = table.pick_port(local_ip, remote, &aligned).expect("a port");
    assert!(aligned(p), "port {p} lands on worker {want}");
    let local = SocketAddrV4::new(local_ip, p);
    table
        .insert(FourTuple { local, remote }, want, tcb(local, remote))
        .expect("the tuple is free");
    p
}

fn keyed_table(key: [u8; 16]) -> PcbTable {
    let mut t = PcbTable::with_groups(GroupMap::new(4, 16), Arc::new(Toeplitz::default()));
    t.set_port_key(key);
    t
}

#[test]
fn ephemeral_ports_are_scattered_over_the_range_by_destination() {
    let table = keyed_table(*b"0123456789abcdef");
    // One connection to each of 200 destinations, workers in turn: RFC 6056's secret
    // offset per destination scatters them (a counter would give a run of ports).
    let ports: Vec<u16> = (0..200u16)
        .map(|i| {
            let remote = SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, (i % 50) as u8), 80 + i / 50);
            connect_aligned(&table, remote, i as usize % 4)
        })
        .collect();
    let steps: Vec<i32> = ports
        .windows(2)
        .map(|w| w[1] as i32 - w[0] as i32)
        .collect();
    let small = steps.iter().filter(|d| d.abs() < 64).count();
    assert!(small < 10, "{small} of 199 steps are short: {ports:?}");
    let ups = steps.iter().filter(|&&d| d > 0).count();
    assert!((60..140).contains(&ups), "{ups} of 199 steps go up");
    let (lo, hi) = (ports.iter().min().unwrap(), ports.iter().max().unwrap());
    assert!(hi - lo > 20_000, "spread {lo}..{hi}");
    // Another secret, other ports.
    let other = keyed_table(*b"fedcba9876543210");
    let remote = SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 0), 80);
    assert_ne!(connect_aligned(&other, remote, 0), ports[0]);
}

#[test]
fn ports_to_one_destination_move_on_and_never_collide() {
    let table = keyed_table(*b"0123456789abcdef");
    let remote = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80);
    let mut seen = HashSet::new();
    for i in 0..2000 {
        let p = connect_aligned(&table, remote, i % 4);
        assert!(seen.insert(p), "port {p} handed out twice");
    }
    // Once one is closed (TIME-WAIT over), the search does not come straight back to
    // it: the destination's increment has moved past.
    let first = *seen.iter().next().unwrap();
    let local = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), first);
    let conn = table.lookup(&FourTuple { local, remote }).unwrap();
    table.remove(&conn);
    let next = connect_aligned(&table, remote, 0);
    assert_ne!(next, first);
}
