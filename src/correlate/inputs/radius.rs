//! FreeRADIUS `detail` accounting files: Calling-Station-Id MAC → the
//! identity that authenticated, with session start/stop times.

use super::{LoadError, Loaded};
use crate::time::Timestamp;
use std::net::IpAddr;
use std::path::Path;

/// One accounting session, from its Start (and Stop, when seen).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RadiusSession {
    /// Calling-Station-Id: the station's MAC.
    pub mac: [u8; 6],
    /// User-Name as authenticated (with EAP-TLS often the device certificate's name).
    pub identity: String,
    pub start: Option<Timestamp>,
    pub stop: Option<Timestamp>,
    pub framed_ip: Option<IpAddr>,
    pub session_id: Option<String>,
}

pub fn load(_path: &Path) -> Result<Loaded<RadiusSession>, LoadError> {
    todo!("helper writes this")
}
