//! Helper hooks (FreeBSD's hhook(9) and khelp(9)): named points in the TCP engine where
//! helper modules, registered on a stack at run time, see each connection's segments and
//! keep per-connection data of their own.
//!
//! - **Points** ([`HookPoint`]): `Input` (an acceptable ACK, before congestion control
//!   sees it: FreeBSD's `HHOOK_TCP_EST_IN`), `AckDone` (the same ACK after its
//!   processing, with its delivery-rate sample), `Output` (each segment the engine
//!   emits, a TSO burst once: `HHOOK_TCP_EST_OUT`), `Established` and `Closed`. Each gets
//!   a context struct ([`InputCtx`], [`OutputCtx`], ...; FreeBSD's `tcp_hhook_data`)
//!   with the header fields and a copy of the connection's variables ([`ConnVars`]).
//! - **Helpers** ([`Helper`]): a name, the points used, a constructor for the
//!   per-connection data and one method per point. Hooks run on the connection's owner
//!   worker, under the connection's lock, in registration order.
//! - **Per-connection data** lives in one slot of the control block, FreeBSD's OSD:
//!   `Option<Box<HelperSlot>>`, `None` on every connection made while no helper was
//!   registered. That `None` is the whole hot-path cost: one predictable branch per hook
//!   point, no call, no allocation.
//! - **Registration** is per stack ([`NetStack::register_helper`]), as FreeBSD registers
//!   per vnet. The registered set is part of the settings new connections copy
//!   ([`TcpConfig`]), so a connection gets data for the helpers registered when it was
//!   created, and only those (khelp's rule: existing connections never get data).
//!   Unregistering marks the helper dead: no connection calls it again (a call already
//!   under way on a worker finishes), and each frees its data at its next hook point or
//!   when it closes (khelp instead refuses to unload a helper that connections still
//!   use).
//!
//! [`NetStack::register_helper`]: crate::NetStack::register_helper
//! [`TcpConfig`]: crate::TcpConfig

use std::any::Any;
use std::fmt;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xstack_cc::{Ertt, RateSample, Recovery};

use super::segment::TcpFlags;
use super::tcb::State;

/// One hook point of the TCP engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookPoint {
    /// An acceptable segment's ACK, before the transport's ACK processing and congestion
    /// control (FreeBSD's `HHOOK_TCP_EST_IN`, run where `tcp_do_segment` processes the
    /// ACK): in every synchronized state, for every segment that passed the sequence,
    /// RST, SYN and ACK-range checks. [`InputCtx`].
    Input,
    /// The same ACK after its processing (loss recovery, congestion control, the
    /// delivery-rate sample, the send window), before the segment's text and FIN.
    /// [`AckDoneCtx`].
    AckDone,
    /// A segment the engine sends (FreeBSD's `HHOOK_TCP_EST_OUT`): data, retransmissions,
    /// probes, pure ACKs, SYNs, RSTs; a TSO burst is one call. [`OutputCtx`].
    Output,
    /// The connection reached ESTABLISHED (active or passive open). [`ConnCtx`].
    Established,
    /// The connection is discarded: CLOSED, after TIME-WAIT or a reset, when its owner
    /// worker releases it. Its helper data is freed right after. [`ConnCtx`].
    Closed,
}

impl HookPoint {
    /// Every point, in the order above.
    pub const ALL: [HookPoint; 5] = [
        HookPoint::Input,
        HookPoint::AckDone,
        HookPoint::Output,
        HookPoint::Established,
        HookPoint::Closed,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of hook points: what a helper declares it uses ([`Helper::hook_points`]).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct HookPoints(u8);

impl HookPoints {
    /// No point.
    pub const NONE: HookPoints = HookPoints(0);

    /// The set of `points`.
    pub fn of(points: &[HookPoint]) -> HookPoints {
        HookPoints(points.iter().fold(0, |b, p| b | p.bit()))
    }

    /// Whether `p` is in the set.
    pub fn contains(self, p: HookPoint) -> bool {
        self.0 & p.bit() != 0
    }

    /// Both sets.
    pub fn union(self, other: HookPoints) -> HookPoints {
        HookPoints(self.0 | other.0)
    }
}

impl fmt::Debug for HookPoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(HookPoint::ALL.iter().filter(|p| self.contains(**p)))
            .finish()
    }
}

/// A copy of the connection's variables at a hook point (read-only: a helper never writes
/// the control block, as the style's rule for modules says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnVars {
    /// The connection's state.
    pub state: State,
    /// Our end.
    pub local: SocketAddrV4,
    /// The peer's end.
    pub remote: SocketAddrV4,
    /// SND.UNA.
    pub snd_una: u32,
    /// SND.NXT.
    pub snd_nxt: u32,
    /// The highest sequence number sent + 1 (BSD `snd_max`).
    pub snd_max: u32,
    /// SND.WND, scaled.
    pub snd_wnd: u32,
    /// RCV.NXT.
    pub rcv_nxt: u32,
    /// The send MSS (options deducted).
    pub maxseg: u32,
    /// The congestion window.
    pub cwnd: u32,
    /// The slow-start threshold.
    pub ssthresh: u32,
    /// Bytes sent and not cumulatively acknowledged (snd_max - snd_una).
    pub in_flight: u32,
    /// The transport's smoothed RTT (RFC 6298), once there is a sample.
    pub srtt: Option<Duration>,
    /// The transport's smallest RTT sample.
    pub min_rtt: Option<Duration>,
    /// The loss-recovery state.
    pub recovery: Recovery,
    /// The transport's round counter ([`xstack_cc::AckInfo::round`]).
    pub round: u64,
}

/// [`HookPoint::Input`]: an acceptable segment's header and what its ACK does.
#[derive(Clone, Copy, Debug)]
pub struct InputCtx<'a> {
    /// The transport's clock.
    pub now: Instant,
    /// The connection before the ACK is processed.
    pub vars: ConnVars,
    /// SEG.SEQ.
    pub seq: u32,
    /// SEG.ACK.
    pub ack: u32,
    /// The control bits.
    pub flags: TcpFlags,
    /// SEG.WND, scaled.
    pub window: u32,
    /// Payload bytes.
    pub payload_len: usize,
    /// The timestamps option (TSval, TSecr), when the connection uses it.
    pub timestamps: Option<(u32, u32)>,
    /// The SACK blocks (a D-SACK first), when SACK is in use.
    pub sack: &'a [(u32, u32)],
    /// Bytes this ACK newly acknowledges cumulatively (0 for a duplicate).
    pub acked: u32,
}

/// [`HookPoint::AckDone`]: the connection after one ACK's processing.
#[derive(Clone, Copy, Debug)]
pub struct AckDoneCtx {
    /// The transport's clock.
    pub now: Instant,
    /// The connection after the ACK.
    pub vars: ConnVars,
    /// The ACK's delivery-rate sample (`tcp/rate.rs`), when it delivered data and the
    /// connection keeps a send log (RACK-TLP in use, or a module that wants samples).
    pub rate: Option<RateSample>,
}

/// [`HookPoint::Output`]: one segment going out.
#[derive(Clone, Copy, Debug)]
pub struct OutputCtx {
    /// The transport's clock.
    pub now: Instant,
    /// The connection after the segment was accounted (snd_nxt past it).
    pub vars: ConnVars,
    /// SEG.SEQ.
    pub seq: u32,
    /// Payload bytes (all of a TSO burst).
    pub len: usize,
    /// The control bits.
    pub flags: TcpFlags,
    /// A retransmission.
    pub retransmit: bool,
    /// TSO: the device cuts the payload into pieces of this many bytes; 0 for one segment.
    pub tso_segsz: u16,
    /// The TSval it carries, when the connection uses timestamps.
    pub tsval: Option<u32>,
}

/// [`HookPoint::Established`] and [`HookPoint::Closed`].
#[derive(Clone, Copy, Debug)]
pub struct ConnCtx {
    /// The transport's clock.
    pub now: Instant,
    /// The connection.
    pub vars: ConnVars,
}

/// A helper module (khelp): what it is called, where it hooks in, the data it keeps per
/// connection, and what it does at each point. Hooks run on the connection's owner
/// worker with the connection locked: keep them short, and never call back into the
/// connection's socket from one.
pub trait Helper: Send + Sync + 'static {
    /// Per-connection data (FreeBSD's OSD slot contents): made by
    /// [`new_conn_data`](Self::new_conn_data) when a connection is created while the
    /// helper is registered, dropped when the connection is discarded (or at its first
    /// hook point after the helper was unregistered).
    type Data: Send + 'static;

    /// The name it is registered, listed and unregistered by (unique per stack).
    fn name(&self) -> &str;

    /// The points it uses; the others are never called for it.
    fn hook_points(&self) -> HookPoints;

    /// Data for a new connection.
    fn new_conn_data(&self) -> Self::Data;

    /// [`HookPoint::Input`].
    fn input(&self, data: &mut Self::Data, ctx: &InputCtx<'_>) {
        let _ = (data, ctx);
    }

    /// [`HookPoint::AckDone`].
    fn ack_done(&self, data: &mut Self::Data, ctx: &AckDoneCtx) {
        let _ = (data, ctx);
    }

    /// [`HookPoint::Output`].
    fn output(&self, data: &mut Self::Data, ctx: &OutputCtx) {
        let _ = (data, ctx);
    }

    /// [`HookPoint::Established`].
    fn established(&self, data: &mut Self::Data, ctx: &ConnCtx) {
        let _ = (data, ctx);
    }

    /// [`HookPoint::Closed`].
    fn closed(&self, data: &mut Self::Data, ctx: &ConnCtx) {
        let _ = (data, ctx);
    }

    /// A new enhanced RTT measurement for congestion control, taken by the last
    /// [`input`](Self::input) call (FreeBSD's `ERTT_NEW_MEASUREMENT` flag, read and
    /// cleared). The transport asks after the `Input` hooks and hands it to the module's
    /// [`ertt_sample`](xstack_cc::CongestionControl::ertt_sample). Only an ERTT helper
    /// returns one.
    fn take_ertt(&self, data: &mut Self::Data) -> Option<Ertt> {
        let _ = data;
        None
    }

    /// The connection's data as a JSON value (an object, a number...), for the
    /// connection's `/info` in the tools' HTTP server ([`TcpStream::helper_info`]).
    ///
    /// [`TcpStream::helper_info`]: crate::TcpStream::helper_info
    fn info_json(&self, data: &Self::Data) -> Option<String> {
        let _ = data;
        None
    }
}

/// [`Helper`] with its data type erased, so helpers of different types share one list.
/// Every method finds its data by downcasting; a mismatch (impossible: the slot pairs
/// each helper with the data it made) skips the call.
trait DynHelper: Send + Sync {
    fn name(&self) -> &str;
    fn new_conn_data(&self) -> Box<dyn Any + Send>;
    fn input(&self, data: &mut dyn Any, ctx: &InputCtx<'_>);
    fn ack_done(&self, data: &mut dyn Any, ctx: &AckDoneCtx);
    fn output(&self, data: &mut dyn Any, ctx: &OutputCtx);
    fn established(&self, data: &mut dyn Any, ctx: &ConnCtx);
    fn closed(&self, data: &mut dyn Any, ctx: &ConnCtx);
    fn take_ertt(&self, data: &mut dyn Any) -> Option<Ertt>;
    fn info_json(&self, data: &dyn Any) -> Option<String>;
}

impl<H: Helper> DynHelper for H {
    fn name(&self) -> &str {
        Helper::name(self)
    }

    fn new_conn_data(&self) -> Box<dyn Any + Send> {
        Box::new(Helper::new_conn_data(self))
    }

    fn input(&self, data: &mut dyn Any, ctx: &InputCtx<'_>) {
        if let Some(d) = data.downcast_mut() {
            Helper::input(self, d, ctx);
        }
    }

    fn ack_done(&self, data: &mut dyn Any, ctx: &AckDoneCtx) {
        if let Some(d) = data.downcast_mut() {
            Helper::ack_done(self, d, ctx);
        }
    }

    fn output(&self, data: &mut dyn Any, ctx: &OutputCtx) {
        if let Some(d) = data.downcast_mut() {
            Helper::output(self, d, ctx);
        }
    }

    fn established(&self, data: &mut dyn Any, ctx: &ConnCtx) {
        if let Some(d) = data.downcast_mut() {
            Helper::established(self, d, ctx);
        }
    }

    fn closed(&self, data: &mut dyn Any, ctx: &ConnCtx) {
        if let Some(d) = data.downcast_mut() {
            Helper::closed(self, d, ctx);
        }
    }

    fn take_ertt(&self, data: &mut dyn Any) -> Option<Ertt> {
        Helper::take_ertt(self, data.downcast_mut()?)
    }

    fn info_json(&self, data: &dyn Any) -> Option<String> {
        Helper::info_json(self, data.downcast_ref()?)
    }
}

/// One registration: the helper and whether it is still registered.
struct Registered {
    helper: Box<dyn DynHelper>,
    points: HookPoints,
    /// Cleared by unregistering; connections check it before each call.
    live: AtomicBool,
}

/// Why a helper could not be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelperError {
    /// A helper of that name is registered on the stack already.
    #[error("a helper named {0:?} is already registered")]
    Exists(String),
    /// The name is empty.
    #[error("a helper needs a name")]
    NoName,
}

/// The helpers registered on a stack, as new connections copy them (a field of
/// [`TcpConfig`](crate::TcpConfig); change it through
/// [`NetStack::register_helper`](crate::NetStack::register_helper)). Cloning shares it.
#[derive(Clone, Default)]
pub struct HelperSet(Arc<[Arc<Registered>]>);

impl fmt::Debug for HelperSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl HelperSet {
    /// The registered helpers' names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|r| r.helper.name().to_string()).collect()
    }

    /// No helper registered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The set with `h` added after the others.
    pub(crate) fn with<H: Helper>(&self, h: H) -> Result<HelperSet, HelperError> {
        let name = Helper::name(&h);
        if name.is_empty() {
            return Err(HelperError::NoName);
        }
        if self.0.iter().any(|r| r.helper.name() == name) {
            return Err(HelperError::Exists(name.to_string()));
        }
        let reg = Arc::new(Registered {
            points: Helper::hook_points(&h),
            helper: Box::new(h),
            live: AtomicBool::new(true),
        });
        Ok(HelperSet(self.0.iter().cloned().chain([reg]).collect()))
    }

    /// The set without the helper called `name` (which stops running on every
    /// connection), or `None` if there is none.
    pub(crate) fn without(&self, name: &str) -> Option<HelperSet> {
        let gone = self.0.iter().find(|r| r.helper.name() == name)?;
        // Release pairs with the Acquire of the connections' checks: a hook that sees
        // the helper dead never runs it again.
        gone.live.store(false, Ordering::Release);
        Some(HelperSet(
            self.0
                .iter()
                .filter(|r| !Arc::ptr_eq(r, gone))
                .cloned()
                .collect(),
        ))
    }

    /// The slot of a new connection: data from each registered helper, or `None` (the
    /// common case) when there is none.
    pub(crate) fn new_slot(&self) -> Option<Box<HelperSlot>> {
        if self.0.is_empty() {
            return None;
        }
        let entries: Vec<Entry> = self
            .0
            .iter()
            .map(|r| Entry {
                data: r.helper.new_conn_data(),
                reg: r.clone(),
            })
            .collect();
        let points = entries
            .iter()
            .fold(HookPoints::NONE, |p, e| p.union(e.reg.points));
        Some(Box::new(HelperSlot { points, entries }))
    }
}

/// One helper's data on one connection.
struct Entry {
    reg: Arc<Registered>,
    data: Box<dyn Any + Send>,
}

/// A connection's helper data (FreeBSD's `struct osd` on the tcpcb): one entry per helper
/// registered when it was created. Lives in `Tcb::helpers`, boxed so that a connection
/// without helpers pays one pointer.
pub(crate) struct HelperSlot {
    /// The union of the live entries' points: a point nobody uses costs no walk.
    points: HookPoints,
    entries: Vec<Entry>,
}

impl fmt::Debug for HelperSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelperSlot")
            .field("points", &self.points)
            .field("helpers", &self.names())
            .finish()
    }
}

impl HelperSlot {
    /// Whether some helper on the connection uses `p`.
    pub(crate) fn uses(&self, p: HookPoint) -> bool {
        self.points.contains(p)
    }

    /// Runs `f` for each live helper using `p`, with its data; drops the data of
    /// helpers unregistered since. False when no helper is left (the caller frees the
    /// slot).
    fn run(&mut self, p: HookPoint, mut f: impl FnMut(&dyn DynHelper, &mut dyn Any)) -> bool {
        let mut dead = false;
        for e in &mut self.entries {
            if !e.reg.live.load(Ordering::Acquire) {
                dead = true;
                continue;
            }
            if e.reg.points.contains(p) {
                f(&*e.reg.helper, &mut *e.data);
            }
        }
        if dead {
            self.entries.retain(|e| e.reg.live.load(Ordering::Acquire));
            self.points = self
                .entries
                .iter()
                .fold(HookPoints::NONE, |p, e| p.union(e.reg.points));
        }
        !self.entries.is_empty()
    }

    /// [`HookPoint::Input`]; returns the newest ERTT measurement a helper took.
    pub(crate) fn input(&mut self, ctx: &InputCtx<'_>) -> (bool, Option<Ertt>) {
        let mut ertt = None;
        let alive = self.run(HookPoint::Input, |h, d| {
            h.input(d, ctx);
            if let Some(e) = h.take_ertt(d) {
                ertt = Some(e);
            }
        });
        (alive, ertt)
    }

    /// [`HookPoint::AckDone`].
    pub(crate) fn ack_done(&mut self, ctx: &AckDoneCtx) -> bool {
        self.run(HookPoint::AckDone, |h, d| h.ack_done(d, ctx))
    }

    /// [`HookPoint::Output`].
    pub(crate) fn output(&mut self, ctx: &OutputCtx) -> bool {
        self.run(HookPoint::Output, |h, d| h.output(d, ctx))
    }

    /// [`HookPoint::Established`].
    pub(crate) fn established(&mut self, ctx: &ConnCtx) -> bool {
        self.run(HookPoint::Established, |h, d| h.established(d, ctx))
    }

    /// [`HookPoint::Closed`].
    pub(crate) fn closed(&mut self, ctx: &ConnCtx) {
        self.run(HookPoint::Closed, |h, d| h.closed(d, ctx));
    }

    /// The live helpers' names.
    pub(crate) fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.reg.live.load(Ordering::Acquire))
            .map(|e| e.reg.helper.name().to_string())
            .collect()
    }

    /// The data of the live helper called `name`, if it is a `T`.
    pub(crate) fn data<T: 'static>(&self, name: &str) -> Option<&T> {
        self.entries
            .iter()
            .find(|e| e.reg.helper.name() == name && e.reg.live.load(Ordering::Acquire))?
            .data
            .downcast_ref()
    }

    /// `(name, JSON)` of each live helper that reports its data.
    pub(crate) fn info_json(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter(|e| e.reg.live.load(Ordering::Acquire))
            .filter_map(|e| {
                let j = e.reg.helper.info_json(&*e.data)?;
                Some((e.reg.helper.name().to_string(), j))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Counting(Arc<AtomicUsize>);

    impl Helper for Counting {
        type Data = u32;

        fn name(&self) -> &str {
            "counting"
        }

        fn hook_points(&self) -> HookPoints {
            HookPoints::of(&[HookPoint::Output])
        }

        fn new_conn_data(&self) -> u32 {
            0
        }

        fn output(&self, data: &mut u32, _ctx: &OutputCtx) {
            *data += 1;
            self.0.fetch_add(1, Ordering::Relaxed);
        }

        fn info_json(&self, data: &u32) -> Option<String> {
            Some(data.to_string())
        }
    }

    #[test]
    fn points_are_a_bit_set() {
        let p = HookPoints::of(&[HookPoint::Input, HookPoint::Closed]);
        assert!(p.contains(HookPoint::Input) && p.contains(HookPoint::Closed));
        assert!(!p.contains(HookPoint::Output));
        assert_eq!(format!("{p:?}"), "{Input, Closed}");
        assert!(!HookPoints::NONE.contains(HookPoint::Input));
    }

    #[test]
    fn empty_set_gives_no_slot_and_names_are_unique() {
        let set = HelperSet::default();
        assert!(set.new_slot().is_none());
        let n = Arc::new(AtomicUsize::new(0));
        let set = set.with(Counting(n.clone())).unwrap();
        assert_eq!(
            set.with(Counting(n.clone())).err(),
            Some(HelperError::Exists("counting".into()))
        );
        assert_eq!(set.names(), ["counting"]);
        let slot = set.new_slot().expect("a slot");
        assert!(slot.uses(HookPoint::Output) && !slot.uses(HookPoint::Input));
        assert_eq!(
            slot.info_json(),
            [("counting".to_string(), "0".to_string())]
        );
        assert!(set.without("other").is_none());
        let empty = set.without("counting").unwrap();
        assert!(empty.is_empty() && empty.new_slot().is_none());
        // The slot made before notices on its next point, calls nothing, and empties.
        assert!(slot.names().is_empty());
        assert!(slot.info_json().is_empty());
    }

    /// One pointer per connection: what the control block pays for the slot.
    #[test]
    fn the_slot_costs_one_pointer() {
        assert_eq!(
            std::mem::size_of::<Option<Box<HelperSlot>>>(),
            std::mem::size_of::<usize>()
        );
    }
}
