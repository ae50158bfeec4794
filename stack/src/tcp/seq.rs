//! TCP sequence numbers: a wrapping 32-bit newtype whose comparisons are modular.
//!
//! RFC 9293 §3.4: "It is essential to remember that the actual sequence number space is
//! finite, though very large. This space ranges from 0 to 2**32 - 1. Since the space is
//! finite, all arithmetic dealing with sequence numbers must be performed modulo 2**32."
//!
//! `a < b` means "`a` comes before `b`" when the two are less than 2**31 apart, the usual
//! serial-number comparison (RFC 1982), computed as the sign of `(a - b) as i32` like
//! smoltcp's `TcpSeqNumber` and the BSD `SEQ_LT` macros. Two numbers exactly 2**31 apart
//! each compare "less" than the other; callers never compare numbers that far apart
//! (windows are at most 2**30 bytes, RFC 7323 §2.3), and that is why the ordering is only
//! `PartialOrd`, not `Ord`.

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

/// A TCP sequence (or acknowledgment) number. Arithmetic wraps modulo 2**32 and
/// comparisons are modular (RFC 9293 §3.4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seq(pub u32);

impl Seq {
    /// The wrapping distance from `earlier` forward to `self`: how many sequence numbers
    /// lie in `[earlier, self)`. Meaningful only when `earlier <= self` (modular); otherwise
    /// it is the large distance the long way round.
    #[inline]
    pub fn dist(self, earlier: Seq) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// The later of the two (modular order).
    #[inline]
    pub fn max(self, o: Seq) -> Seq {
        if self > o {
            self
        } else {
            o
        }
    }

    /// The earlier of the two (modular order).
    #[inline]
    pub fn min(self, o: Seq) -> Seq {
        if self < o {
            self
        } else {
            o
        }
    }

    /// True when `start <= self < start + len` (modular). An empty window (`len == 0`)
    /// contains nothing; RFC 9293 §3.10.7.4's acceptability test handles the zero-window
    /// cases itself.
    #[inline]
    pub fn in_window(self, start: Seq, len: u32) -> bool {
        self.0.wrapping_sub(start.0) < len
    }

    /// True when `start <= self < end` (modular), i.e. `in_window(start, end - start)`.
    #[inline]
    pub fn in_range(self, start: Seq, end: Seq) -> bool {
        self.in_window(start, end.dist(start))
    }

    /// True when `start <= self <= end` (modular), the form RFC 9293 §3.10.7.4 uses for
    /// ACK acceptability (`SND.UNA < SEG.ACK =< SND.NXT`, with the lower bound checked
    /// separately).
    #[inline]
    pub fn in_range_inclusive(self, start: Seq, end: Seq) -> bool {
        self.0.wrapping_sub(start.0) <= end.0.wrapping_sub(start.0)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl PartialOrd for Seq {
    /// Modular order: the sign of the wrapping difference taken as an `i32`.
    #[inline]
    fn partial_cmp(&self, other: &Seq) -> Option<Ordering> {
        Some((self.0.wrapping_sub(other.0) as i32).cmp(&0))
    }
}

impl Add<u32> for Seq {
    type Output = Seq;
    #[inline]
    fn add(self, rhs: u32) -> Seq {
        Seq(self.0.wrapping_add(rhs))
    }
}

impl AddAssign<u32> for Seq {
    #[inline]
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl Sub<u32> for Seq {
    type Output = Seq;
    #[inline]
    fn sub(self, rhs: u32) -> Seq {
        Seq(self.0.wrapping_sub(rhs))
    }
}

impl SubAssign<u32> for Seq {
    #[inline]
    fn sub_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_sub(rhs);
    }
}

impl Sub<Seq> for Seq {
    /// The signed distance `self - rhs`: positive when `self` is after `rhs`.
    type Output = i32;
    #[inline]
    fn sub(self, rhs: Seq) -> i32 {
        self.0.wrapping_sub(rhs.0) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_plain() {
        assert!(Seq(1) < Seq(2));
        assert!(Seq(2) > Seq(1));
        assert!(Seq(5) <= Seq(5));
        assert!(Seq(5) >= Seq(5));
        assert_eq!(Seq(5).partial_cmp(&Seq(5)), Some(Ordering::Equal));
    }

    #[test]
    fn ordering_across_wrap() {
        // RFC 9293 §3.4: arithmetic is modulo 2**32, so 0xffff_fff0 is before 0x10.
        let a = Seq(0xffff_fff0);
        let b = a + 0x20;
        assert_eq!(b, Seq(0x10));
        assert!(a < b);
        assert!(b > a);
        assert_eq!(b - a, 0x20);
        assert_eq!(a - b, -0x20);
        assert_eq!(b.dist(a), 0x20);
        assert_eq!(b.max(a), b);
        assert_eq!(a.max(b), b);
        assert_eq!(b.min(a), a);
        assert_eq!(a.min(b), a);
    }

    #[test]
    fn arithmetic_wraps() {
        let mut s = Seq(u32::MAX);
        s += 1;
        assert_eq!(s, Seq(0));
        s -= 1;
        assert_eq!(s, Seq(u32::MAX));
        assert_eq!(Seq(3) - 5u32, Seq(u32::MAX - 1));
        assert_eq!(Seq(0).dist(Seq(u32::MAX)), 1);
    }

    #[test]
    fn in_window_across_wrap() {
        let start = Seq(0xffff_fff0);
        assert!(start.in_window(start, 0x20));
        assert!(Seq(0xffff_ffff).in_window(start, 0x20));
        assert!(Seq(0).in_window(start, 0x20));
        assert!(Seq(0xf).in_window(start, 0x20));
        assert!(!Seq(0x10).in_window(start, 0x20));
        assert!(!Seq(0xffff_ffef).in_window(start, 0x20));
        assert!(!start.in_window(start, 0));
        assert!(Seq(0x8).in_range(start, Seq(0x10)));
        assert!(!Seq(0x10).in_range(start, Seq(0x10)));
        assert!(Seq(0x10).in_range_inclusive(start, Seq(0x10)));
        assert!(start.in_range_inclusive(start, start));
        assert!(!Seq(0x11).in_range_inclusive(start, Seq(0x10)));
    }

    #[test]
    fn signed_distance_halfway() {
        // 2**31 - 1 ahead is still "after".
        let a = Seq(0x8000_0000);
        assert!(a + 0x7fff_ffff > a);
        assert_eq!((a + 0x7fff_ffff) - a, i32::MAX);
    }

    #[test]
    fn formatting_shows_the_number() {
        assert_eq!(format!("{:?}", Seq(42)), "42");
        assert_eq!(format!("{}", Seq(0xffff_ffff)), "4294967295");
    }
}
