//! Name → factory registry (FreeBSD's `cc_register_algo` / `cc_list`), one per stack instance.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Arc, PoisonError, RwLock};

use crate::{bbr, cubic, newreno};
use crate::{CongestionControl, Cubic, NewReno};

/// Longest module name: 15 bytes, so it fits the 16-byte `TCP_CONGESTION` buffer with its
/// NUL (Linux and FreeBSD `TCP_CA_NAME_MAX`).
pub const MAX_NAME_LEN: usize = 15;

/// Builds one [`CongestionControl`] per connection. Tunables belong to the factory (captured
/// when it is made), never to globals read inside the algorithm.
pub trait CcFactory: Send + Sync {
    /// The name the module is registered and selected under, e.g. `"newreno"`: 1 to
    /// [`MAX_NAME_LEN`] bytes of `a-z`, `0-9`, `-`, `_`.
    fn name(&self) -> &'static str;

    /// A fresh controller for one connection. Its [`CongestionControl::name`] must equal
    /// [`CcFactory::name`].
    fn build(&self) -> Box<dyn CongestionControl>;
}

/// A [`CcFactory`] made from a name and a closure; see [`from_fn`].
pub struct FnFactory<F> {
    name: &'static str,
    build: F,
}

/// A factory from a closure:
/// `registry.register(from_fn("fixed", || Box::new(Fixed::default())))`.
pub fn from_fn<F>(name: &'static str, build: F) -> FnFactory<F>
where
    F: Fn() -> Box<dyn CongestionControl> + Send + Sync,
{
    FnFactory { name, build }
}

impl<F> CcFactory for FnFactory<F>
where
    F: Fn() -> Box<dyn CongestionControl> + Send + Sync,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn build(&self) -> Box<dyn CongestionControl> {
        (self.build)()
    }
}

impl<F> fmt::Debug for FnFactory<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnFactory")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What can go wrong selecting or registering a module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CcError {
    /// No module of that name is registered.
    #[error("unknown congestion control '{name}' (available: {})", .available.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The registered names, sorted.
        available: Vec<&'static str>,
    },
    /// A module of that name is already registered.
    #[error("congestion control '{0}' is already registered")]
    Duplicate(&'static str),
    /// The name is empty, too long or has characters outside `a-z 0-9 - _`.
    #[error(
        "invalid congestion control name '{0}': use 1 to {max} characters from a-z, 0-9, '-' and '_'",
        max = MAX_NAME_LEN
    )]
    InvalidName(String),
}

impl From<CcError> for io::Error {
    /// The errno a `setsockopt(TCP_CONGESTION)` user expects: ENOENT for an unknown name,
    /// EEXIST for a duplicate registration, EINVAL for a malformed name.
    fn from(e: CcError) -> Self {
        let kind = match e {
            CcError::Unknown { .. } => io::ErrorKind::NotFound,
            CcError::Duplicate(_) => io::ErrorKind::AlreadyExists,
            CcError::InvalidName(_) => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

/// The congestion-control modules one stack instance knows, by name, and its default. Not
/// global: each `Stack` owns one. All methods take `&self` and are thread-safe, since
/// application threads register modules and switch sockets at run time; a lock is held only
/// for map operations, never while a module's code runs.
pub struct Registry {
    inner: RwLock<Inner>,
}

struct Inner {
    factories: BTreeMap<&'static str, Arc<dyn CcFactory>>,
    /// Always a key of `factories`: names are never removed, and `set_default` checks.
    default: &'static str,
}

impl Registry {
    /// A registry with the built-in modules and NewReno as the default: `newreno`, `cubic`,
    /// both with HyStart++ (RFC 9406) as their initial slow start, `newreno-hs` and
    /// `cubic-hs`, and `bbr`.
    pub fn with_builtins() -> Self {
        let mut factories: BTreeMap<&'static str, Arc<dyn CcFactory>> = BTreeMap::new();
        factories.insert(newreno::NAME, Arc::new(newreno::Factory));
        factories.insert(bbr::NAME, Arc::new(bbr::Factory));
        factories.insert(
            newreno::NAME_HS,
            Arc::new(from_fn(newreno::NAME_HS, || {
                Box::new(NewReno::with_hystart())
            })),
        );
        factories.insert(cubic::NAME, Arc::new(cubic::Factory));
        factories.insert(
            cubic::NAME_HS,
            Arc::new(from_fn(cubic::NAME_HS, || Box::new(Cubic::with_hystart()))),
        );
        Self {
            inner: RwLock::new(Inner {
                factories,
                default: newreno::NAME,
            }),
        }
    }

    /// Register a module under `factory.name()`. Fails if the name is malformed or taken.
    pub fn register<F: CcFactory + 'static>(&self, factory: F) -> Result<(), CcError> {
        let name = factory.name();
        validate_name(name)?;
        let mut inner = self.write();
        if inner.factories.contains_key(name) {
            return Err(CcError::Duplicate(name));
        }
        inner.factories.insert(name, Arc::new(factory));
        Ok(())
    }

    /// The registered names, sorted.
    pub fn available(&self) -> Vec<&'static str> {
        self.read().factories.keys().copied().collect()
    }

    /// Make `name` the module new connections get.
    pub fn set_default(&self, name: &str) -> Result<(), CcError> {
        let mut inner = self.write();
        let Some((&key, _)) = inner.factories.get_key_value(name) else {
            return Err(unknown(name, &inner));
        };
        inner.default = key;
        Ok(())
    }

    /// The name of the default module.
    pub fn default_name(&self) -> &'static str {
        self.read().default
    }

    /// A new controller of module `name`, for one connection.
    pub fn create(&self, name: &str) -> Result<Box<dyn CongestionControl>, CcError> {
        let factory = {
            let inner = self.read();
            match inner.factories.get(name) {
                Some(f) => Arc::clone(f),
                None => return Err(unknown(name, &inner)),
            }
        };
        Ok(build(&*factory))
    }

    /// A new controller of the default module.
    pub fn create_default(&self) -> Box<dyn CongestionControl> {
        let factory = {
            let inner = self.read();
            // Invariant: the default is always registered (see `Inner::default`).
            Arc::clone(&inner.factories[inner.default])
        };
        build(&*factory)
    }

    // A panic never happens while a guard is held (only map operations run under it), so a
    // poisoned lock still guards consistent data: take it rather than propagate the panic.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Registry {
    /// Same as [`Registry::with_builtins`].
    fn default() -> Self {
        Self::with_builtins()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read();
        f.debug_struct("Registry")
            .field("available", &inner.factories.keys().collect::<Vec<_>>())
            .field("default", &inner.default)
            .finish()
    }
}

fn build(factory: &dyn CcFactory) -> Box<dyn CongestionControl> {
    let cc = factory.build();
    debug_assert_eq!(
        cc.name(),
        factory.name(),
        "a factory built a module under another name"
    );
    cc
}

fn unknown(name: &str, inner: &Inner) -> CcError {
    CcError::Unknown {
        name: name.to_string(),
        available: inner.factories.keys().copied().collect(),
    }
}

fn validate_name(name: &str) -> Result<(), CcError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CcError::InvalidName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AckInfo, CcSignal, CcVars, CongInfo};

    /// Holds cwnd where it is: enough to tell modules apart by name.
    #[derive(Debug)]
    struct Still(&'static str);

    impl CongestionControl for Still {
        fn name(&self) -> &'static str {
            self.0
        }
        fn ack_received(&mut self, _: &mut CcVars, _: CcSignal, _: &AckInfo) {}
        fn cong_signal(&mut self, _: &mut CcVars, _: CcSignal, _: &CongInfo) {}
    }

    fn still(
        name: &'static str,
    ) -> FnFactory<impl Fn() -> Box<dyn CongestionControl> + Send + Sync> {
        from_fn(name, move || Box::new(Still(name)))
    }

    #[test]
    fn builtins_have_newreno_as_default() {
        let r = Registry::with_builtins();
        let builtins = vec!["bbr", "cubic", "cubic-hs", "newreno", "newreno-hs"];
        assert_eq!(r.available(), builtins);
        assert_eq!(r.default_name(), "newreno");
        for name in &builtins {
            assert_eq!(r.create(name).map(|cc| cc.name()), Ok(*name));
        }
        assert_eq!(r.create_default().name(), "newreno");
        assert_eq!(Registry::default().available(), builtins);
        // The -hs variants carry HyStart++ state; the plain ones don't.
        let has_hystart = |name| {
            r.create(name)
                .unwrap()
                .state()
                .iter()
                .any(|(k, _)| *k == "hystart")
        };
        assert!(has_hystart("cubic-hs") && has_hystart("newreno-hs"));
        assert!(!has_hystart("cubic") && !has_hystart("newreno"));
    }

    #[test]
    fn available_is_sorted() {
        let r = Registry::with_builtins();
        for name in ["zeta", "alpha", "m-1"] {
            r.register(still(name)).unwrap();
        }
        assert_eq!(
            r.available(),
            vec![
                "alpha",
                "bbr",
                "cubic",
                "cubic-hs",
                "m-1",
                "newreno",
                "newreno-hs",
                "zeta"
            ]
        );
    }

    #[test]
    fn duplicate_registration_is_refused_and_keeps_the_first() {
        let r = Registry::with_builtins();
        let err = r.register(still("newreno")).unwrap_err();
        assert_eq!(err, CcError::Duplicate("newreno"));
        assert_eq!(
            err.to_string(),
            "congestion control 'newreno' is already registered"
        );
        // The built-in is still what `create` builds (Still has no state, NewReno does).
        assert!(!r.create("newreno").unwrap().state().is_empty());
        r.register(still("fixed")).unwrap();
        assert_eq!(r.register(still("fixed")), Err(CcError::Duplicate("fixed")));
    }

    #[test]
    fn unknown_name_lists_what_is_available() {
        let r = Registry::with_builtins();
        r.register(still("vegas2")).unwrap();
        let err = r.create("vegas").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown congestion control 'vegas' (available: bbr, cubic, cubic-hs, newreno, newreno-hs, vegas2)"
        );
        assert_eq!(
            err,
            CcError::Unknown {
                name: "vegas".into(),
                available: vec![
                    "bbr",
                    "cubic",
                    "cubic-hs",
                    "newreno",
                    "newreno-hs",
                    "vegas2"
                ]
            }
        );
        assert_eq!(r.set_default("vegas"), Err(err));
        assert_eq!(
            r.default_name(),
            "newreno",
            "a failed set_default changes nothing"
        );
    }

    #[test]
    fn set_default_switches_what_new_connections_get() {
        let r = Registry::with_builtins();
        r.register(still("fixed")).unwrap();
        r.set_default("fixed").unwrap();
        assert_eq!(r.default_name(), "fixed");
        assert_eq!(r.create_default().name(), "fixed");
        r.set_default("newreno").unwrap();
        assert_eq!(r.create_default().name(), "newreno");
    }

    #[test]
    fn malformed_names_are_refused() {
        let r = Registry::with_builtins();
        for bad in ["", "Cubic", "new reno", "a/b", "sixteen-chars-xx", "é"] {
            assert_eq!(
                r.register(still(bad)),
                Err(CcError::InvalidName(bad.into())),
                "{bad:?}"
            );
        }
        r.register(still("fifteen-chars_x")).unwrap();
        assert!(r.available().contains(&"fifteen-chars_x"));
        assert_eq!(
            CcError::InvalidName("".into()).to_string(),
            "invalid congestion control name '': use 1 to 15 characters from a-z, 0-9, '-' and '_'"
        );
    }

    #[test]
    fn errors_map_to_the_errno_setsockopt_uses() {
        let r = Registry::with_builtins();
        let e: io::Error = r.create("vegas").unwrap_err().into();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(
            e.to_string()
                .contains("available: bbr, cubic, cubic-hs, newreno, newreno-hs"),
            "{e}"
        );
        let e: io::Error = r.register(still("newreno")).unwrap_err().into();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let e: io::Error = r.register(still("")).unwrap_err().into();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn concurrent_registration_and_creation() {
        let r = Arc::new(Registry::with_builtins());
        const NAMES: [&str; 8] = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"];
        let threads: Vec<_> = NAMES
            .iter()
            .map(|&name| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    r.register(still(name)).unwrap();
                    for _ in 0..100 {
                        assert_eq!(r.create(name).unwrap().name(), name);
                        assert_eq!(r.create("newreno").unwrap().name(), "newreno");
                        r.set_default(name).unwrap();
                        let _ = r.create_default();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut want: Vec<&str> = NAMES.to_vec();
        want.extend(["bbr", "cubic", "cubic-hs", "newreno", "newreno-hs"]);
        want.sort();
        assert_eq!(r.available(), want);
        assert!(NAMES.contains(&r.default_name()));
    }

    #[test]
    fn debug_lists_names_and_default() {
        let r = Registry::with_builtins();
        assert_eq!(
            format!("{r:?}"),
            r#"Registry { available: ["bbr", "cubic", "cubic-hs", "newreno", "newreno-hs"], default: "newreno" }"#
        );
    }
}
