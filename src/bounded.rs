//! Reading a whole file into memory, with a size bound.
//!
//! Every file the program reads whole (the config, inspection CA files,
//! baselines, device and app inputs) goes through [`read_file`]: only a
//! regular file is read (a device such as `/dev/zero` or a FIFO is refused
//! before a byte is read, and a FIFO is opened without waiting for a writer),
//! and at most `limit + 1` bytes are read, so a file that grows while it is
//! read is refused too. Capture and record files are streamed instead.

use std::io::Read;
use std::path::Path;

/// What a file is, for [`read_file`]'s messages.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// Largest size read, bytes.
    pub limit: u64,
    /// What the file should be ("an inspection CA file").
    pub what: &'static str,
    /// What to do about a file over the limit.
    pub fix: &'static str,
}

/// `1 MiB`, `512 MiB`, or bytes when not a whole number of KiB.
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b.is_multiple_of(1 << 30) => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b.is_multiple_of(1 << 20) => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b.is_multiple_of(1 << 10) => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

fn kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

fn too_large(path: &Path, b: &Bound) -> String {
    format!(
        "{}: larger than the {} limit for {}: {}",
        path.display(),
        human(b.limit),
        b.what,
        b.fix
    )
}

/// Reads the whole of `path`, a regular file of at most `b.limit` bytes.
/// Errors are one line starting with the path.
pub fn read_file(path: &Path, b: &Bound) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| format!("{}: cannot read: {e}", path.display());
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    // Opening a FIFO for reading waits for a writer; O_NONBLOCK does not
    // (and changes nothing for a regular file).
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut open, nix::libc::O_NONBLOCK);
    let f = open.open(path).map_err(cannot)?;
    let meta = f.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(format!(
            "{}: {}, not a regular file: give {}",
            path.display(),
            kind(meta.file_type()),
            b.what
        ));
    }
    if meta.len() > b.limit {
        return Err(too_large(path, b));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(b.limit + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > b.limit {
        return Err(too_large(path, b));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bound = Bound {
        limit: 1024,
        what: "a test file",
        fix: "make it smaller",
    };

    #[test]
    fn regular_files_up_to_the_limit_are_read_and_larger_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![b'x'; 1024]).unwrap();
        assert_eq!(read_file(&p, &B).unwrap().len(), 1024);
        std::fs::write(&p, vec![b'x'; 1025]).unwrap();
        assert_eq!(
            read_file(&p, &B).unwrap_err(),
            format!(
                "{}: larger than the 1 KiB limit for a test file: make it smaller",
                p.display()
            )
        );
        let e = read_file(dir.path(), &B).unwrap_err();
        assert!(
            e.ends_with(": a folder, not a regular file: give a test file"),
            "{e}"
        );
        let e = read_file(&dir.path().join("none"), &B).unwrap_err();
        assert!(e.contains(": cannot read: "), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_fifos_are_refused_without_reading() {
        assert_eq!(
            read_file(Path::new("/dev/zero"), &B).unwrap_err(),
            "/dev/zero: a character device, not a regular file: give a test file"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // No writer: a blocking open would wait here for ever.
        assert_eq!(
            read_file(&p, &B).unwrap_err(),
            format!(
                "{}: a FIFO, not a regular file: give a test file",
                p.display()
            )
        );
    }

    #[test]
    fn sizes_read_as_units() {
        assert_eq!(human(1 << 20), "1 MiB");
        assert_eq!(human(512 << 20), "512 MiB");
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(4096), "4 KiB");
        assert_eq!(human(1000), "1000 bytes");
    }
}
