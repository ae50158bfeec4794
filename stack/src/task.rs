//! Application code on a worker's own thread: run-to-completion.
//!
//! By default an application runs on its own threads and the workers hand it readiness
//! (condvars, readiness fds, [`crate::ReadyQueue`]). That costs a thread switch per
//! hand-off, and on a machine with a core per worker and nothing else, two threads share
//! the worker's core. [`NetStack::run_on_worker`](crate::NetStack::run_on_worker) is the
//! other model, F-Stack's `ff_run` and the DPDK lcore loop: the application gives a
//! worker a [`WorkerTask`], and the worker calls it on every turn of its loop, after the
//! turn's input, handoffs, output and timers and before what the task wrote is put on the
//! wire. A request that arrives in a receive batch is answered in the same turn, on the
//! same core, with no hand-off at all.
//!
//! The rules for a task:
//! - It must not block. Sockets used on a worker thread behave as nonblocking whatever
//!   their setting (a blocking call would wait for the very thread it runs on): a call
//!   that would wait answers `WouldBlock`.
//! - It says what it did ([`TaskStatus`]): `Busy` to be called again at once, `Idle` with
//!   the time it next needs to run (the worker may sleep until then, or until new input
//!   arrives), `Done` to be dropped.
//! - Readiness reaches it through a [`crate::ReadyQueue`] made for the worker
//!   ([`crate::ReadyQueue::for_worker`]): a push wakes the worker if it sleeps, without a
//!   file descriptor, and the task drains the queue on its next call.
//!
//! When the stack stops, tasks still running are dropped on their worker's thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Application code a worker runs on every turn of its loop (see the module docs).
pub trait WorkerTask: Send + 'static {
    /// One call: do what is ready, without blocking, and say what comes next.
    fn run(&mut self, cx: &TaskContext) -> TaskStatus;
}

impl<F: FnMut(&TaskContext) -> TaskStatus + Send + 'static> WorkerTask for F {
    fn run(&mut self, cx: &TaskContext) -> TaskStatus {
        self(cx)
    }
}

/// What a [`WorkerTask`] is told on each call.
#[derive(Clone, Copy, Debug)]
pub struct TaskContext {
    now: Instant,
    worker: usize,
}

impl TaskContext {
    /// The time of this turn of the worker's loop (the simulator's virtual time in
    /// simulations).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The worker running the task.
    pub fn worker(&self) -> usize {
        self.worker
    }
}

/// What a [`WorkerTask`] did, and when it next needs to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    /// It did work and may have more: call it again on the next turn, without sleeping.
    Busy,
    /// Nothing to do until a socket's readiness changes or, if given, that time passes.
    Idle(Option<Instant>),
    /// Finished: drop it.
    Done,
}

/// Where tasks wait for their worker to take them (one per worker).
#[derive(Default)]
pub(crate) struct TaskInbox {
    /// Something is in `queue`: one load per turn when nothing is.
    pending: AtomicBool,
    queue: Mutex<Vec<Box<dyn WorkerTask>>>,
    /// A worker's ready queue got a token since the tasks last ran: the worker must not
    /// sleep before running them.
    signalled: AtomicBool,
}

impl TaskInbox {
    pub(crate) fn push(&self, task: Box<dyn WorkerTask>) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
        self.pending.store(true, Ordering::SeqCst);
    }

    /// True when the worker must run its tasks before it sleeps: new tasks, or
    /// readiness for them.
    pub(crate) fn pending(&self) -> bool {
        // SeqCst: the worker loads this after marking itself sleeping; a signaller
        // stores before it checks that mark (`Netisr::notify`).
        self.pending.load(Ordering::SeqCst) || self.signalled.load(Ordering::SeqCst)
    }

    /// A [`crate::ReadyQueue::for_worker`] queue got its first token: called before the
    /// worker is woken.
    pub(crate) fn signal(&self) {
        self.signalled.store(true, Ordering::SeqCst);
    }

    fn take(&self, into: &mut Vec<Box<dyn WorkerTask>>) {
        self.signalled.store(false, Ordering::SeqCst);
        if self.pending.swap(false, Ordering::AcqRel) {
            into.append(&mut self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

thread_local! {
    /// Set while a worker runs its tasks: socket calls made then must not block.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

/// True on a worker thread inside a task, where a socket call must not wait.
pub(crate) fn in_task() -> bool {
    IN_TASK.with(Cell::get)
}

/// A worker's running tasks.
#[derive(Default)]
pub(crate) struct Tasks {
    running: Vec<Box<dyn WorkerTask>>,
    /// The earliest time an idle task asked to run again, as of the last turn.
    next: Option<Instant>,
}

impl Tasks {
    /// Takes new tasks from `inbox` and runs every task once; true if one was busy.
    pub(crate) fn run(&mut self, inbox: &TaskInbox, now: Instant, worker: usize) -> bool {
        inbox.take(&mut self.running);
        if self.running.is_empty() {
            self.next = None;
            return false;
        }
        let cx = TaskContext { now, worker };
        let (mut busy, mut next) = (false, None::<Instant>);
        IN_TASK.with(|f| f.set(true));
        self.running.retain_mut(|t| match t.run(&cx) {
            TaskStatus::Busy => {
                busy = true;
                true
            }
            TaskStatus::Idle(at) => {
                next = match (next, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                true
            }
            TaskStatus::Done => false,
        });
        IN_TASK.with(|f| f.set(false));
        self.next = if busy { Some(now) } else { next };
        busy
    }

    /// True while the worker has tasks.
    pub(crate) fn active(&self) -> bool {
        !self.running.is_empty()
    }

    /// When a task next needs to run without new input (now, if one was busy).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tasks_run_until_done_and_report_the_earliest_wake() {
        let inbox = TaskInbox::default();
        let mut tasks = Tasks::default();
        let t0 = Instant::now();
        assert!(!tasks.run(&inbox, t0, 0));
        let mut calls = 0;
        inbox.push(Box::new(move |cx: &TaskContext| {
            assert!(in_task());
            assert_eq!(cx.worker(), 3);
            calls += 1;
            if calls == 3 {
                TaskStatus::Done
            } else {
                TaskStatus::Idle(Some(cx.now() + Duration::from_millis(calls)))
            }
        }));
        inbox.push(Box::new(|cx: &TaskContext| {
            TaskStatus::Idle(Some(cx.now() + Duration::from_secs(1)))
        }));
        assert!(inbox.pending());
        assert!(!tasks.run(&inbox, t0, 3));
        assert!(!inbox.pending());
        assert!(!in_task());
        assert_eq!(tasks.next_deadline(), Some(t0 + Duration::from_millis(1)));
        tasks.run(&inbox, t0, 3);
        assert_eq!(tasks.next_deadline(), Some(t0 + Duration::from_millis(2)));
        tasks.run(&inbox, t0, 3); // the first is done now
        assert_eq!(tasks.running.len(), 1);
        assert_eq!(tasks.next_deadline(), Some(t0 + Duration::from_secs(1)));
        inbox.push(Box::new(|_: &TaskContext| TaskStatus::Busy));
        assert!(tasks.run(&inbox, t0, 3));
        assert_eq!(tasks.next_deadline(), Some(t0));
    }
}
