//! The sensor that saw the traffic: an `observer` object on every record
//! (name, host name, interfaces, blindspot version), so that a SIEM fed by
//! several sensors can tell them apart.

use super::builder::Obj;

/// blindspot's version, as `--version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug, PartialEq)]
pub struct Observer {
    /// `sensor.name` from the config, else the host name.
    pub name: String,
    pub hostname: String,
    /// The capture interfaces (`-i`); empty in replay.
    pub interfaces: Vec<String>,
}

impl Observer {
    pub fn new(name: Option<&str>, interfaces: &[String]) -> Observer {
        let hostname = hostname();
        Observer {
            name: name.map_or_else(|| hostname.clone(), str::to_string),
            hostname,
            interfaces: interfaces.to_vec(),
        }
    }

    /// `"observer":{...}` as blindspot's JSON Lines writes it.
    pub fn jsonl_member(&self) -> Vec<u8> {
        let mut out = b"\"observer\":".to_vec();
        let mut o = Obj::new(&mut out);
        self.members(&mut o);
        drop(o);
        out
    }

    /// name, hostname, interfaces, product, version.
    pub fn members(&self, o: &mut Obj<'_>) {
        o.str("name", &self.name)
            .str("hostname", &self.hostname)
            .strs("interfaces", &self.interfaces)
            .str("product", "blindspot")
            .str("version", VERSION);
    }
}

#[cfg(unix)]
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(not(unix))]
fn hostname() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "localhost".into())
}
