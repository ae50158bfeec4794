//! TCP tests: per-state sans-IO tests and whole transfers over the simulated link.

mod sim_transfer;
