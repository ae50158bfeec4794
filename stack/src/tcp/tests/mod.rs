//! TCP tests: per-state sans-IO tests and whole transfers over the simulated link.

#[macro_use]
mod harness;

mod sim_many;
mod sim_transfer;
mod syn_sent;
mod syn_received;
mod established;
mod fin_wait;
mod close_wait_last_ack;
mod closing;
mod time_wait;
mod rst;
mod syn_in_window;
mod ack_checks;
mod options;
mod retransmission;
mod persist;
mod delack_nagle;
mod sws;
mod reassembly;
mod keepalive;
mod fast_retransmit;
mod simultaneous;
mod half_close;
mod sack;
mod sack_recovery;
mod limited_transmit;
mod spurious_rto;
mod sim_sack;
