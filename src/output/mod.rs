//! Sinks: where records go, and the forms they are written in.
//!
//! One sink owns the output. It receives records in batches and encodes
//! them itself ([`Encoder`]: the encoding stage runs where the sink runs),
//! so lines never interleave, and flushes at least every `flush_interval` of wall
//! time (output durability is about the wall clock, not packet time). A path
//! ending in `.zst` is written as independent zstd frames, one per flush, so
//! `zstdcat` reads a file that is still being written and a crash loses at
//! most the last interval; a path ending in `.gz` is gzip, sync-flushed at
//! the same times (so `zcat` reads it while it grows).
//!
//! Forms ([`Format`]): blindspot's JSON Lines (the default and the
//! richest), OCSF (`ocsf`), ECS (`ecs`) and Suricata EVE (`eve`), each an
//! [`Encoder`]; every record of every form carries the sensor
//! ([`observer::Observer`]).

pub mod builder;
pub mod ecs;
pub mod eve;
pub mod extras;
pub mod json;
pub mod names;
pub mod observer;
pub mod ocsf;
pub mod progress;
pub mod rotate;
pub mod summary;
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
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
}

pub struct Sink {
    target: Target,
    encoding: Encoding,
    interval: Duration,
    last_flush: Instant,
    pub bytes_written: u64,
    name: String,
    /// Replay on a terminal: what was written, for the end-of-run summary.
    summary: Option<summary::Tally>,
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
            } else if is_gz(&path) {
                Target::Gzip(flate2::write::GzEncoder::new(
                    BufWriter::with_capacity(256 << 10, file),
                    flate2::Compression::default(),
                ))
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
            summary: None,
        })
    }

    /// Writes records in `encoding`'s form (JSON Lines until this is called).
    pub fn with_encoding(mut self, encoding: Encoding) -> Sink {
        self.encoding = encoding;
        self
    }

    /// Prints the end-of-run summary on standard error at [`Sink::finish`]
    /// (replay, when standard error is a terminal).
    pub fn with_summary(mut self, on: bool) -> Sink {
        self.summary = on.then(summary::Tally::default);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Encodes a batch of records and writes it.
    pub fn write_records(&mut self, batch: &[Record]) -> io::Result<()> {
        if let Some(t) = &mut self.summary {
            t.add(batch);
        }
        let block = self.encoding.encode(batch);
        self.bytes_written += block.len() as u64;
        write_target(&mut self.target, block)?;
        self.flush_if_due()
    }

    /// Writes a batch of records an encoder of the pool encoded
    /// (`bytes`, in this sink's form).
    pub fn write_encoded(&mut self, batch: &[Record], bytes: &[u8]) -> io::Result<()> {
        if let Some(t) = &mut self.summary {
            t.add(batch);
        }
        self.bytes_written += bytes.len() as u64;
        write_target(&mut self.target, bytes)?;
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
            // A sync flush: what is written so far decompresses.
            Target::Gzip(g) => g.flush(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.flush()?;
        match self.target {
            Target::Zstd(z) => {
                z.finish()?;
            }
            Target::Gzip(g) => g.finish()?.flush()?,
            Target::Stdout(_) | Target::Plain(_) => {}
        }
        if let Some(t) = &self.summary {
            t.print(&self.name);
        }
        Ok(())
    }
}

/// The encoding stage: a record in, the bytes of one output form out. It
/// runs where the sink runs (the sink's thread in replay and capture), never
/// on the correlator. Each form is one implementation.
pub trait Encoder: Send {
    fn encode(&mut self, r: &Record, out: &mut Vec<u8>);
}

/// The output forms (`--format`, config `output.format`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// blindspot's own records (README "Records").
    #[default]
    Jsonl,
    /// OCSF 1.8.0 events.
    Ocsf,
    /// Elastic Common Schema documents.
    Ecs,
    /// Suricata EVE JSON.
    Eve,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Ocsf => "ocsf",
            Format::Ecs => "ecs",
            Format::Eve => "eve",
        }
    }
}

/// blindspot's own form: one JSON object a line (README "Records"), with
/// the `observer` object added at its end.
pub struct JsonLines {
    observer: Vec<u8>,
}

impl Encoder for JsonLines {
    fn encode(&mut self, r: &Record, out: &mut Vec<u8>) {
        r.write_json(out);
        // `...}\n` → `...,"observer":{...}}\n`: every record is an object.
        if out.ends_with(b"}\n") {
            out.truncate(out.len() - 2);
            out.push(b',');
            out.extend_from_slice(&self.observer);
            out.extend_from_slice(b"}\n");
        }
    }
}

/// A detection's severity from its score (0–100), the same in every form:
/// `high` from 70, `medium` from 40, else `low`.
pub fn severity(score: u8) -> &'static str {
    match score {
        70.. => "high",
        40.. => "medium",
        _ => "low",
    }
}

/// An encoder and the buffer it reuses: a batch of records to the bytes a
/// sink writes.
pub struct Encoding {
    encoder: Box<dyn Encoder>,
    buf: Vec<u8>,
}

impl Encoding {
    /// JSON Lines with the observer of a replay named by the host name.
    pub fn json_lines() -> Self {
        Self::new(Format::Jsonl, &observer::Observer::new(None, &[]))
    }

    pub fn new(format: Format, observer: &observer::Observer) -> Self {
        let encoder: Box<dyn Encoder> = match format {
            Format::Jsonl => Box::new(JsonLines {
                observer: observer.jsonl_member(),
            }),
            Format::Ocsf => Box::new(ocsf::Ocsf::new(observer)),
            Format::Ecs => Box::new(ecs::Ecs::new(observer)),
            Format::Eve => Box::new(eve::Eve::new(observer)),
        };
        Encoding {
            encoder,
            buf: Vec::with_capacity(512 << 10),
        }
    }

    /// The form `cfg` asks for, with the sensor `cfg` names watching `interfaces`.
    pub fn for_config(cfg: &crate::config::Config, interfaces: &[String]) -> Self {
        Self::new(
            cfg.format,
            &observer::Observer::new(cfg.sensor_name.as_deref(), interfaces),
        )
    }

    pub fn encode(&mut self, batch: &[Record]) -> &[u8] {
        self.buf.clear();
        for r in batch {
            self.encoder.encode(r, &mut self.buf);
        }
        &self.buf
    }
}

fn write_target(target: &mut Target, block: &[u8]) -> io::Result<()> {
    match target {
        Target::Stdout(w) => w.write_all(block),
        Target::Plain(w) => w.write_all(block),
        Target::Zstd(z) => z.write_all(block),
        Target::Gzip(g) => g.write_all(block),
    }
}

fn is_zst(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "zst")
}

fn is_gz(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "gz")
}
