//! The link under a worker: where its frames come from and where they go.
//!
//! A worker's loop ([`crate::pipeline::WorkerCore::step`]) is written against two small
//! traits, one per direction, so the same code runs over an AF_XDP socket's rings on a
//! real interface ([`XskLinkRx`], [`crate::device::xsk::XskTx`]) and over in-memory
//! queues in the simulator ([`MemRx`], [`MemTx`]), where a test or a conformance runner
//! injects raw frames and captures what the stack sends.

use xdpilone::xdp::XdpDesc;

use crate::device::gso::{self, GsoParams};
use crate::device::xsk::{TxError, XskRx, XskTx};
use crate::mbuf::Pkt;

/// The receive side of a link: a batch of frames at a time, borrowed until released.
pub(crate) trait LinkRx {
    /// Takes up to `max` received frames as the current batch; returns how many. The
    /// previous batch must have been released.
    fn receive(&mut self, max: u32) -> usize;
    /// Frame `i` of the current batch, or `None` when its descriptor is unusable (it
    /// points outside the buffer area).
    fn frame(&self, i: usize) -> Option<Pkt<'_>>;
    /// Gives the current batch's frames back to the link.
    fn release(&mut self);
    /// Called when a busy-polling worker found nothing to do.
    fn idle(&mut self) {}
}

/// The transmit side of a link.
pub(crate) trait LinkTx {
    /// Writes one frame of `len` bytes with `fill` and queues it.
    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), TxError>;
    /// As [`LinkTx::send`], for a frame whose L4 checksum is to be finished by the
    /// device: the 16-bit field at `csum_start + csum_offset` holds the pseudo-header
    /// sum. A link without the offload finishes it in software.
    fn send_partial(
        &mut self,
        len: usize,
        csum_start: u16,
        csum_offset: u16,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), TxError>;
    /// Whether [`LinkTx::send_partial`] leaves the checksum to the device.
    fn tx_csum(&self) -> bool;
    /// The largest frame [`LinkTx::send_tso`] takes; 0 when the link segments nothing.
    fn tso_frame_max(&self) -> usize {
        0
    }
    /// Writes one TCP frame longer than a segment, for the device to cut into segments
    /// as `params` says (`CSUM_TSO`; see [`crate::device::gso`] for what each segment
    /// gets). The TCP checksum field holds the pseudo-header sum over the frame's whole
    /// TCP length.
    fn send_tso(
        &mut self,
        _len: usize,
        _params: GsoParams,
        _fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), TxError> {
        Err(TxError::TooBig)
    }
    /// Frames queued and not yet handed over.
    fn outstanding(&self) -> usize;
    /// Frames written since the last [`LinkTx::flush`] and not yet on their way (what
    /// holding the flush back would delay).
    fn queued(&self) -> usize {
        self.outstanding()
    }
    /// Of [`LinkTx::queued`], the frames that are not pure ACKs (data, SYN, FIN, RST, or
    /// anything not TCP): what a peer may be waiting for.
    fn queued_urgent(&self) -> usize {
        self.queued()
    }
    /// Hands the queued frames to the device.
    fn flush(&mut self);
}

/// An AF_XDP socket's receive half with its current batch of descriptors.
pub(crate) struct XskLinkRx {
    rx: XskRx,
    batch: Vec<XdpDesc>,
}

impl XskLinkRx {
    pub(crate) fn new(rx: XskRx) -> Self {
        XskLinkRx {
            rx,
            batch: Vec::with_capacity(64),
        }
    }

    /// The socket's fd, for poll(2).
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        self.rx.fd()
    }
}

impl LinkRx for XskLinkRx {
    fn receive(&mut self, max: u32) -> usize {
        self.rx.receive(&mut self.batch, max);
        self.batch.len()
    }

    fn frame(&self, i: usize) -> Option<Pkt<'_>> {
        let (data, meta) = self.rx.frame(self.batch.get(i)?)?;
        Some(Pkt { data, meta })
    }

    fn release(&mut self) {
        self.rx.recycle(&self.batch);
        self.batch.clear();
    }

    fn idle(&mut self) {
        self.rx.wake_if_needed();
    }
}

impl LinkTx for XskTx {
    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), TxError> {
        XskTx::send(self, len, fill)
    }

    fn send_partial(
        &mut self,
        len: usize,
        csum_start: u16,
        csum_offset: u16,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), TxError> {
        XskTx::send_partial(self, len, csum_start, csum_offset, fill)
    }

    fn tx_csum(&self) -> bool {
        XskTx::tx_csum(self)
    }

    fn tso_frame_max(&self) -> usize {
        if self.gso() {
            gso::MAX_FRAME
        } else {
            0
        }
    }

    fn send_tso(
        &mut self,
        len: usize,
        params: GsoParams,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), TxError> {
        self.send_gso(len, params, fill)
    }

    fn outstanding(&self) -> usize {
        XskTx::outstanding(self)
    }

    fn queued(&self) -> usize {
        XskTx::queued(self)
    }

    fn queued_urgent(&self) -> usize {
        XskTx::queued_urgent(self)
    }

    fn flush(&mut self) {
        XskTx::flush(self);
    }
}

#[cfg(any(test, feature = "sim"))]
pub(crate) use mem::{MemRx, MemTx};

#[cfg(any(test, feature = "sim"))]
mod mem {
    use super::*;
    use crate::mbuf::PktMeta;
    use std::collections::VecDeque;

    /// An in-memory receive queue: frames pushed by a simulator or test harness.
    #[derive(Debug, Default)]
    pub(crate) struct MemRx {
        /// Frames waiting to be received, oldest first.
        pub(crate) queue: VecDeque<Vec<u8>>,
        batch: Vec<Vec<u8>>,
        rxq: u16,
    }

    impl MemRx {
        /// An empty queue whose frames are reported as received on queue `rxq`.
        pub(crate) fn new(rxq: u16) -> Self {
            MemRx {
                rxq,
                ..Default::default()
            }
        }
    }

    impl LinkRx for MemRx {
        fn receive(&mut self, max: u32) -> usize {
            let n = self.queue.len().min(max as usize);
            self.batch.extend(self.queue.drain(..n));
            n
        }

        fn frame(&self, i: usize) -> Option<Pkt<'_>> {
            let data = self.batch.get(i)?;
            Some(Pkt {
                data,
                meta: PktMeta::rx(data.len(), self.rxq),
            })
        }

        fn release(&mut self) {
            self.batch.clear();
        }
    }

    /// Frames a [`MemTx`] holds before it declares the output runaway.
    const MAX_UNTAKEN: usize = 1 << 20;

    /// An in-memory transmit queue: what the stack sent, for the harness to take.
    #[derive(Debug)]
    pub(crate) struct MemTx {
        /// Frames sent, oldest first.
        pub(crate) sent: Vec<Vec<u8>>,
        /// Act as a device that finishes TCP checksums (the stack then hands frames over
        /// with only the pseudo-header sum, as to an AF_XDP socket with TX metadata).
        pub(crate) csum_offload: bool,
        /// The largest frame accepted (the link MTU plus the Ethernet header).
        pub(crate) max_frame: usize,
        /// Act as a device with segmentation offload: large TCP frames are cut into
        /// segments here, as the kernel's GSO cuts them ([`gso::segment`]).
        pub(crate) tso: bool,
    }

    impl MemTx {
        /// A queue accepting frames of up to `max_frame` bytes.
        pub(crate) fn new(max_frame: usize) -> Self {
            MemTx {
                sent: Vec::new(),
                csum_offload: false,
                max_frame,
                tso: false,
            }
        }
    }

    impl LinkTx for MemTx {
        fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), TxError> {
            if len > self.max_frame {
                return Err(TxError::TooBig);
            }
            // A real ring fills and the stack would spin on drops; here runaway output
            // (a send loop that never ends) is a failure to report, not a machine
            // running out of memory.
            assert!(
                self.sent.len() < MAX_UNTAKEN,
                "runaway output: {MAX_UNTAKEN} frames sent at one instant"
            );
            let mut f = vec![0u8; len];
            fill(&mut f);
            self.sent.push(f);
            Ok(())
        }

        fn send_partial(
            &mut self,
            len: usize,
            csum_start: u16,
            csum_offset: u16,
            fill: &mut dyn FnMut(&mut [u8]),
        ) -> Result<(), TxError> {
            // With or without the offload the wire sees a finished checksum: here the
            // "device" finishes it.
            self.send(len, &mut |buf| {
                fill(buf);
                crate::checksum::finish_partial(buf, csum_start as usize, csum_offset as usize);
            })
        }

        fn tx_csum(&self) -> bool {
            self.csum_offload
        }

        fn tso_frame_max(&self) -> usize {
            if self.tso {
                gso::MAX_FRAME
            } else {
                0
            }
        }

        fn send_tso(
            &mut self,
            len: usize,
            params: GsoParams,
            fill: &mut dyn FnMut(&mut [u8]),
        ) -> Result<(), TxError> {
            if !self.tso || len > gso::MAX_FRAME {
                return Err(TxError::TooBig);
            }
            let mut frame = vec![0u8; len];
            fill(&mut frame);
            for s in gso::segment(&frame, params) {
                if s.len() > self.max_frame {
                    return Err(TxError::TooBig);
                }
                self.sent.push(s);
            }
            Ok(())
        }

        fn outstanding(&self) -> usize {
            0
        }

        fn flush(&mut self) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{MemRx, MemTx};

    #[test]
    fn mem_rx_hands_out_batches_in_order() {
        let mut rx = MemRx::new(3);
        for i in 0..5u8 {
            rx.queue.push_back(vec![i; 60]);
        }
        assert_eq!(rx.receive(2), 2);
        let p = rx.frame(1).expect("frame 1");
        assert_eq!((p.data[0], p.meta.rxq, p.meta.len), (1, 3, 60));
        assert!(rx.frame(2).is_none());
        rx.release();
        assert_eq!(rx.receive(64), 3);
        assert_eq!(rx.frame(0).expect("frame").data[0], 2);
        rx.release();
        assert_eq!(rx.receive(64), 0);
    }

    #[test]
    fn mem_tx_refuses_oversized_frames_and_finishes_checksums() {
        let mut tx = MemTx::new(100);
        assert_eq!(tx.send(101, &mut |_| {}), Err(TxError::TooBig));
        // A 4-byte "L4" area at offset 0 whose checksum field (offset 2) holds 0: the
        // finished sum is the complement of the words.
        tx.send_partial(4, 0, 2, &mut |b| b.copy_from_slice(&[0x12, 0x34, 0, 0]))
            .expect("fits");
        assert_eq!(tx.sent.len(), 1);
        let f = &tx.sent[0];
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), !0x1234);
    }
}
