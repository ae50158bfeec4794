//! TCP tests: per-state sans-IO tests and whole transfers over the simulated link.

#[macro_use]
mod harness;

mod ack_checks;
mod close_wait_last_ack;
mod closing;
mod cwnd_trace;
mod delack_nagle;
mod ecn;
mod established;
mod fast_retransmit;
mod fin_wait;
mod freebsd_compat;
mod half_close;
mod keepalive;
mod limited_transmit;
mod options;
mod persist;
mod rack_tlp;
mod reassembly;
mod retransmission;
mod rst;
mod sack;
mod sack_recovery;
mod sim_bbr;
mod sim_ecn;
mod sim_limits;
mod sim_lost_rexmit;
mod sim_lro;
mod sim_many;
mod sim_pacing;
mod sim_pmtu;
mod sim_rack;
mod sim_sack;
mod sim_sack_bound;
mod sim_syncookies;
mod sim_transfer;
mod sim_tso;
mod simultaneous;
mod spurious_rto;
mod sws;
mod syn_in_window;
mod syn_received;
mod syn_sent;
mod time_wait;
mod tw_reopen;
