//! A worker thread: one per receive queue, pinned to a CPU, owning that queue's AF_XDP
//! socket. Each iteration is the shared data path ([`WorkerCore::step`], see
//! [`crate::pipeline`]) at the time of the system clock; what is left here is the
//! thread's own business: stopping, and what to do when there is nothing to do.
//!
//! When idle it either spins (busy polling: lowest latency, one core per worker) or
//! sleeps in poll(2) on the socket and an eventfd that netisr and `Stack::stop` use to
//! wake it.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::device::xsk::XskTx;
use crate::link::XskLinkRx;
use crate::pipeline::{WorkerCore, TIMER_TICK};

/// What a worker does when there is nothing to receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdleMode {
    /// Keep polling the rings (needs a core per worker).
    #[default]
    Busy,
    /// Sleep in poll() until a frame, a handoff or a timer.
    Sleep,
}

impl std::str::FromStr for IdleMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "busy" => Ok(IdleMode::Busy),
            "sleep" => Ok(IdleMode::Sleep),
            _ => Err(format!("unknown idle mode '{s}' (expected busy or sleep)")),
        }
    }
}

/// The data path of a worker on a real interface.
pub(crate) type XskWorkerCore = WorkerCore<XskLinkRx, XskTx>;

/// A worker's wake-up line: an eventfd that netisr, the TCP layer (through netisr) and
/// `Stack::stop` write to, and a sleeping worker polls.
pub(crate) struct WakeFd(EventFd);

impl WakeFd {
    pub(crate) fn new() -> std::io::Result<Self> {
        let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(WakeFd(fd))
    }

    /// Wakes the worker if it sleeps (or makes its next poll return at once).
    pub(crate) fn wake(&self) {
        // EAGAIN means the counter is saturated: a wake-up is pending anyway.
        let _ = self.0.write(1);
    }

    /// Consumes pending wake-ups.
    fn clear(&self) {
        let _ = self.0.read();
    }
}

/// Everything a worker thread owns.
pub(crate) struct Worker {
    pub core: XskWorkerCore,
    pub stop: Arc<AtomicBool>,
    pub running: Arc<AtomicBool>,
    pub idle: IdleMode,
    /// Another worker is pinned to the same CPU: spinning must yield to it.
    pub shares_cpu: bool,
    pub wake_fd: Arc<WakeFd>,
}

impl Worker {
    /// The worker's loop; returns when `stop` is set.
    pub fn run(mut self) {
        let mut idle_spins: u32 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let running = self.running.load(Ordering::Relaxed);
            let r = self.core.step(Instant::now(), running);
            if r.woken > 0 && self.idle == IdleMode::Busy {
                // Let the threads we just woke run now if they share our CPU: they
                // consume what we received and produce the next thing to send. On a
                // dedicated core this is a cheap no-op.
                std::thread::yield_now();
            }
            if r.busy() {
                idle_spins = 0;
                continue;
            }
            idle_spins = idle_spins.saturating_add(1);
            match self.idle {
                IdleMode::Busy => {
                    self.core.rx_idle();
                    // Yield now and then: a no-op on a dedicated core, but it lets other
                    // workers or application threads pinned to this CPU run (they are
                    // what produces the next reply).
                    if self.shares_cpu {
                        // The other worker may keep the CPU for a whole time slice: what
                        // this one holds for company goes now.
                        self.core.flush_held();
                        std::thread::yield_now();
                    } else if idle_spins % 16 == 0 {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
                IdleMode::Sleep => {
                    // Spin briefly before sleeping: a reply often follows within
                    // microseconds, and a poll() round trip costs more than that.
                    if idle_spins < 64 {
                        std::hint::spin_loop();
                        continue;
                    }
                    self.sleep();
                }
            }
        }
        // Push out anything still queued (e.g. replies produced by the last batch).
        self.core.flush_tx();
    }

    fn sleep(&mut self) {
        self.core.flush_held();
        let (id, netisr) = (self.core.id, &*self.core.layers.netisr);
        if !netisr.prepare_sleep(id) {
            return;
        }
        // Pairs with the fence in `Netisr::notify`: a kick published before it is seen
        // here; one published after it finds us sleeping and writes the eventfd.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.core.has_pending() {
            netisr.woke(id);
            return;
        }
        let mut timeout = if id == 0 {
            TIMER_TICK
        } else {
            Duration::from_secs(1)
        };
        if let Some(t) = self.core.next_wake() {
            // Round up to the next millisecond: poll() cannot sleep less.
            timeout = timeout
                .min(t.saturating_duration_since(Instant::now()) + Duration::from_micros(999));
        }
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        // SAFETY: the AF_XDP socket's fd stays open while `self.core.rx` lives, which is
        // longer than this borrow.
        let xsk = unsafe { BorrowedFd::borrow_raw(self.core.rx.fd()) };
        let mut fds = [
            PollFd::new(xsk, PollFlags::POLLIN),
            PollFd::new(self.wake_fd.0.as_fd(), PollFlags::POLLIN),
        ];
        // EINTR and friends: the loop polls the rings again either way.
        let _ = poll(&mut fds, timeout);
        let woken = fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        netisr.woke(id);
        if woken {
            self.wake_fd.clear();
        }
    }
}
