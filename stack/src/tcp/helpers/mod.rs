//! The helper modules in the tree (`tcp/hhook.rs` is the interface): ERTT, an
//! enhanced per-segment RTT estimate after FreeBSD's `h_ertt`, which congestion control
//! can read; and per-connection statistics (RTT and delivery-rate histograms) for
//! `/info`.

pub mod ertt;
pub mod stats;

pub use ertt::{ErttData, ErttHelper};
pub use stats::{Log2Histogram, StatsData, StatsHelper};

/// The helpers in the tree by name, for command lines (`xstack http --helper stats`).
pub const NAMES: [&str; 2] = [ErttHelper::NAME, StatsHelper::NAME];

/// Registers the in-tree helper called `name` on `net`.
pub fn register(net: &crate::NetStack, name: &str) -> Result<(), RegisterError> {
    match name {
        ErttHelper::NAME => net.register_helper(ErttHelper)?,
        StatsHelper::NAME => net.register_helper(StatsHelper)?,
        _ => return Err(RegisterError::Unknown(name.to_string())),
    }
    Ok(())
}

/// Why [`register`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// No helper in the tree has that name.
    #[error("no helper named {0:?} (known: ertt, stats)")]
    Unknown(String),
    /// Registration refused (e.g. already registered).
    #[error(transparent)]
    Helper(#[from] crate::tcp::hhook::HelperError),
}
