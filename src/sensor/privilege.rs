//! Least privilege: once the capture sockets are open, the process needs no
//! privilege at all. It becomes the configured user (when started as root)
//! and, on Linux, clears every capability set and sets `no_new_privs`.
//!
//! Capabilities are per thread in Linux: this runs on the main thread before
//! any other thread is started, so every thread inherits the empty sets.

use nix::unistd::{Gid, Uid, User, setgid, setgroups, setuid};

/// What the process runs as after [`drop_to`].
#[derive(Debug)]
pub struct Dropped {
    pub uid: u32,
    pub gid: u32,
}

/// Becomes `user` (if given; only root can) and drops every capability.
pub fn drop_to(user: Option<&str>) -> Result<Dropped, String> {
    if let Some(name) = user {
        // Validation refused these already; checked again where it matters.
        crate::config::check_user(name).map_err(|e| format!("capture.user {name:?} {e}"))?;
        let u = User::from_name(name)
            .map_err(|e| format!("capture.user {name:?}: cannot look it up: {e}"))?
            .ok_or_else(|| {
                format!("capture.user {name:?}: no such user (create it, or leave the key out)")
            })?;
        if !Uid::effective().is_root() {
            if Uid::effective() != u.uid {
                return Err(format!(
                    "capture.user {name:?}: only root can change user; this process runs as uid {} (under systemd, set User= instead)",
                    Uid::effective()
                ));
            }
        } else {
            setgroups(&[u.gid]).map_err(|e| format!("setgroups: {e}"))?;
            setgid(u.gid).map_err(|e| format!("setgid({}): {e}", u.gid))?;
            setuid(u.uid).map_err(|e| format!("setuid({}): {e}", u.uid))?;
            if setuid(Uid::from_raw(0)).is_ok() {
                return Err("privilege drop failed: the process could become root again".into());
            }
        }
    }
    #[cfg(target_os = "linux")]
    {
        for set in [
            caps::CapSet::Ambient,
            caps::CapSet::Effective,
            caps::CapSet::Inheritable,
            caps::CapSet::Permitted,
        ] {
            caps::clear(None, set).map_err(|e| format!("clearing capabilities ({set:?}): {e}"))?;
        }
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| format!("prctl(PR_SET_NO_NEW_PRIVS): {e}"))?;
    }
    Ok(Dropped {
        uid: Uid::effective().as_raw(),
        gid: Gid::effective().as_raw(),
    })
}
