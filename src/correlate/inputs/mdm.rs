//! MDM inventory: blindspot's own JSON shape, a Jamf Pro mobile-device
//! export and a Microsoft Intune `managedDevices` export.

use super::{LoadError, Loaded};
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ManagedApp {
    pub bundle_id: String,
    pub name: Option<String>,
    pub version: Option<String>,
    /// Associated domains set by MDM (ManagedApplicationAttributes).
    pub associated_domains: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MdmDevice {
    pub serial: Option<String>,
    pub udid: Option<String>,
    pub name: Option<String>,
    pub model: Option<String>,
    /// e.g. `iOS 17.5.1`.
    pub os: Option<String>,
    pub supervised: Option<bool>,
    pub managed: Option<bool>,
    /// `corporate`, `personal` or as the MDM says.
    pub ownership: Option<String>,
    pub wifi_mac: Option<[u8; 6]>,
    pub apps: Vec<ManagedApp>,
    /// `"blindspot"`, `"jamf"` or `"intune"`.
    pub source: &'static str,
}

pub fn load(_path: &Path) -> Result<Loaded<MdmDevice>, LoadError> {
    todo!("helper writes this")
}
