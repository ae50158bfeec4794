//! One AF_XDP socket bound to one receive queue, split into the receive half (rx ring +
//! fill ring) and the transmit half (tx ring + completion ring) so a worker can read a
//! frame in place while it transmits.
//!
//! Each queue has its own UMEM: frames `[0, rx_frames)` circulate between the fill and
//! rx rings, frames `[rx_frames, frames)` between our free list and the tx/completion
//! rings. Nothing is shared between queues, so a worker never synchronises with another
//! to move packets.

use std::ffi::CString;
use std::num::NonZeroU32;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::Arc;

use xdpilone::xdp::XdpDesc;
use xdpilone::{
    CompletionQueue, DeviceQueue, FillQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem,
    UmemConfig, User,
};

use super::gso::{GsoParams, GsoTx};
use super::DeviceError;
use crate::mbuf::PktMeta;

/// Sizes of one queue's UMEM and rings.
#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// Bytes per frame (a power of two, 2048 or 4096).
    pub frame_size: u32,
    /// Frames for receiving (also the fill ring size; a power of two).
    pub rx_frames: u32,
    /// Frames for transmitting (also the tx/completion ring sizes; a power of two).
    pub tx_frames: u32,
    /// Ask the kernel to tell us when it needs a wakeup (`XDP_USE_NEED_WAKEUP`).
    pub need_wakeup: bool,
    /// Reserve AF_XDP TX metadata in front of each sent frame so the device can be
    /// asked to finish checksums (`XDP_TXMD_FLAGS_CHECKSUM`, Linux 6.8+). Falls back
    /// to none when the kernel refuses it; `Stack::offloads` says which.
    pub tx_metadata: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            frame_size: 4096,
            rx_frames: 2048,
            tx_frames: 2048,
            need_wakeup: true,
            tx_metadata: true,
        }
    }
}

/// The anonymous mapping that backs a UMEM.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the area is plain memory; which thread may touch which frame is governed by
// the ring protocol (each frame is owned by exactly one of: the kernel, XskRx, XskTx).
unsafe impl Send for Area {}
// SAFETY: as for Send: `&Area` only gives the pointer and length; every access to the
// frames goes through the ring protocol.
unsafe impl Sync for Area {}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from our mmap and nothing refers to the area any more: the
        // rings and the socket (declared before `area` in `Shared`) are already dropped.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
    }
}

/// What both halves keep alive. Field order is drop order: the socket and UMEM are
/// closed before the memory they point into is unmapped.
struct Shared {
    _user: User,
    _umem: Umem,
    area: Area,
}

// SAFETY: `User` and `Umem` hold file descriptors and pointers into `area`; they are not
// used concurrently through `Shared` (it only keeps them alive).
unsafe impl Send for Shared {}
// SAFETY: as for Send: nothing is reachable through `&Shared` but `area`'s length.
unsafe impl Sync for Shared {}

/// Builds the socket for `(ifname, queue)` and returns its two halves.
pub fn open(ifname: &str, queue: u32, cfg: XskConfig) -> Result<(XskRx, XskTx), DeviceError> {
    let frames = cfg.rx_frames + cfg.tx_frames;
    let area = map_area(frames as usize * cfg.frame_size as usize)?;
    let (umem, tx_md) = register_umem(&area, &cfg, ifname, queue)?;
    let (user, device, rx, tx) = bind_socket(&umem, &cfg, ifname, queue)?;
    let fd = user.as_raw_fd();
    let (mut fill, comp) = device.into_parts();

    // Hand every receive frame to the kernel up front.
    {
        let mut w = fill.fill(cfg.rx_frames);
        let n = w.capacity();
        for i in 0..n {
            w.insert_once(i as u64 * cfg.frame_size as u64);
        }
        w.commit();
    }
    let base = area.ptr;
    let shared = Arc::new(Shared {
        _user: user,
        _umem: umem,
        area,
    });
    let tx_free = (cfg.rx_frames..frames)
        .map(|i| i as u64 * cfg.frame_size as u64)
        .collect();
    Ok((
        XskRx {
            rx,
            fill,
            pending_fill: Vec::with_capacity(cfg.rx_frames as usize),
            base,
            frame_size: cfg.frame_size,
            queue: queue as u16,
            fd,
            _shared: shared.clone(),
        },
        XskTx {
            tx,
            comp,
            base,
            frame_size: cfg.frame_size,
            free: tx_free,
            pending: Vec::with_capacity(64),
            pending_urgent: 0,
            in_flight: 0,
            tx_md,
            gso: None,
            _shared: shared,
        },
    ))
}

/// The UMEM's memory: `len` bytes of a fresh anonymous mapping, page aligned.
fn map_area(len: usize) -> Result<Area, DeviceError> {
    use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
    let umem_mmap_err = |source| DeviceError::UmemMmap { len, source };
    let size = std::num::NonZeroUsize::new(len).ok_or(umem_mmap_err(nix::errno::Errno::EINVAL))?;
    // SAFETY: a fresh anonymous private mapping aliases nothing; it is unmapped only by
    // `Area::drop`.
    let ptr = unsafe {
        mmap_anonymous(
            None,
            size,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE | MapFlags::MAP_POPULATE,
        )
    }
    .map_err(umem_mmap_err)?;
    Ok(Area {
        ptr: ptr.cast(),
        len,
    })
}

/// Registers `area` as a UMEM, with TX metadata room when asked for and the kernel
/// takes it; returns the UMEM and whether it has the metadata.
fn register_umem(
    area: &Area,
    cfg: &XskConfig,
    ifname: &str,
    queue: u32,
) -> Result<(Umem, bool), DeviceError> {
    let slice = NonNull::slice_from_raw_parts(area.ptr, area.len);
    let umem_cfg = |tx_md: bool| UmemConfig {
        fill_size: cfg.rx_frames,
        complete_size: cfg.tx_frames,
        frame_size: cfg.frame_size,
        headroom: 0,
        flags: if tx_md { XDP_UMEM_TX_METADATA_LEN } else { 0 },
        tx_metadata_len: if tx_md { TX_MD_LEN as u32 } else { 0 },
    };
    let xsk_err = |what: &str, e| xsk_err(what, ifname, queue, e);
    // The area is page aligned (fresh mmap), `len` bytes long, and outlives the Umem:
    // both end up in `Shared`, where the Umem is dropped first. A failed registration
    // closes its socket and leaves the area untouched.
    // SAFETY: see above.
    let first = unsafe { Umem::new(umem_cfg(cfg.tx_metadata), slice) };
    match first {
        Ok(u) => Ok((u, cfg.tx_metadata)),
        // Kernels before 6.8 reject the flag: register without TX metadata.
        Err(e) if cfg.tx_metadata && e.get_raw() == libc::EINVAL => Ok((
            // SAFETY: see above.
            unsafe { Umem::new(umem_cfg(false), slice) }
                .map_err(|e| xsk_err("registering the UMEM", e))?,
            false,
        )),
        Err(e) => Err(xsk_err("registering the UMEM", e)),
    }
}

/// Creates the AF_XDP socket on `(ifname, queue)` sharing `umem`, its four rings, and
/// binds it.
fn bind_socket(
    umem: &Umem,
    cfg: &XskConfig,
    ifname: &str,
    queue: u32,
) -> Result<(User, DeviceQueue, RingRx, RingTx), DeviceError> {
    let xsk_err = |what: &str, e| xsk_err(what, ifname, queue, e);
    let mut info = IfInfo::invalid();
    let cname = CString::new(ifname).map_err(|_| DeviceError::NoSuchInterface(ifname.into()))?;
    info.from_name(&cname)
        .map_err(|e| xsk_err(&format!("looking up {ifname}"), e))?;
    info.set_queue(queue);
    let sock =
        Socket::with_shared(&info, umem).map_err(|e| xsk_err("creating the AF_XDP socket", e))?;
    let device = umem
        .fq_cq(&sock)
        .map_err(|e| xsk_err("creating the fill/completion rings", e))?;
    let sock_cfg = SocketConfig {
        rx_size: NonZeroU32::new(cfg.rx_frames),
        tx_size: NonZeroU32::new(cfg.tx_frames),
        bind_flags: if cfg.need_wakeup {
            SocketConfig::XDP_BIND_NEED_WAKEUP
        } else {
            0
        },
    };
    let user = umem
        .rx_tx(&sock, &sock_cfg)
        .map_err(|e| xsk_err("creating the rx/tx rings", e))?;
    let rx = user
        .map_rx()
        .map_err(|e| xsk_err("mapping the rx ring", e))?;
    let tx = user
        .map_tx()
        .map_err(|e| xsk_err("mapping the tx ring", e))?;
    umem.bind(&user).map_err(|e| match e.get_raw() {
        libc::EBUSY => DeviceError::QueueBusy {
            iface: ifname.to_string(),
            queue,
        },
        libc::EINVAL => DeviceError::Queues(format!("{ifname} has no rx queue {queue}")),
        _ => xsk_err(
            &format!("binding the AF_XDP socket to {ifname} queue {queue}"),
            e,
        ),
    })?;
    Ok((user, device, rx, tx))
}

fn xsk_err(what: &str, iface: &str, queue: u32, e: xdpilone::Errno) -> DeviceError {
    match e.get_raw() {
        libc::EAFNOSUPPORT => DeviceError::AfXdpUnsupported(format!("{what}: {e}")),
        libc::EPERM | libc::EACCES => DeviceError::Permission(format!("{what}: {e}")),
        // xdpilone's Errno is not a std::error::Error: carry it as the io::Error it is.
        raw => DeviceError::Xsk {
            what: what.to_string(),
            iface: iface.to_string(),
            queue,
            source: std::io::Error::from_raw_os_error(raw),
        },
    }
}

/// The kernel's per-socket counters (`struct xdp_statistics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct XskStats {
    /// Dropped for reasons other than invalid descriptors.
    pub rx_dropped: u64,
    /// Dropped due to invalid descriptors.
    pub rx_invalid_descs: u64,
    /// Transmit descriptors the kernel rejected.
    pub tx_invalid_descs: u64,
    /// Dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring had no frame for a packet.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the tx ring was found empty.
    pub tx_ring_empty_descs: u64,
}

/// Reads an AF_XDP socket's counters (`getsockopt(SOL_XDP, XDP_STATISTICS)`); any
/// thread may call it while the socket is open.
pub fn read_stats(fd: RawFd) -> Option<XskStats> {
    const SOL_XDP: libc::c_int = 283;
    const XDP_STATISTICS: libc::c_int = 7;
    let mut v = [0u64; 6];
    let mut len = std::mem::size_of_val(&v) as libc::socklen_t;
    // Raw libc: nix has no XDP_STATISTICS option, and its generic struct getter
    // (`sockopt_impl!`/`GetStruct`) asserts that the kernel fills the whole struct,
    // which kernels before 5.9 do not (they write 24 of the 48 bytes).
    // SAFETY: getsockopt writes at most `len` bytes into `v`, which is that large.
    let rc =
        unsafe { libc::getsockopt(fd, SOL_XDP, XDP_STATISTICS, v.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    // Kernels before 5.9 fill only the first three fields (len says so).
    Some(XskStats {
        rx_dropped: v[0],
        rx_invalid_descs: v[1],
        tx_invalid_descs: v[2],
        rx_ring_full: v[3],
        rx_fill_ring_empty_descs: v[4],
        tx_ring_empty_descs: v[5],
    })
}

/// The receive half: rx ring and fill ring.
pub struct XskRx {
    rx: RingRx,
    fill: FillQueue,
    /// Frames waiting to go back on the fill ring.
    pending_fill: Vec<u64>,
    base: NonNull<u8>,
    frame_size: u32,
    queue: u16,
    fd: RawFd,
    _shared: Arc<Shared>,
}

// SAFETY: the rings are SPSC with the kernel; this half is the only user-space side of
// the rx and fill rings and moves to the worker thread that owns it.
unsafe impl Send for XskRx {}

impl XskRx {
    /// The socket's file descriptor (for the XSKMAP and for poll()).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Takes up to `max` received descriptors into `batch` (cleared first). The frames
    /// stay ours until [`XskRx::recycle`] gives them back.
    pub fn receive(&mut self, batch: &mut Vec<XdpDesc>, max: u32) {
        batch.clear();
        let mut r = self.rx.receive(max);
        while let Some(d) = r.read() {
            batch.push(d);
        }
        // Releasing the rx slots does not release the frames: those go back through
        // the fill ring in `recycle`.
        r.release();
    }

    /// The bytes of a received frame and its metadata.
    pub fn frame(&self, d: &XdpDesc) -> Option<(&[u8], PktMeta)> {
        let end = d.addr.checked_add(d.len as u64)?;
        if end > self._shared.area.len as u64 {
            return None;
        }
        // SAFETY: [addr, addr+len) is inside the area (checked above) and the kernel
        // handed this frame to us through the rx ring; it is not given back (fill ring)
        // before `recycle`, which takes `&mut self` and so ends this borrow.
        let data = unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().add(d.addr as usize), d.len as usize)
        };
        // Copy mode on veth delivers no hardware metadata: nothing is pre-verified.
        Some((data, PktMeta::rx(d.len as usize, self.queue)))
    }

    /// Returns frames to the kernel through the fill ring. The ring has a slot for
    /// every rx frame, but our cached view of its free slots can lag the kernel's
    /// consumer; frames that do not fit now wait in `pending_fill` for the next call
    /// (dropping them would leak frames until the ring runs dry and reception stops).
    pub fn recycle(&mut self, batch: &[XdpDesc]) {
        let mask = !(self.frame_size as u64 - 1);
        self.pending_fill
            .extend(batch.iter().map(|d| d.addr & mask));
        if self.pending_fill.is_empty() {
            return;
        }
        // xdpilone refreshes its view of the kernel's consumer only when the cached
        // view has no room at all, so a first reservation can come back short while the
        // ring has space: retry until everything is placed or the ring is truly full.
        while !self.pending_fill.is_empty() {
            let mut w = self.fill.fill(self.pending_fill.len() as u32);
            let n = (w.capacity() as usize).min(self.pending_fill.len());
            if n == 0 {
                break;
            }
            for &addr in &self.pending_fill[..n] {
                w.insert_once(addr);
            }
            w.commit();
            drop(w);
            self.pending_fill.drain(..n);
        }
    }

    /// Kicks the driver when it asked for it (zero-copy drivers do; copy mode does not).
    pub fn wake_if_needed(&mut self) {
        if self.fill.needs_wakeup() {
            self.fill.wake();
        }
    }
}

/// The transmit half: tx ring, completion ring and the free tx frames.
pub struct XskTx {
    tx: RingTx,
    comp: CompletionQueue,
    base: NonNull<u8>,
    frame_size: u32,
    free: Vec<u64>,
    pending: Vec<XdpDesc>,
    in_flight: u32,
    /// Of `pending`, the frames that are not pure ACKs (classified once, as written).
    pending_urgent: usize,
    /// TX metadata is reserved in front of each frame (so checksum offload works).
    tx_md: bool,
    /// Large TCP frames go to the kernel for segmentation through this packet socket.
    gso: Option<GsoTx>,
    _shared: Arc<Shared>,
}

/// `XDP_UMEM_TX_METADATA_LEN` (Linux AF_XDP UAPI): `tx_metadata_len` is meant.
const XDP_UMEM_TX_METADATA_LEN: u32 = 1 << 2;
/// `sizeof(struct xsk_tx_metadata)` since Linux 6.15 (flags, then the request:
/// csum_start, csum_offset, launch_time); a multiple of 8 as the kernel requires.
const TX_MD_LEN: usize = 24;
/// `XDP_TXMD_FLAGS_CHECKSUM`: finish the checksum at csum_start + csum_offset.
const XDP_TXMD_FLAGS_CHECKSUM: u64 = 1 << 1;
/// `XDP_TX_METADATA` in `xdp_desc.options`: this frame carries metadata.
const XDP_TX_METADATA: u32 = 1 << 1;

// SAFETY: as for XskRx, this half is the only user-space side of its two rings.
unsafe impl Send for XskTx {}

/// Why a frame was not queued for transmission.
#[derive(Debug, PartialEq, Eq)]
pub enum TxError {
    /// No free frame (the kernel has not completed earlier ones yet).
    NoRoom,
    /// Larger than a UMEM frame.
    TooBig,
}

impl XskTx {
    /// Largest frame this socket can send.
    pub fn max_frame(&self) -> usize {
        self.frame_size as usize - self.headroom()
    }

    /// Whether the kernel accepted TX metadata, so [`XskTx::send_partial`] offloads
    /// the checksum (copy mode hands the frame on as `CHECKSUM_PARTIAL`).
    pub fn tx_csum(&self) -> bool {
        self.tx_md
    }

    /// Bytes kept free in front of each frame for the TX metadata.
    fn headroom(&self) -> usize {
        if self.tx_md {
            TX_MD_LEN
        } else {
            0
        }
    }

    /// Writes one frame of `len` bytes with `fill` and queues it; [`XskTx::flush`] hands
    /// the queued frames to the kernel.
    pub fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), TxError> {
        self.send_with(len, None, fill)
    }

    /// [`XskTx::send`] for a frame whose L4 checksum the device is to finish: the
    /// field at `csum_start + csum_offset` holds the pseudo-header sum. Without TX
    /// metadata the checksum is finished here in software.
    pub fn send_partial(
        &mut self,
        len: usize,
        csum_start: u16,
        csum_offset: u16,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), TxError> {
        if self.tx_md {
            self.send_with(len, Some((csum_start, csum_offset)), fill)
        } else {
            self.send_with(len, None, &mut |buf| {
                fill(buf);
                crate::checksum::finish_partial(buf, csum_start as usize, csum_offset as usize);
            })
        }
    }

    fn send_with(
        &mut self,
        len: usize,
        csum: Option<(u16, u16)>,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), TxError> {
        if len > self.max_frame() {
            return Err(TxError::TooBig);
        }
        // Frames leave in the order they were written: what waits on the other path
        // goes first.
        if let Some(g) = &mut self.gso {
            if g.queued() > 0 {
                g.flush();
            }
        }
        if self.free.is_empty() {
            self.reclaim();
        }
        if self.free.is_empty() || self.pending.len() as u32 + self.in_flight >= self.tx_capacity()
        {
            // Push out what we have so the kernel can complete it, then retry once.
            self.flush();
            self.reclaim();
            if self.free.is_empty() {
                return Err(TxError::NoRoom);
            }
        }
        let Some(frame) = self.free.pop() else {
            return Err(TxError::NoRoom);
        };
        // The packet starts after the metadata area (the kernel reads the metadata at
        // addr - tx_metadata_len); completions hand the packet address back, which
        // `reclaim` rounds down to the frame.
        let addr = frame + self.headroom() as u64;
        let mut options = 0;
        if let Some((start, offset)) = csum {
            // struct xsk_tx_metadata: u64 flags; u16 csum_start; u16 csum_offset; ...
            let mut md = [0u8; TX_MD_LEN];
            md[..8].copy_from_slice(&XDP_TXMD_FLAGS_CHECKSUM.to_ne_bytes());
            md[8..10].copy_from_slice(&start.to_ne_bytes());
            md[10..12].copy_from_slice(&offset.to_ne_bytes());
            // SAFETY: the frame is ours (see below) and TX_MD_LEN bytes precede `addr`
            // within it.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    md.as_ptr(),
                    self.base.as_ptr().add(frame as usize),
                    TX_MD_LEN,
                )
            };
            options = XDP_TX_METADATA;
        }
        // SAFETY: `frame` is the start of a tx frame we own (it came from our free list:
        // not in the tx ring, not completed-but-unread), `headroom + len <= frame_size`,
        // and the area outlives self (Arc<Shared>).
        let buf =
            unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(addr as usize), len) };
        fill(buf);
        if !is_pure_ack(buf) {
            self.pending_urgent += 1;
        }
        self.pending.push(XdpDesc {
            addr,
            len: len as u32,
            options,
        });
        if self.pending.len() >= 64 {
            self.flush();
        }
        Ok(())
    }

    /// Sends large TCP frames through `gso` from now on (see [`super::gso`]).
    pub fn enable_gso(&mut self, gso: GsoTx) {
        self.gso = Some(gso);
    }

    /// Whether [`XskTx::send_gso`] is available (and the kernel has refused nothing).
    pub fn gso(&self) -> bool {
        self.gso.as_ref().is_some_and(|g| !g.refused())
    }

    /// Writes a TCP frame of up to 64 KB that the kernel cuts into segments (see
    /// [`super::gso`]); queued behind every frame written before it.
    pub fn send_gso(
        &mut self,
        len: usize,
        params: GsoParams,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), TxError> {
        if !self.gso() {
            return Err(TxError::TooBig);
        }
        if !self.pending.is_empty() || self.tx.pending() > 0 {
            self.flush();
            if !self.pending.is_empty() || self.tx.pending() > 0 {
                // The kernel has not taken the earlier frames yet: this one would pass
                // them. The caller sends its segments behind them instead.
                return Err(TxError::NoRoom);
            }
        }
        match &mut self.gso {
            Some(g) => g.send(len, params, fill),
            None => Err(TxError::TooBig),
        }
    }

    fn tx_capacity(&self) -> u32 {
        self.free.len() as u32 + self.pending.len() as u32 + self.in_flight
    }

    /// Moves queued frames onto the tx ring and kicks the kernel. In copy mode the
    /// kernel sends from the `sendto` call (a batch at a time), so we kick while it
    /// makes progress.
    pub fn flush(&mut self) -> usize {
        let mut moved = 0;
        if let Some(g) = &mut self.gso {
            moved += g.flush();
            if g.queued() > 0 {
                // Frames written after the waiting large ones stay behind them.
                return moved;
            }
        }
        // As for the fill ring: a short reservation may only mean a stale view, so
        // retry until the ring takes everything or is really full.
        while !self.pending.is_empty() {
            let mut w = self.tx.transmit(self.pending.len() as u32);
            let n = (w.capacity() as usize).min(self.pending.len());
            if n == 0 {
                break;
            }
            for d in &self.pending[..n] {
                w.insert_once(*d);
            }
            w.commit();
            drop(w);
            self.pending.drain(..n);
            self.pending_urgent = if self.pending.is_empty() {
                0
            } else {
                // Rare: the ring took only part of the batch.
                self.pending
                    .iter()
                    .filter(|d| !is_pure_ack(self.frame_bytes(d)))
                    .count()
            };
            self.in_flight += n as u32;
            moved += n;
        }
        if self.tx.pending() > 0 && self.tx.needs_wakeup() {
            let mut last = u32::MAX;
            // Each sendto sends up to a batch (32 frames in copy mode); stop when the
            // kernel stops consuming (ring empty, or it is busy).
            // Completions are reclaimed between kicks: a full completion ring would
            // stop the kernel from sending.
            while self.tx.pending() > 0 && self.tx.pending() < last {
                last = self.tx.pending();
                self.tx.wake();
                self.reclaim();
            }
        }
        self.reclaim();
        moved
    }

    /// Takes completed frames back into the free list.
    pub fn reclaim(&mut self) {
        let mut c = self.comp.complete(self.in_flight.max(1));
        let mut n = 0;
        while let Some(addr) = c.read() {
            self.free.push(addr & !(self.frame_size as u64 - 1));
            n += 1;
        }
        c.release();
        self.in_flight = self.in_flight.saturating_sub(n);
    }

    /// Frames written and not yet on the tx ring (the next [`XskTx::flush`] moves them).
    pub fn queued(&self) -> usize {
        self.pending.len() + self.gso.as_ref().map_or(0, |g| g.queued())
    }

    /// Of [`XskTx::queued`], the frames that are not pure TCP ACKs (see
    /// [`is_pure_ack`]); large frames waiting for the kernel all count.
    pub fn queued_urgent(&self) -> usize {
        self.pending_urgent + self.gso.as_ref().map_or(0, |g| g.queued())
    }

    /// The bytes of a frame written and not yet on the ring.
    fn frame_bytes(&self, d: &XdpDesc) -> &[u8] {
        // SAFETY: a pending descriptor's frame is ours until the next flush, and
        // `addr + len` lies inside the area (we wrote it there).
        unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().add(d.addr as usize), d.len as usize)
        }
    }

    /// Frames queued or on the ring and not yet completed.
    pub fn outstanding(&self) -> usize {
        self.pending.len() + self.in_flight as usize + self.gso.as_ref().map_or(0, |g| g.queued())
    }
}

/// Whether `frame` (Ethernet + IPv4 + TCP) is a pure ACK: no payload and none of SYN,
/// FIN, RST, PSH. Anything else, or anything it cannot read, is not.
pub(crate) fn is_pure_ack(frame: &[u8]) -> bool {
    if frame.len() < 54 || frame[12..14] != [0x08, 0x00] || frame[23] != 6 {
        return false;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let tcp = 14 + ihl;
    let Some(&off) = frame.get(tcp + 12) else {
        return false;
    };
    let Some(&flags) = frame.get(tcp + 13) else {
        return false;
    };
    let doff = usize::from(off >> 4) * 4;
    flags & 0x0f == 0 && total == ihl + doff
}

#[cfg(test)]
mod tests {
    use super::is_pure_ack;

    fn frame(flags: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 54 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        f[23] = 6;
        f[46] = 5 << 4;
        f[47] = flags;
        f
    }

    #[test]
    fn pure_acks_are_told_from_everything_else() {
        assert!(is_pure_ack(&frame(0x10, 0)));
        assert!(is_pure_ack(&frame(0x10 | 0x40, 0)), "ECE");
        assert!(!is_pure_ack(&frame(0x10, 1)), "data");
        assert!(!is_pure_ack(&frame(0x11, 0)), "FIN");
        assert!(!is_pure_ack(&frame(0x12, 0)), "SYN,ACK");
        assert!(!is_pure_ack(&frame(0x14, 0)), "RST");
        assert!(!is_pure_ack(&frame(0x18, 0)), "PSH");
        let mut arp = frame(0x10, 0);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!is_pure_ack(&arp));
        let mut udp = frame(0x10, 0);
        udp[23] = 17;
        assert!(!is_pure_ack(&udp));
        assert!(!is_pure_ack(&[0u8; 20]), "truncated");
    }
}
