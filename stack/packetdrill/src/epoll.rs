//! `epoll_create`, `epoll_ctl` and `epoll_wait` over the shim's descriptors, built on
//! [`Inner::poll_once`]. Level-triggered: `EPOLLET` is accepted and reported like a
//! level-triggered registration (a script sees the same events unless it relies on
//! an edge not being repeated); `EPOLLONESHOT` disarms the registration once reported,
//! as in Linux.

use std::time::Instant;

use libc::c_int;

use crate::shim::Inner;
use crate::sockets::{Opts, Sock};

/// One registration: the descriptor, its `epoll_event.events` and `.data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub fd: c_int,
    pub events: u32,
    pub data: u64,
}

const READ: u32 = libc::EPOLLIN as u32;
const WRITE: u32 = libc::EPOLLOUT as u32;
const ONESHOT: u32 = libc::EPOLLONESHOT as u32;

impl Inner {
    pub fn epoll_create(&mut self) -> c_int {
        self.fds.insert(Sock::Epoll(Vec::new(), Opts::default()))
    }

    /// `epoll_ctl`; `ev` is the event for `EPOLL_CTL_ADD`/`MOD`.
    pub fn epoll_ctl(
        &mut self,
        ep: c_int,
        op: c_int,
        fd: c_int,
        ev: Option<(u32, u64)>,
    ) -> Result<(), c_int> {
        self.fds.get(fd)?;
        if fd == ep {
            return Err(libc::EINVAL);
        }
        let Sock::Epoll(list, _) = self.fds.get_mut(ep)? else {
            return Err(libc::EINVAL);
        };
        let at = list.iter().position(|e| e.fd == fd);
        match (op, at, ev) {
            (libc::EPOLL_CTL_ADD, Some(_), _) => Err(libc::EEXIST),
            (libc::EPOLL_CTL_ADD, None, Some((events, data))) => {
                list.push(Entry { fd, events, data });
                Ok(())
            }
            (libc::EPOLL_CTL_MOD, Some(i), Some((events, data))) => {
                list[i] = Entry { fd, events, data };
                Ok(())
            }
            (libc::EPOLL_CTL_DEL, Some(i), _) => {
                list.remove(i);
                Ok(())
            }
            (libc::EPOLL_CTL_MOD | libc::EPOLL_CTL_DEL, None, _) => Err(libc::ENOENT),
            (libc::EPOLL_CTL_ADD | libc::EPOLL_CTL_MOD, _, None) => Err(libc::EFAULT),
            _ => Err(libc::EINVAL),
        }
    }

    /// Removes `fd` from every epoll set (a closed descriptor leaves them, as in Linux).
    pub fn epoll_forget(&mut self, fd: c_int) {
        for sock in self.fds.values_mut() {
            if let Sock::Epoll(list, _) = sock {
                list.retain(|e| e.fd != fd);
            }
        }
    }

    /// What is ready now: up to `max` (events, data) pairs.
    pub fn epoll_once(&mut self, ep: c_int, max: usize) -> Result<Vec<(u32, u64)>, c_int> {
        let Sock::Epoll(list, _) = self.fds.get(ep)? else {
            return Err(libc::EINVAL);
        };
        let list = list.clone();
        let mut pfds: Vec<libc::pollfd> = list
            .iter()
            .map(|e| libc::pollfd {
                fd: e.fd,
                events: (e.events & (READ | WRITE)) as i16,
                revents: 0,
            })
            .collect();
        self.poll_once(&mut pfds);
        let ready: Vec<(usize, u32)> = pfds
            .iter()
            .enumerate()
            .filter(|(i, p)| p.revents != 0 && list[*i].events & !ONESHOT != 0)
            .map(|(i, p)| (i, p.revents as u16 as u32))
            .take(max)
            .collect();
        if let Ok(Sock::Epoll(live, _)) = self.fds.get_mut(ep) {
            for &(i, _) in &ready {
                if list[i].events & ONESHOT != 0 {
                    if let Some(e) = live.iter_mut().find(|e| e.fd == list[i].fd) {
                        e.events = ONESHOT;
                    }
                }
            }
        }
        Ok(ready
            .into_iter()
            .map(|(i, ev)| (ev, list[i].data))
            .collect())
    }

    /// `epoll_wait` as one attempt: `EAGAIN` while nothing is ready and `timeout_ms`
    /// of virtual time has not passed since `began`.
    pub fn epoll_wait(
        &mut self,
        ep: c_int,
        max: usize,
        timeout_ms: c_int,
        began: Instant,
    ) -> Result<Vec<(u32, u64)>, c_int> {
        let ready = self.epoll_once(ep, max)?;
        if !ready.is_empty() || timeout_ms == 0 {
            return Ok(ready);
        }
        let waited = self.now().saturating_duration_since(began);
        if timeout_ms > 0 && waited.as_millis() >= timeout_ms as u128 {
            return Ok(ready);
        }
        Err(libc::EAGAIN)
    }
}
