//! App catalog from static analysis: blindspot's own JSON shape and MobSF's
//! iOS report JSON.

use super::{LoadError, Loaded};
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PinnedDomain {
    pub domain: String,
    pub include_subdomains: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppProfile {
    pub bundle_id: String,
    pub name: Option<String>,
    pub version: Option<String>,
    /// UIBackgroundModes (`audio`, `voip`, `fetch`, `remote-notification`, ...).
    pub background_modes: Vec<String>,
    /// Entitlement keys the app is signed with.
    pub entitlements: Vec<String>,
    /// NSPinnedDomains: pinning by design.
    pub pinned_domains: Vec<PinnedDomain>,
    /// NSAppTransportSecurity exception domains (and `NSAllowsArbitraryLoads`).
    pub ats_exceptions: Vec<String>,
    /// Destination domains the app is known to use.
    pub domains: Vec<String>,
    /// `"blindspot"` or `"mobsf"`.
    pub source: &'static str,
}

pub fn load(_path: &Path) -> Result<Loaded<AppProfile>, LoadError> {
    todo!("helper writes this")
}
