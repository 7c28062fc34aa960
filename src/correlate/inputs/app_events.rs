//! App lifecycle events: JSON Lines of foreground / background / suspended
//! transitions per device and bundle ID.

use super::{LoadError, Loaded};
use crate::time::Timestamp;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AppLifecycle {
    Foreground,
    Background,
    Suspended,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppEvent {
    pub ts: Timestamp,
    /// How the event names the device: serial, UDID or Wi-Fi MAC, as given.
    pub device: String,
    pub bundle_id: String,
    pub state: AppLifecycle,
}

pub fn load(_path: &Path) -> Result<Loaded<AppEvent>, LoadError> {
    todo!("helper writes this")
}
