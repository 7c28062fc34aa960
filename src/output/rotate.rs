//! The sensor's output: JSON Lines for months.
//!
//! Three targets:
//!
//! - a folder: files `PREFIX-YYYYMMDDTHHMMSSZ-NNNNNN.jsonl.zst` (or `.jsonl`),
//!   rotated by size and by age. The file being written carries an extra
//!   `.open` suffix and is renamed when it is closed, so a log shipper that
//!   picks up `*.jsonl.zst` sees each file once, whole. A file left `.open`
//!   by a crash is renamed at the next start (its frames are all readable).
//! - a file: written in append mode and reopened on `SIGHUP` (for logrotate).
//! - standard output.
//!
//! Records arrive in blocks of whole lines and are written as one zstd frame
//! (or one plain write) per flush, at least once a second, so a crash loses
//! at most the last second. A write that fails (disk full) is cut back to the
//! last whole frame and retried; the lines stay in memory up to a cap, and
//! while they do the sink takes no more blocks, so the queues before it fill
//! and their drops are counted in `stats`.
//!
//! A folder's file is only published with something in it: a `SIGHUP` while
//! the current file is still empty keeps it, and an empty file is removed
//! rather than renamed when closed (or found after a crash), so every
//! `.jsonl.zst` in the folder is a valid zstd stream.

use crate::time::Timestamp;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the sink did, read by the correlator for the `stats` record.
#[derive(Debug, Default)]
pub struct OutputCounters {
    /// Bytes written to the output, as they are on disk (compressed for
    /// zstd), counted once each write has succeeded.
    pub bytes: AtomicU64,
    /// Folder files closed and published under their final name.
    pub files_closed: AtomicU64,
    pub reopens: AtomicU64,
    /// Writes that failed (an output that could not be opened for one included).
    pub write_errors: AtomicU64,
    /// Bytes of records held because a write failed (uncompressed); 0 once
    /// a write succeeds again. Records waiting for the next flush in
    /// normal operation are not counted.
    pub pending_bytes: AtomicU64,
    /// The longest a block waited between the correlator and the sink
    /// since the correlator last read this.
    pub sink_lag_ms: AtomicU64,
}

impl OutputCounters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File {
        path: PathBuf,
        zst: bool,
    },
    Dir {
        dir: PathBuf,
        prefix: String,
        zst: bool,
    },
}

impl Target {
    /// `-` is standard output; an existing folder, or a path ending in `/`,
    /// is a rotated folder (zstd unless `plain`); anything else is one file
    /// (zstd when it ends in `.zst`).
    pub fn parse(spec: &str, prefix: &str, plain: bool) -> Target {
        if spec == "-" {
            return Target::Stdout;
        }
        let path = PathBuf::from(spec);
        if spec.ends_with('/') || path.is_dir() {
            Target::Dir {
                dir: path,
                prefix: prefix.to_string(),
                zst: !plain,
            }
        } else {
            let zst = path.extension().is_some_and(|e| e == "zst");
            Target::File { path, zst }
        }
    }
}

/// When a folder's file is closed and the next begun.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub max_age: Duration,
}

struct Open {
    file: File,
    /// The name it is written under (`.open` for a folder's file).
    path: PathBuf,
    /// The name it gets when closed (folder only).
    final_path: Option<PathBuf>,
    /// Bytes of whole frames in the file: a failed write is cut back to here.
    len: u64,
    opened: Instant,
}

pub struct LiveSink {
    target: Target,
    rotation: Rotation,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    open: Option<Open>,
    /// Lines not yet written.
    pending: Vec<u8>,
    /// The last write failed: `pending` is held for a retry.
    held: bool,
    frame: Vec<u8>,
    seq: u64,
    pub counters: Arc<OutputCounters>,
}

/// Lines held before a flush is forced by size.
const FLUSH_BYTES: usize = 4 << 20;

impl LiveSink {
    pub fn new(target: Target, rotation: Rotation, zstd_level: i32) -> io::Result<LiveSink> {
        let zst = matches!(
            target,
            Target::File { zst: true, .. } | Target::Dir { zst: true, .. }
        );
        if let Target::Dir { dir, .. } = &target {
            std::fs::create_dir_all(dir).map_err(|e| named(dir, e))?;
            recover(dir)?;
        }
        let mut sink = LiveSink {
            target,
            rotation,
            zstd: if zst {
                Some(zstd::bulk::Compressor::new(zstd_level)?)
            } else {
                None
            },
            open: None,
            pending: Vec::with_capacity(1 << 20),
            held: false,
            frame: Vec::new(),
            seq: 0,
            counters: Arc::default(),
        };
        // Fail now, at start, if the output cannot be created at all.
        sink.ensure_open()?;
        Ok(sink)
    }

    /// The file being written (for messages).
    pub fn current(&self) -> String {
        match (&self.target, &self.open) {
            (Target::Stdout, _) => "standard output".into(),
            (_, Some(o)) => o.path.display().to_string(),
            (Target::File { path, .. }, None) => path.display().to_string(),
            (Target::Dir { dir, .. }, None) => dir.display().to_string(),
        }
    }

    /// Standard output is a pipe or socket whose reader has gone
    /// (`capture -o - | head -1` after `head` exits). Asked without a write,
    /// as `tail -f` does, so that a sensor with nothing to write stops too.
    pub fn reader_gone(&self) -> bool {
        matches!(self.target, Target::Stdout) && stdout_reader_gone()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Adds lines; they are written by the next [`flush`](Self::flush).
    pub fn write(&mut self, block: &[u8]) {
        self.pending.extend_from_slice(block);
        if self.held {
            self.counters
                .pending_bytes
                .store(self.pending.len() as u64, Ordering::Relaxed);
        }
    }

    /// Enough is pending to write a frame now, whatever the timer says.
    pub fn should_flush(&self) -> bool {
        self.pending.len() >= FLUSH_BYTES
    }

    fn ensure_open(&mut self) -> io::Result<()> {
        if self.open.is_some() {
            return Ok(());
        }
        let (path, final_path) = match &self.target {
            Target::Stdout => return Ok(()),
            Target::File { path, .. } => (path.clone(), None),
            Target::Dir { dir, prefix, zst } => {
                self.seq += 1;
                let name = format!(
                    "{prefix}-{}-{:06}.jsonl{}",
                    Timestamp::now().compact(),
                    self.seq,
                    if *zst { ".zst" } else { "" }
                );
                let fin = dir.join(&name);
                (dir.join(format!("{name}.open")), Some(fin))
            }
        };
        // Append mode: after a failed write is cut back, the next one lands
        // at the new end, not past it.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| named(&path, e))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.open = Some(Open {
            file,
            path,
            final_path,
            len,
            opened: Instant::now(),
        });
        Ok(())
    }

    /// Writes what is pending as one frame. On failure the file is cut back
    /// to its last whole frame and the lines stay pending for a retry. The
    /// counters change here only: bytes after a write that succeeded, an
    /// error for one that failed, and what is held meanwhile.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.write_pending() {
            Ok(n) => {
                OutputCounters::add(&self.counters.bytes, n);
                self.pending.clear();
                self.held = false;
                self.counters.pending_bytes.store(0, Ordering::Relaxed);
            }
            Err(e) => {
                OutputCounters::add(&self.counters.write_errors, 1);
                self.held = true;
                self.counters
                    .pending_bytes
                    .store(self.pending.len() as u64, Ordering::Relaxed);
                return Err(e);
            }
        }
        self.rotate_if_due()
    }

    /// Writes `pending` as one frame (or one plain write), whole or not at
    /// all; returns the bytes written.
    fn write_pending(&mut self) -> io::Result<u64> {
        if !matches!(self.target, Target::Stdout) {
            self.ensure_open()?;
        }
        let bytes = match &mut self.zstd {
            Some(z) => {
                self.frame.clear();
                self.frame
                    .reserve(zstd::zstd_safe::compress_bound(self.pending.len()));
                z.compress_to_buffer(&self.pending, &mut self.frame)?;
                &self.frame
            }
            None => &self.pending,
        };
        let n = bytes.len() as u64;
        match self.open.as_mut() {
            None => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()?;
            }
            Some(open) => {
                let result = open.file.write_all(bytes).and_then(|()| open.file.flush());
                if let Err(e) = result {
                    // Cut the partial frame off, so the file stays readable.
                    let _ = open.file.set_len(open.len);
                    return Err(named(&open.path, e));
                }
                open.len += n;
            }
        }
        Ok(n)
    }

    /// Closes the folder's file when it is big or old enough.
    pub fn rotate_if_due(&mut self) -> io::Result<()> {
        let due = match (&self.target, &self.open) {
            (Target::Dir { .. }, Some(o)) => {
                o.len >= self.rotation.max_bytes
                    || (o.len > 0 && o.opened.elapsed() >= self.rotation.max_age)
            }
            _ => false,
        };
        if due { self.close() } else { Ok(()) }
    }

    /// Closes the current file: a folder's file is renamed to its final
    /// name, or removed if nothing was written to it.
    fn close(&mut self) -> io::Result<()> {
        if let Some(o) = self.open.take() {
            let _ = o.file.sync_data();
            if let Some(fin) = &o.final_path {
                if o.len == 0 {
                    std::fs::remove_file(&o.path).map_err(|e| named(&o.path, e))?;
                    return Ok(());
                }
                std::fs::rename(&o.path, fin).map_err(|e| named(&o.path, e))?;
            }
            OutputCounters::add(&self.counters.files_closed, 1);
        }
        Ok(())
    }

    /// `SIGHUP`: writes what is pending, closes and opens the output again
    /// (a folder starts its next file, unless the current one is still
    /// empty; a file is reopened by name).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.flush()?;
        let empty_folder_file = matches!(self.target, Target::Dir { .. })
            && self.open.as_ref().is_some_and(|o| o.len == 0);
        if !empty_folder_file {
            self.close()?;
            self.ensure_open()?;
        }
        OutputCounters::add(&self.counters.reopens, 1);
        Ok(())
    }

    /// Writes everything and closes.
    pub fn finish(&mut self) -> io::Result<()> {
        self.flush()?;
        self.close()
    }
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Renames `*.open` files a crash left in `dir` to their final names, and
/// removes those with nothing in them.
fn recover(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| named(dir, e))? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "open") {
            let fin = path.with_extension("");
            if entry.metadata()?.len() == 0 {
                std::fs::remove_file(&path).map_err(|e| named(&path, e))?;
            } else if !fin.exists() {
                std::fs::rename(&path, &fin).map_err(|e| named(&path, e))?;
            }
        }
    }
    Ok(())
}

/// POLLERR on the write end of a pipe (Linux), POLLHUP on a Unix socket
/// shut both ways or a terminal hung up: the reader is gone. A file never
/// reports either; a TCP peer that closed shows only on the next write.
#[cfg(unix)]
fn stdout_reader_gone() -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let out = std::io::stdout();
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&out),
        PollFlags::empty(),
    )];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

#[cfg(not(unix))]
fn stdout_reader_gone() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn folder_rotates_by_size_and_files_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let rot = Rotation {
            max_bytes: 100,
            max_age: Duration::from_secs(3600),
        };
        let mut s = LiveSink::new(
            Target::parse(dir.path().to_str().unwrap(), "rec", false),
            rot,
            3,
        )
        .unwrap();
        // Padding that does not compress (xorshift), so each frame passes 100 bytes.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..5 {
            let pad: String = (0..200)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'a' + (x % 26) as u8)
                })
                .collect();
            s.write(format!("{{\"n\":{i},\"pad\":\"{pad}\"}}\n").as_bytes());
            s.flush().unwrap();
        }
        s.write(b"{\"n\":5}\n");
        s.flush().unwrap();
        // The open file is not yet a `.jsonl.zst`.
        let open: Vec<String> = names(dir.path())
            .into_iter()
            .filter(|n| n.ends_with(".open"))
            .collect();
        // Each padded write passed 100 bytes and closed its file; the last,
        // small one is still being written, under its `.open` name.
        assert_eq!(open.len(), 1, "{open:?}");
        s.finish().unwrap();
        let files = names(dir.path());
        assert_eq!(files.len(), 6, "{files:?}");
        let mut all = Vec::new();
        for (i, f) in files.iter().enumerate() {
            assert!(
                f.starts_with("rec-") && f.ends_with(&format!("-{:06}.jsonl.zst", i + 1)),
                "{f}"
            );
            all.extend(zstd::decode_all(File::open(dir.path().join(f)).unwrap()).unwrap());
        }
        let text = String::from_utf8(all).unwrap();
        let ns: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ns, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn folder_rotates_by_age_but_not_while_empty() {
        let dir = tempfile::tempdir().unwrap();
        let rot = Rotation {
            max_bytes: 1 << 30,
            max_age: Duration::from_millis(30),
        };
        let mut s = LiveSink::new(
            Target::parse(dir.path().to_str().unwrap(), "rec", true),
            rot,
            3,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(40));
        // Old but empty: kept (no empty files while the link is quiet).
        s.rotate_if_due().unwrap();
        assert_eq!(names(dir.path()).len(), 1);
        s.write(b"{\"a\":1}\n");
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(40));
        s.rotate_if_due().unwrap();
        let files = names(dir.path());
        assert_eq!(files.len(), 1);
        assert!(files[0].ends_with("-000001.jsonl"), "{files:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(&files[0])).unwrap(),
            "{\"a\":1}\n"
        );
    }

    #[test]
    fn a_crashed_open_file_is_recovered_at_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path()
                .join("rec-20260101T000000Z-000001.jsonl.zst.open"),
            b"x",
        )
        .unwrap();
        // One with nothing in it (a crash before the first flush) is not
        // published: an empty `.jsonl.zst` is not a valid zstd stream.
        std::fs::write(
            dir.path()
                .join("rec-20260101T000001Z-000001.jsonl.zst.open"),
            b"",
        )
        .unwrap();
        let s = LiveSink::new(
            Target::parse(dir.path().to_str().unwrap(), "rec", false),
            Rotation {
                max_bytes: 1 << 20,
                max_age: Duration::from_secs(60),
            },
            3,
        )
        .unwrap();
        drop(s);
        let files = names(dir.path());
        assert!(
            files.contains(&"rec-20260101T000000Z-000001.jsonl.zst".to_string()),
            "{files:?}"
        );
        assert!(
            !files.iter().any(|f| f.starts_with("rec-20260101T000001Z")),
            "{files:?}"
        );
    }

    #[test]
    fn a_sighup_with_nothing_written_leaves_no_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let rot = Rotation {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        };
        let mut s = LiveSink::new(
            Target::parse(dir.path().to_str().unwrap(), "rec", false),
            rot,
            3,
        )
        .unwrap();
        // Nothing written yet: the file begun at start is kept.
        s.reopen().unwrap();
        s.reopen().unwrap();
        assert_eq!(names(dir.path()).len(), 1, "{:?}", names(dir.path()));
        s.write(b"{\"a\":1}\n");
        s.reopen().unwrap();
        // The first file is published, the second begun; a SIGHUP now keeps it.
        s.reopen().unwrap();
        let files = names(dir.path());
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files[0].ends_with("-000001.jsonl.zst"), "{files:?}");
        assert!(files[1].ends_with("-000002.jsonl.zst.open"), "{files:?}");
        // Closed with nothing in it, the second file is removed.
        s.finish().unwrap();
        let files = names(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        let path = dir.path().join(&files[0]);
        assert_eq!(
            zstd::decode_all(File::open(&path).unwrap()).unwrap(),
            b"{\"a\":1}\n"
        );
        let c = &s.counters;
        assert_eq!(OutputCounters::get(&c.reopens), 4);
        assert_eq!(OutputCounters::get(&c.files_closed), 1);
        // Bytes on disk, compressed.
        assert_eq!(
            OutputCounters::get(&c.bytes),
            std::fs::metadata(&path).unwrap().len()
        );
    }

    #[test]
    fn failed_writes_are_counted_and_what_they_hold() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            eprintln!("SKIPPED: no /dev/full");
            return;
        }
        let mut s = LiveSink::new(
            Target::File {
                path: full.into(),
                zst: true,
            },
            Rotation {
                max_bytes: 1 << 20,
                max_age: Duration::from_secs(3600),
            },
            3,
        )
        .unwrap();
        let c = Arc::clone(&s.counters);
        let line = b"{\"a\":1}\n";
        s.write(line);
        // Waiting for the next flush is not being held by a failure.
        assert_eq!(OutputCounters::get(&c.pending_bytes), 0);
        for failures in 1..=3u64 {
            assert!(s.flush().is_err());
            assert_eq!(OutputCounters::get(&c.write_errors), failures);
            assert_eq!(OutputCounters::get(&c.bytes), 0);
            assert_eq!(
                OutputCounters::get(&c.pending_bytes),
                failures * line.len() as u64
            );
            // Lines that arrive while writes fail are held too.
            s.write(line);
            assert_eq!(
                OutputCounters::get(&c.pending_bytes),
                (failures + 1) * line.len() as u64
            );
        }
    }

    #[test]
    fn file_target_appends_and_reopens_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut s = LiveSink::new(
            Target::parse(path.to_str().unwrap(), "x", false),
            Rotation {
                max_bytes: 1,
                max_age: Duration::from_secs(1),
            },
            3,
        )
        .unwrap();
        s.write(b"{\"a\":1}\n");
        s.flush().unwrap();
        // logrotate moves the file away, then sends SIGHUP.
        std::fs::rename(&path, dir.path().join("out.jsonl.1")).unwrap();
        s.reopen().unwrap();
        s.write(b"{\"a\":2}\n");
        s.finish().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.jsonl.1")).unwrap(),
            "{\"a\":1}\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":2}\n");
    }
}
