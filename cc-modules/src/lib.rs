//! Congestion-control interface (filled in by the TCP issue).
