//! xstack's sockets as the HTTP server's and client's transport (`crate::http`).

use std::io;
use std::time::Duration;

use xstack::{TcpListener, TcpStream};

impl super::Listener for TcpListener {
    type Stream = TcpStream;

    /// Waits up to 200 ms, then reports `WouldBlock` so the server can check its stop
    /// flag.
    fn accept(&self) -> io::Result<TcpStream> {
        match self.accept_timeout(Some(Duration::from_millis(200))) {
            Ok((s, _)) => {
                // Responses go out in large writes; Nagle would only delay the tail.
                s.set_nodelay(true)?;
                Ok(s)
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => Err(e),
        }
    }
}

/// One value of [`xstack_cc::CongestionControl::state`] (display text) as JSON: a finite
/// number becomes a JSON number, the modules' "-" (undefined, e.g. CUBIC's K outside an
/// epoch) becomes `null`, anything else stays a string.
fn cc_state_value(text: &str) -> serde_json::Value {
    if text == "-" {
        return serde_json::Value::Null;
    }
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => serde_json::Number::from_f64(x).map_or(text.into(), Into::into),
        _ => text.into(),
    }
}

/// Replaces the `cc_state` pairs of a serialized [`xstack::TcpInfo`] by the module's own
/// state as an object, typed for JSON readers: `{"w_max": 312.5, "k_ms": null, "region":
/// "concave", ...}`.
fn typed_cc_state(mut v: serde_json::Value) -> serde_json::Value {
    let Some(o) = v.as_object_mut() else {
        return v;
    };
    if let Some(pairs) = o.get("cc_state").and_then(|s| s.as_array()).cloned() {
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .filter_map(|p| {
                Some((
                    p.get(0)?.as_str()?.to_string(),
                    cc_state_value(p.get(1)?.as_str()?),
                ))
            })
            .collect();
        o.insert("cc_state".into(), map.into());
    }
    v
}

/// The helper modules' reports on a connection (`xstack http --helper stats`), by helper
/// name; a report that is not JSON (a helper's bug) is kept as a string.
fn helpers_json(reports: Vec<(String, String)>) -> serde_json::Map<String, serde_json::Value> {
    reports
        .into_iter()
        .map(|(name, json)| {
            let v = serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json));
            (name, v)
        })
        .collect()
}

impl super::Conn for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

impl super::ConnControl for TcpStream {
    fn info_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self.info()).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            if let Ok(local) = self.local_addr() {
                o.insert("local".into(), local.to_string().into());
            }
            if let Ok(peer) = self.peer_addr() {
                o.insert("peer".into(), peer.to_string().into());
            }
            let helpers = helpers_json(self.helper_info());
            if !helpers.is_empty() {
                o.insert("helpers".into(), helpers.into());
            }
        }
        typed_cc_state(v)
    }

    fn set_congestion(&self, name: &str) -> io::Result<()> {
        TcpStream::set_congestion(self, name)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::{cc_state_value, typed_cc_state};
    use serde_json::json;

    #[test]
    fn helper_reports_are_json_by_name() {
        let m = super::helpers_json(vec![
            ("stats".into(), "{\"samples\":3}".into()),
            ("odd".into(), "not json".into()),
        ]);
        assert_eq!(
            serde_json::Value::from(m),
            json!({"stats": {"samples": 3}, "odd": "not json"})
        );
    }

    #[test]
    fn cc_state_values_are_typed() {
        assert_eq!(cc_state_value("312.50"), json!(312.5));
        assert_eq!(cc_state_value("7"), json!(7.0));
        assert_eq!(cc_state_value("-"), json!(null));
        assert_eq!(cc_state_value("concave"), json!("concave"));
        assert_eq!(
            cc_state_value("cwnd=10 ssthresh=5"),
            json!("cwnd=10 ssthresh=5")
        );
        assert_eq!(cc_state_value("NaN"), json!("NaN"));
        assert_eq!(cc_state_value("inf"), json!("inf"));
    }

    /// `GET /info`'s view of a connection: the module's state pairs become an object of
    /// JSON numbers (null while undefined) and strings; the other fields stay as they are.
    #[test]
    fn cc_state_pairs_become_an_object() {
        let v = typed_cc_state(json!({
            "cc": "cubic",
            "cwnd": 14480,
            "cc_state": [["w_max", "312.50"], ["k_ms", "-"], ["region", "concave"]],
        }));
        assert_eq!(
            v,
            json!({
                "cc": "cubic",
                "cwnd": 14480,
                "cc_state": {"w_max": 312.5, "k_ms": null, "region": "concave"},
            })
        );
        assert_eq!(typed_cc_state(json!([1, 2])), json!([1, 2]));
    }
}
