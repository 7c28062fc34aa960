//! Sinks: where JSON Lines go.
//!
//! One sink owns the output. It receives whole lines in blocks, so lines
//! never interleave, and flushes at least every `flush_interval` of wall
//! time (output durability is about the wall clock, not packet time). A path
//! ending in `.zst` is written as independent zstd frames, one per flush, so
//! `zstdcat` reads a file that is still being written and a crash loses at
//! most the last interval.

pub mod json;
pub mod progress;
pub mod rotate;
pub mod zstd_framed;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

enum Target {
    Stdout(BufWriter<io::Stdout>),
    Plain(BufWriter<File>),
    Zstd(zstd_framed::FramedZstd<File>),
}

pub struct Sink {
    target: Target,
    interval: Duration,
    last_flush: Instant,
    pub bytes_written: u64,
    name: String,
}

impl Sink {
    /// `-` is standard output; a path ending `.zst` is zstd-compressed.
    pub fn open(spec: &str, flush_interval_ms: u64, zstd_level: i32) -> io::Result<Sink> {
        let interval = Duration::from_millis(flush_interval_ms);
        let target = if spec == "-" {
            Target::Stdout(BufWriter::with_capacity(256 << 10, io::stdout()))
        } else {
            let path = PathBuf::from(spec);
            let file = File::create(&path)?;
            if is_zst(&path) {
                Target::Zstd(zstd_framed::FramedZstd::new(file, zstd_level)?)
            } else {
                Target::Plain(BufWriter::with_capacity(256 << 10, file))
            }
        };
        Ok(Sink {
            target,
            interval,
            last_flush: Instant::now(),
            bytes_written: 0,
            name: spec.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn write(&mut self, block: &[u8]) -> io::Result<()> {
        self.bytes_written += block.len() as u64;
        match &mut self.target {
            Target::Stdout(w) => w.write_all(block)?,
            Target::Plain(w) => w.write_all(block)?,
            Target::Zstd(z) => z.write_all(block)?,
        }
        self.flush_if_due()
    }

    /// Flushes when the interval has passed since the last flush.
    pub fn flush_if_due(&mut self) -> io::Result<()> {
        if self.last_flush.elapsed() >= self.interval {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.last_flush = Instant::now();
        match &mut self.target {
            Target::Stdout(w) => w.flush(),
            Target::Plain(w) => w.flush(),
            Target::Zstd(z) => z.flush(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.flush()?;
        if let Target::Zstd(z) = self.target {
            z.finish()?;
        }
        Ok(())
    }
}

fn is_zst(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "zst")
}
