//! Sinks: where JSON Lines go.
//!
//! One sink owns the output. It receives records in batches and encodes
//! them itself ([`Encoder`]: the encoding stage runs where the sink runs),
//! so lines never interleave, and flushes at least every `flush_interval` of wall
//! time (output durability is about the wall clock, not packet time). A path
//! ending in `.zst` is written as independent zstd frames, one per flush, so
//! `zstdcat` reads a file that is still being written and a crash loses at
//! most the last interval.

pub mod json;
pub mod progress;
pub mod rotate;
pub mod zstd_framed;

use crate::record::Record;
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
    encoding: Encoding,
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
            encoding: Encoding::json_lines(),
            interval,
            last_flush: Instant::now(),
            bytes_written: 0,
            name: spec.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Encodes a batch of records and writes it.
    pub fn write_records(&mut self, batch: &[Record]) -> io::Result<()> {
        let block = self.encoding.encode(batch);
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

/// The encoding stage: a record in, the bytes of one output form out. It
/// runs where the sink runs (the sink's thread in replay and capture), never
/// on the correlator. JSON Lines is the form today; another form is one more
/// implementation (OCSF, ECS and EVE are issue 21).
pub trait Encoder: Send {
    fn encode(&mut self, r: &Record, out: &mut Vec<u8>);
}

/// blindspot's own form: one JSON object a line (README "Records").
pub struct JsonLines;

impl Encoder for JsonLines {
    fn encode(&mut self, r: &Record, out: &mut Vec<u8>) {
        r.write_json(out);
    }
}

/// An encoder and the buffer it reuses: a batch of records to the bytes a
/// sink writes.
pub struct Encoding {
    encoder: Box<dyn Encoder>,
    buf: Vec<u8>,
}

impl Encoding {
    pub fn json_lines() -> Self {
        Encoding {
            encoder: Box::new(JsonLines),
            buf: Vec::with_capacity(512 << 10),
        }
    }

    pub fn encode(&mut self, batch: &[Record]) -> &[u8] {
        self.buf.clear();
        for r in batch {
            self.encoder.encode(r, &mut self.buf);
        }
        &self.buf
    }
}

fn is_zst(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "zst")
}
