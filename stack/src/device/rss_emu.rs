//! RSS emulation for veth tests: attaches `ebpf/rss_tc.c` as a tc egress program on the
//! Linux side of a veth pair so frames reach the stack's side on the rx queue an RSS NIC
//! with the standard indirection table would choose (see `crate::rss`).

use aya::maps::{Array, MapData};
use aya::programs::{tc, SchedClassifier, TcAttachType};
use aya::Ebpf;

use super::{BpfError, DeviceError};
use crate::rss::INDIRECTION_SIZE;

/// The compiled tc program, committed beside its source.
pub static RSS_TC_OBJ: &[u8] = include_bytes!("../../../ebpf/rss_tc.o");

/// The attached emulation; detached when dropped.
pub struct RssEmulation {
    _ebpf: Ebpf,
    placed: Array<MapData, u64>,
    queues: u32,
}

impl std::fmt::Debug for RssEmulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RssEmulation")
            .field("queues", &self.queues)
            .finish()
    }
}

fn err(what: &str, e: impl Into<BpfError>) -> DeviceError {
    DeviceError::Bpf {
        what: what.to_string(),
        source: Box::new(e.into()),
    }
}

fn lacks(item: &str) -> DeviceError {
    DeviceError::BpfObjectIncomplete {
        object: "tc",
        item: item.to_string(),
    }
}

impl RssEmulation {
    /// Attaches to `iface` (egress), spreading flows over `queues` tx queues with entry
    /// i of the indirection table pointing at queue i mod `queues`.
    pub fn attach(iface: &str, queues: u32) -> Result<RssEmulation, DeviceError> {
        if queues == 0 || queues > 64 {
            return Err(DeviceError::Queues(format!(
                "RSS emulation needs 1..=64 queues, not {queues}"
            )));
        }
        // The program hashes with per-position tables computed from the key here.
        let rss = crate::rss::Toeplitz::default();
        let mut table = [0u32; 12 * 256];
        for pos in 0..12 {
            for value in 0..256 {
                let mut input = [0u8; 12];
                input[pos] = value as u8;
                table[pos * 256 + value] = rss.hash(&input);
            }
        }
        let mut ebpf = aya::EbpfLoader::new()
            .override_global("rss_table", &table, true)
            .load(RSS_TC_OBJ)
            .map_err(|e| err("loading the tc program", e))?;
        let mut indir: Array<_, u32> = Array::try_from(
            ebpf.map_mut("rss_indir")
                .ok_or_else(|| lacks("rss_indir"))?,
        )
        .map_err(|e| err("rss_indir", e))?;
        for i in 0..INDIRECTION_SIZE as u32 {
            // veth delivers on rx queue (queue_mapping - 1) of the peer when the
            // program sets queue_mapping (it is stored "recorded", off by one), so
            // write the queue plus one.
            indir
                .set(i, (i % queues) + 1, 0)
                .map_err(|e| err("filling rss_indir", e))?;
        }
        let placed = Array::try_from(
            ebpf.take_map("rss_placed")
                .ok_or_else(|| lacks("rss_placed"))?,
        )
        .map_err(|e| err("rss_placed", e))?;
        // An existing clsact qdisc is fine.
        let _ = tc::qdisc_add_clsact(iface);
        let prog: &mut SchedClassifier = ebpf
            .program_mut("xstack_rss")
            .ok_or_else(|| lacks("xstack_rss"))?
            .try_into()
            .map_err(|e| err("program type", e))?;
        prog.load().map_err(|e| err("loading xstack_rss", e))?;
        prog.attach(iface, TcAttachType::Egress)
            .map_err(|e| err(&format!("attaching to {iface} egress"), e))?;
        Ok(RssEmulation {
            _ebpf: ebpf,
            placed,
            queues,
        })
    }

    /// Frames placed on each queue so far.
    pub fn placed(&self) -> Vec<u64> {
        (0..self.queues)
            .map(|q| self.placed.get(&(q + 1), 0).unwrap_or(0))
            .collect()
    }
}
