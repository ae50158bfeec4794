//! A readiness poller for event loops (epoll-like, level-triggered): register many
//! sockets with a token and an interest, then `wait` for those that are ready.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use super::listener::TcpListener;
use super::stream::TcpStream;
use crate::tcp::pcb::{Conn, Listener, ReadinessSink};

/// What to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    /// Readable (data, EOF, error; or a connection to accept).
    pub readable: bool,
    /// Writable (send-buffer space; or connect finished).
    pub writable: bool,
}

impl Interest {
    /// Readable only.
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Writable only.
    pub const WRITABLE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Both.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };
}

/// One ready socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token it was registered with.
    pub token: usize,
    /// Reading would not block.
    pub readable: bool,
    /// Writing would not block.
    pub writable: bool,
    /// The connection failed or was reset (reading reports the error).
    pub error: bool,
}

/// Something a poller can watch.
pub trait Source {
    /// Registers the poller's sink with the socket.
    #[doc(hidden)]
    fn attach(&self, sink: Weak<dyn ReadinessSink>, token: usize);
    /// A handle the poller keeps to check readiness.
    #[doc(hidden)]
    fn watched(&self) -> Watched;
}

#[doc(hidden)]
#[derive(Clone)]
pub enum Watched {
    Stream(Weak<Conn>),
    Listener(Weak<Listener>),
}

impl Source for TcpStream {
    fn attach(&self, sink: Weak<dyn ReadinessSink>, token: usize) {
        self.conn().lock().sinks.push((sink, token));
    }
    fn watched(&self) -> Watched {
        Watched::Stream(Arc::downgrade(self.conn()))
    }
}

impl Source for TcpListener {
    fn attach(&self, sink: Weak<dyn ReadinessSink>, token: usize) {
        self.listener
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((sink, token));
    }
    fn watched(&self) -> Watched {
        Watched::Listener(Arc::downgrade(&self.listener))
    }
}

struct Shared {
    /// Bumped on every notification, so `wait` never sleeps through one.
    generation: Mutex<u64>,
    cond: Condvar,
}

impl ReadinessSink for Shared {
    fn notify(&self, _token: usize) {
        let mut g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        *g += 1;
        self.cond.notify_all();
    }
}

/// The poller. Usable from one thread at a time for `wait`; registration from any.
pub struct Poller {
    shared: Arc<Shared>,
    registered: Mutex<HashMap<usize, (Watched, Interest)>>,
}

impl Default for Poller {
    fn default() -> Self {
        Poller::new()
    }
}

impl Poller {
    /// An empty poller.
    pub fn new() -> Poller {
        Poller {
            shared: Arc::new(Shared {
                generation: Mutex::new(0),
                cond: Condvar::new(),
            }),
            registered: Mutex::new(HashMap::new()),
        }
    }

    /// Watches `source` under `token`. Registering a token again replaces it.
    pub fn register(
        &self,
        source: &impl Source,
        token: usize,
        interest: Interest,
    ) -> io::Result<()> {
        let sink: Arc<dyn ReadinessSink> = self.shared.clone();
        source.attach(Arc::downgrade(&sink), token);
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, (source.watched(), interest));
        Ok(())
    }

    /// Changes a registration's interest.
    pub fn reregister(&self, token: usize, interest: Interest) -> io::Result<()> {
        let mut r = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        match r.get_mut(&token) {
            Some(e) => {
                e.1 = interest;
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "token not registered",
            )),
        }
    }

    /// Stops watching `token`.
    pub fn deregister(&self, token: usize) -> io::Result<()> {
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&token)
            .map(|_| ())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "token not registered"))
    }

    /// Fills `events` with the ready sockets, waiting up to `timeout` (`None`:
    /// forever) for at least one. Returns how many.
    pub fn wait(&self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<usize> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let seen = *self
                .shared
                .generation
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            events.clear();
            self.scan(events);
            if !events.is_empty() {
                return Ok(events.len());
            }
            let mut g = self
                .shared
                .generation
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            while *g == seen {
                match deadline {
                    None => g = self.shared.cond.wait(g).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            return Ok(0);
                        }
                        g = self
                            .shared
                            .cond
                            .wait_timeout(g, d - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
        }
    }

    fn scan(&self, events: &mut Vec<Event>) {
        let mut r = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        r.retain(|_, (w, _)| match w {
            Watched::Stream(c) => c.strong_count() > 0,
            Watched::Listener(l) => l.strong_count() > 0,
        });
        for (&token, (w, interest)) in r.iter() {
            let (readable, writable, error) = match w {
                Watched::Stream(c) => {
                    let Some(c) = c.upgrade() else { continue };
                    let inner = c.lock();
                    let t = &inner.tcb;
                    (t.read_ready(), t.write_ready(), t.error().is_some())
                }
                Watched::Listener(l) => {
                    let Some(l) = l.upgrade() else { continue };
                    let ready = !l.queue.lock().map(|q| q.is_empty()).unwrap_or(true);
                    (ready, false, false)
                }
            };
            let ev = Event {
                token,
                readable: readable && interest.readable,
                writable: writable && interest.writable,
                error,
            };
            if ev.readable || ev.writable || ev.error {
                events.push(ev);
            }
        }
    }
}
