//! pcap and pcapng files, plain or compressed, read in constant memory.
//!
//! The file is read in blocks of [`CHUNK_SIZE`]; the formats are parsed with
//! `pcap-parser`'s frame and block parsers over those blocks. A record cut by
//! a block boundary is carried into the next block (a small copy). Frames
//! and blocks larger than [`MAX_RECORD_LEN`] are refused before anything is
//! allocated for them: a hostile length field cannot make us read 4 GiB.
//!
//! gzip and zstd compressed captures are recognised by their magic bytes and
//! decompressed on the fly. A file cut short (a capture still being written,
//! a copy interrupted) yields every whole frame and then
//! [`CaptureError::Truncated`] naming the offset; for a compressed file, the
//! decompressor's error ends the stream the same way, at an offset in the
//! decompressed stream.

use super::{Chunk, FrameRef};
use crate::time::Timestamp;
use pcap_parser::pcapng::Block;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

/// Bytes read per block. Large enough that the per-block costs (a channel
/// message per worker, a sort of the block's sessions) vanish against the
/// per-packet ones; small enough that the blocks in flight between the
/// reader and the workers stay in the caches and take few fresh pages.
/// Measured on the 1 GiB throughput file (two workers): 4 MiB blocks 0.50 s,
/// 1 MiB 0.38 s, 512 KiB 0.36 s, 256 KiB 0.41 s; one thread the same
/// within noise.
pub const CHUNK_SIZE: usize = 512 << 10;
/// Largest pcap record or pcapng block accepted (the largest snap length
/// tools use is 256 KiB; TSO/GRO captures stay below 64 KiB + headers).
pub const MAX_RECORD_LEN: usize = 1 << 20;
/// Most interfaces one pcapng section may declare.
pub const MAX_INTERFACES: usize = 1024;

#[derive(Debug)]
pub enum CaptureError {
    Io(io::Error),
    /// The file (or what it decompresses to) has no byte at all.
    Empty,
    /// Not a pcap or pcapng file (magic not recognised).
    NotACapture {
        magic: [u8; 4],
    },
    /// The file ends in the middle of a record, or of the file header
    /// (`offset` 0). For a compressed file, `offset` is in the decompressed
    /// stream and `compressed` says why that stream ended.
    Truncated {
        offset: u64,
        partial: usize,
        compressed: Option<StreamEnd>,
    },
    /// A record header that cannot be right; reading stops there.
    Corrupt {
        offset: u64,
        reason: String,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Io(e) => write!(f, "read error: {e}"),
            CaptureError::Empty => write!(f, "empty capture file"),
            CaptureError::NotACapture { magic } => write!(
                f,
                "not a pcap or pcapng file (first bytes {:02x}{:02x}{:02x}{:02x}); give a capture written by tcpdump, tshark or dumpcap, optionally .gz or .zst",
                magic[0], magic[1], magic[2], magic[3]
            ),
            CaptureError::Truncated {
                offset,
                partial,
                compressed,
            } => {
                write!(f, "truncated at byte offset {offset}")?;
                if let Some(c) = compressed {
                    write!(
                        f,
                        " of the decompressed stream ({} data: {})",
                        c.kind, c.cause
                    )?;
                }
                match (offset, partial) {
                    (0, _) => write!(
                        f,
                        ": the file header is incomplete ({partial} bytes); no record could be read"
                    ),
                    (_, 0) => write!(
                        f,
                        ": it ends between two records; records before it were processed"
                    ),
                    _ => write!(
                        f,
                        ": the last record is incomplete ({partial} bytes); records before it were processed"
                    ),
                }
            }
            CaptureError::Corrupt { offset, reason } => write!(
                f,
                "corrupt record at byte offset {offset}: {reason}; records before it were processed"
            ),
        }
    }
}

impl std::error::Error for CaptureError {}

/// Why a compressed capture's decompressed stream ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEnd {
    /// `gzip` or `zstd`.
    pub kind: &'static str,
    /// The decompressor's error (`unexpected end of file`, `incomplete frame`, ...).
    pub cause: String,
}

impl From<io::Error> for CaptureError {
    fn from(e: io::Error) -> Self {
        CaptureError::Io(e)
    }
}

#[derive(Clone, Copy, Debug)]
struct Iface {
    linktype: u16,
    units_per_sec: u64,
    offset_secs: i64,
}

#[derive(Debug)]
enum Format {
    Pcap(PcapFormat),
    PcapNg {
        be: bool,
        ifaces: Vec<Iface>,
        last_ts: Timestamp,
    },
}

/// Streaming reader of one capture file.
pub struct CaptureReader {
    name: String,
    input: Box<dyn Read + Send>,
    /// `gzip` or `zstd` when the file is compressed.
    compression: Option<&'static str>,
    /// The decompressor failed: the stream ends there.
    stream_end: Option<StreamEnd>,
    format: Option<Format>,
    carry: Vec<u8>,
    /// Offset in the (decompressed) stream of `carry[0]`.
    carry_offset: u64,
    eof: bool,
    pending_error: Option<CaptureError>,
    chunk_size: usize,
    /// Frames whose interface or block could not be used, counted.
    pub skipped_frames: u64,
    /// Blocks handed out recently, reused when no worker holds them any more.
    recent: Vec<Arc<Vec<u8>>>,
    /// How many of `recent` to keep.
    recycle: usize,
    /// A frame list handed back by [`CaptureReader::recycle`]: its
    /// capacity is about what the next block needs.
    spare_frames: Vec<FrameRef>,
    /// The record a loader's cut leaves to this reader (the one cut by the
    /// block boundary), parsed here.
    head: Vec<FrameRef>,
    /// Blocks whose loader's cut was taken.
    loader_cuts: u64,
    /// Bytes read from the file itself (before decompression), for progress.
    raw_read: Arc<std::sync::atomic::AtomicU64>,
    /// A plain file read by a pool of loader threads ([`CaptureReader::open_loaded`]):
    /// the file and the pool size until the first block, then the pool.
    loaders: Loading,
}

/// Whether blocks come from `input` or from loader threads.
enum Loading {
    No,
    /// The file, how many loaders, its size when opened.
    Ready(Arc<File>, usize, u64),
    Running(Loaders),
}

/// Counts the bytes a reader hands out.
struct Counted<R> {
    inner: R,
    n: Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n
            .fetch_add(k as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(k)
    }
}

/// Blocks remembered for reuse by default (bounded: queue depth plus a
/// few); [`CaptureReader::with_recycle`] sets it to a pipeline's depth.
const RECYCLE: usize = 16;

/// A little-endian pcap file header (snap length 262144).
pub fn pcap_header(nanos: bool, linktype: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    h[0..4].copy_from_slice(&magic.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&262_144u32.to_le_bytes());
    h[20..24].copy_from_slice(&linktype.to_le_bytes());
    h
}

/// A little-endian pcap record header: `ns` since the epoch, written in
/// the file's unit (nanoseconds, else microseconds).
pub fn pcap_record_header(nanos: bool, ns: u64, caplen: u32, wire_len: u32) -> [u8; 16] {
    let frac = ns % 1_000_000_000;
    let frac = if nanos { frac } else { frac / 1000 };
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&((ns / 1_000_000_000) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&(frac as u32).to_le_bytes());
    h[8..12].copy_from_slice(&caplen.to_le_bytes());
    h[12..16].copy_from_slice(&wire_len.to_le_bytes());
    h
}

/// `raw`, decompressed when its first bytes say gzip or zstd (captures,
/// and the record files `baseline build` reads).
pub fn decompressed(raw: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
    Ok(decompressed_named(raw)?.0)
}

/// [`decompressed`], with the compression found (`gzip`, `zstd`, or none).
fn decompressed_named(
    raw: Box<dyn Read + Send>,
) -> io::Result<(Box<dyn Read + Send>, Option<&'static str>)> {
    let mut buffered = BufReader::with_capacity(256 << 10, raw);
    let head = buffered.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        (
            Box::new(flate2::read::MultiGzDecoder::new(buffered)),
            Some("gzip"),
        )
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        (
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
            Some("zstd"),
        )
    } else {
        (Box::new(buffered), None)
    })
}

impl CaptureReader {
    /// Opens a file (or `-` for standard input); gzip and zstd are detected
    /// from the first bytes.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let raw: Box<dyn Read + Send> = if name == "-" {
            Box::new(io::stdin())
        } else {
            Box::new(File::open(path)?)
        };
        Self::from_reader(name, raw)
    }

    pub fn from_reader(name: String, raw: Box<dyn Read + Send>) -> Result<Self, CaptureError> {
        let raw_read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (input, compression) = decompressed_named(Box::new(Counted {
            inner: raw,
            n: Arc::clone(&raw_read),
        }))?;
        Ok(CaptureReader {
            name,
            input,
            compression,
            stream_end: None,
            format: None,
            carry: Vec::new(),
            carry_offset: 0,
            eof: false,
            pending_error: None,
            chunk_size: CHUNK_SIZE,
            skipped_frames: 0,
            recent: Vec::new(),
            recycle: RECYCLE,
            spare_frames: Vec::new(),
            head: Vec::new(),
            loader_cuts: 0,
            raw_read,
            loaders: Loading::No,
        })
    }

    /// Opens `path` to be read by `loaders` threads at once when it is a
    /// plain (uncompressed) regular file: each thread reads every
    /// `loaders`-th block with positioned reads, so the copy out of the
    /// page cache — most of the source's work — runs on as many cores as
    /// there are decoders. Each loader also cuts a classic pcap's block at
    /// its record boundaries ([`Walk`]), and this reader only checks the
    /// cut and finishes the record cut by the block boundary; it cuts
    /// pcapng blocks itself. Standard input and compressed files are read in order
    /// by this thread, as [`CaptureReader::open`] does (a decompressor is
    /// sequential).
    pub fn open_loaded(path: &Path, loaders: usize) -> Result<Self, CaptureError> {
        use std::os::unix::fs::FileExt;
        if loaders == 0 || path.as_os_str() == "-" {
            return Self::open(path);
        }
        let file = File::open(path)?;
        // A pipe or a device cannot be read at offsets: in order, then.
        let size = file.metadata()?;
        if !size.is_file() {
            return Self::from_reader(path.display().to_string(), Box::new(file));
        }
        let mut head = [0u8; 4];
        let n = file.read_at(&mut head, 0)?;
        let compressed = head[..n].starts_with(&[0x1f, 0x8b])
            || head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        if compressed || n < 4 {
            return Self::from_reader(path.display().to_string(), Box::new(file));
        }
        let mut r = Self::from_reader(path.display().to_string(), Box::new(io::empty()))?;
        r.loaders = Loading::Ready(Arc::new(file), loaders, size.len());
        Ok(r)
    }

    /// Bytes read from the file so far (compressed bytes for .gz/.zst).
    pub fn raw_bytes(&self) -> u64 {
        self.raw_read.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Remembers up to `blocks` blocks for reuse: as many as a pipeline holds
    /// in flight, so that a steady replay allocates (and faults in) none.
    pub fn with_recycle(mut self, blocks: usize) -> Self {
        self.recycle = blocks.max(1);
        self
    }

    /// Smaller blocks, for tests that exercise records cut by a block boundary.
    pub fn with_chunk_size(mut self, size: usize) -> Self {
        self.chunk_size = size.max(64);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next block of frames; `Ok(None)` at a clean end of file.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, CaptureError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        loop {
            if self.eof && self.carry.is_empty() {
                return Ok(None);
            }
            // Always read something past the carried bytes, so a record longer
            // than a block still completes; at least twice the carry, so a
            // record up to MAX_RECORD_LEN takes one or two passes, not one
            // pass (and one copy of the carry) per 64 KiB.
            let base_offset = self.carry_offset;
            if !matches!(self.loaders, Loading::No) {
                let (buf, start, filled, walk) = match self.next_loaded() {
                    Ok(b) => b,
                    Err(e) => {
                        self.eof = true;
                        self.carry.clear();
                        return Err(CaptureError::Io(e));
                    }
                };
                match self.cut_block(buf, start, filled, base_offset, walk)? {
                    Some(chunk) => return Ok(Some(chunk)),
                    None if self.eof && self.carry.is_empty() => return Ok(None),
                    None => continue,
                }
            }
            let target = self
                .chunk_size
                .max(self.carry.len() + (64 << 10))
                .max(self.carry.len().saturating_mul(2));
            let mut buf = self.fresh_buffer(target);
            buf[..self.carry.len()].copy_from_slice(&self.carry);
            let mut filled = self.carry.len();
            // Straight into the block: a read this large bypasses the
            // BufReader, and the block is already initialised, so there is
            // neither a second copy nor a memset per read.
            while filled < target && !self.eof {
                match self.input.read(&mut buf[filled..target]) {
                    Ok(0) => self.eof = true,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // The compressed data ends early (or is damaged): what
                    // it decompressed to so far is used, as a plain file
                    // cut at that point would be.
                    Err(e) if self.compression.is_some() => {
                        self.eof = true;
                        self.stream_end = Some(StreamEnd {
                            kind: self.compression.unwrap_or_default(),
                            cause: e.to_string(),
                        });
                    }
                    Err(e) => {
                        self.eof = true;
                        self.carry.clear();
                        return Err(CaptureError::Io(e));
                    }
                }
            }
            match self.cut_block(buf, 0, filled, base_offset, None)? {
                Some(chunk) => return Ok(Some(chunk)),
                None if self.eof && self.carry.is_empty() => return Ok(None),
                // A block with no frame in it (headers only, or a record
                // longer than what we had): read more.
                None => {}
            }
        }
    }

    /// Cuts `buf[start..filled]` (the carried bytes, then the block's) at
    /// its last whole record: the records before become a chunk, the rest
    /// is carried. `None` when no record is whole yet. `walk` is the
    /// block's cut by its loader, taken when it begins where this reader's
    /// own cut would.
    fn cut_block(
        &mut self,
        buf: Vec<u8>,
        start: usize,
        filled: usize,
        base_offset: u64,
        walk: Option<Walk>,
    ) -> Result<Option<Chunk>, CaptureError> {
        let (frames, parsed) = match walk.map(|w| self.take_walk(&buf, start, base_offset, w)) {
            Some(Ok(taken)) => taken,
            other => {
                // The last block's list, emptied: no regrowth.
                let mut frames = match other {
                    Some(Err(list)) => list,
                    _ => std::mem::take(&mut self.spare_frames),
                };
                frames.clear();
                let parsed = self
                    .parse_frames(&buf[start..filled], base_offset, &mut frames)
                    .map(|c| start + c);
                if start > 0 {
                    // Offsets count from the buffer's first byte, not the block's.
                    for f in &mut frames {
                        f.offset += start as u32;
                    }
                }
                (frames, parsed)
            }
        };
        let consumed = match parsed {
            Ok(c) => c,
            Err(e) => {
                // Deliver what parsed, then the error.
                self.eof = true;
                self.carry.clear();
                self.pending_error = Some(e);
                return Ok(Some(self.share(buf, frames)));
            }
        };
        self.carry.clear();
        self.carry.extend_from_slice(&buf[consumed..filled]);
        self.carry_offset = base_offset + (consumed - start) as u64;
        if self.eof && (!self.carry.is_empty() || self.stream_end.is_some()) {
            let err = CaptureError::Truncated {
                offset: self.carry_offset,
                partial: self.carry.len(),
                compressed: self.stream_end.take(),
            };
            self.carry.clear();
            if frames.is_empty() {
                return Err(err);
            }
            self.pending_error = Some(err);
        }
        if frames.is_empty() {
            self.spare_frames = frames;
            self.give_back(buf);
            return Ok(None);
        }
        Ok(Some(self.share(buf, frames)))
    }

    /// A loader's cut of `buf`, when the carried bytes `buf[start..]` and
    /// the block's bytes before its first record are exactly one record
    /// (the one the last block left unfinished; none when both are empty):
    /// then this reader's cut would begin where the loader's did, and the
    /// two cut the same bytes with the same function. Else the loader's
    /// frame list, for this reader to cut into.
    #[allow(clippy::type_complexity)]
    fn take_walk(
        &mut self,
        buf: &[u8],
        start: usize,
        base_offset: u64,
        mut walk: Walk,
    ) -> Result<(Vec<FrameRef>, Result<usize, CaptureError>), Vec<FrameRef>> {
        let Some(Format::Pcap(fmt)) = self.format else {
            return Err(walk.frames);
        };
        let first = LOAD_ROOM + walk.first;
        if start == first && start == LOAD_ROOM {
            self.loader_cuts += 1;
            return Ok((walk.frames, Ok(walk.end)));
        }
        if start >= LOAD_ROOM || walk.first == 0 {
            return Err(walk.frames);
        }
        let mut head = std::mem::take(&mut self.head);
        head.clear();
        let whole = walk_pcap(&buf[start..first], 0, fmt, base_offset, &mut head);
        let taken = match (whole, head.as_slice()) {
            (Ok(end), [f]) if start + end == first => {
                walk.frames[0] = FrameRef {
                    offset: f.offset + start as u32,
                    ..*f
                };
                self.loader_cuts += 1;
                Ok((walk.frames, Ok(walk.end)))
            }
            _ => Err(walk.frames),
        };
        self.head = head;
        taken
    }

    /// The next block from the loaders, with the carried bytes put right
    /// before it: `(buffer, start, end)` of the bytes to cut. The carry goes
    /// into the room each loader leaves at the front of its buffer (the
    /// common case: less than one record); a longer one is joined with
    /// blocks until it is at most half of what is cut, so a record longer
    /// than a block costs a linear number of copies, not one per block.
    #[allow(clippy::type_complexity)]
    fn next_loaded(&mut self) -> io::Result<(Vec<u8>, usize, usize, Option<Walk>)> {
        if let Loading::Ready(file, n, size) = &self.loaders {
            // No more loaders than the file has blocks (many small files
            // would otherwise start threads that read nothing).
            let blocks = size.div_ceil(self.chunk_size as u64).max(1);
            let n = (*n).min(usize::try_from(blocks).unwrap_or(usize::MAX));
            let pool = Loaders::start(Arc::clone(file), n, self.chunk_size)?;
            self.loaders = Loading::Running(pool);
        }
        let Loading::Running(pool) = &mut self.loaders else {
            unreachable!("loaders started above");
        };
        // Blocks the decoders and workers are done with go back to the loaders.
        let mut i = 0;
        while i < self.recent.len() && !pool.free.is_full() {
            if Arc::strong_count(&self.recent[i]) == 1 {
                if let Ok(v) = Arc::try_unwrap(self.recent.swap_remove(i)) {
                    pool.recycle(v);
                }
            } else {
                i += 1;
            }
        }
        let (mut buf, len, walk) = pool.next()?;
        // Progress counts what the reader took, not what loaders read ahead.
        let taken = &self.raw_read;
        taken.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
        if len < self.chunk_size {
            self.eof = true;
        }
        let c = self.carry.len();
        // Into the front room when it is small against a block (always at
        // the default block size); a carry as large as the blocks is
        // joined with them instead, so that small blocks (a test knob)
        // do not copy it once per block.
        if c <= LOAD_ROOM.min(self.chunk_size / 2) {
            buf[LOAD_ROOM - c..LOAD_ROOM].copy_from_slice(&self.carry);
            return Ok((buf, LOAD_ROOM - c, LOAD_ROOM + len, walk));
        }
        // The loaders' cuts are not used here: their lists go back.
        let mut joined = Vec::with_capacity(2 * c + self.chunk_size);
        joined.extend_from_slice(&self.carry);
        joined.extend_from_slice(&buf[LOAD_ROOM..LOAD_ROOM + len]);
        pool.recycle(buf);
        pool.recycle_walk(walk);
        while joined.len() < 2 * c && !self.eof {
            let (more, len, walk) = pool.next()?;
            pool.recycle_walk(walk);
            taken.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
            if len < self.chunk_size {
                self.eof = true;
            }
            joined.extend_from_slice(&more[LOAD_ROOM..LOAD_ROOM + len]);
            pool.recycle(more);
        }
        let end = joined.len();
        Ok((joined, 0, end, None))
    }

    /// A buffer that held no whole record: back to the loaders, if any.
    fn give_back(&mut self, buf: Vec<u8>) {
        if let Loading::Running(pool) = &mut self.loaders {
            pool.recycle(buf);
        }
    }

    /// A buffer for the next block: one the workers have finished with, if
    /// any (no allocation, no page faults), else a new one.
    fn fresh_buffer(&mut self, want: usize) -> Vec<u8> {
        if let Some(i) = self.recent.iter().position(|a| Arc::strong_count(a) == 1) {
            let arc = self.recent.swap_remove(i);
            if let Ok(mut v) = Arc::try_unwrap(arc) {
                // Kept at full length: its bytes are initialised already.
                if v.len() < want {
                    v.resize(want, 0);
                }
                return v;
            }
        }
        vec![0; want]
    }

    /// Takes a block back once it has been handled, to reuse its frame
    /// list: a list freed and allocated again per block costs fresh pages.
    pub fn recycle(&mut self, chunk: Chunk) {
        self.recycle_frames(chunk.frames);
    }

    /// Takes back a block's frame list alone (the block went elsewhere):
    /// this reader keeps one, the loaders' walks get the others.
    pub fn recycle_frames(&mut self, frames: Vec<FrameRef>) {
        match &self.loaders {
            Loading::Running(pool) if self.spare_frames.capacity() > 0 => {
                let _ = pool.free_frames.try_send(frames);
            }
            _ => self.spare_frames = frames,
        }
    }

    /// Wraps a block for sharing, remembering it for reuse once released.
    fn share(&mut self, buf: Vec<u8>, frames: Vec<FrameRef>) -> Chunk {
        let data = Arc::new(buf);
        if self.recent.len() >= self.recycle {
            self.recent.remove(0);
        }
        self.recent.push(Arc::clone(&data));
        Chunk { data, frames }
    }

    /// Parses whole records from `buf`; returns how many bytes were used.
    fn parse_frames(
        &mut self,
        buf: &[u8],
        base_offset: u64,
        frames: &mut Vec<FrameRef>,
    ) -> Result<usize, CaptureError> {
        let mut pos = 0usize;
        if self.format.is_none() {
            if buf.len() < 24 {
                // Shorter than any capture's header. A compressed stream
                // that ended early is reported as truncated by the caller.
                if self.eof && self.stream_end.is_none() {
                    return Err(short_file(buf));
                }
                return Ok(0);
            }
            let magic: [u8; 4] = [buf[0], buf[1], buf[2], buf[3]];
            if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
                self.format = Some(Format::PcapNg {
                    be: false,
                    ifaces: Vec::new(),
                    last_ts: Timestamp::ZERO,
                });
            } else if let Some(fmt) = pcap_format(buf) {
                self.format = Some(Format::Pcap(fmt));
                pos = 24;
            } else {
                return Err(CaptureError::NotACapture { magic });
            }
        }
        let base_ptr = buf.as_ptr() as usize;
        match self.format.as_mut() {
            Some(Format::Pcap(fmt)) => walk_pcap(buf, pos, *fmt, base_offset, frames),
            Some(Format::PcapNg {
                be,
                ifaces,
                last_ts,
            }) => {
                while buf.len() - pos >= 12 {
                    let h = &buf[pos..];
                    // A section header states its own byte order.
                    if h[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
                        *be = match [h[8], h[9], h[10], h[11]] {
                            [0x1a, 0x2b, 0x3c, 0x4d] => true,
                            [0x4d, 0x3c, 0x2b, 0x1a] => false,
                            _ => {
                                return Err(CaptureError::Corrupt {
                                    offset: base_offset + pos as u64,
                                    reason: "section header with an unknown byte-order magic"
                                        .into(),
                                });
                            }
                        };
                    }
                    let block_len = read_u32([h[4], h[5], h[6], h[7]], *be) as usize;
                    if !(12..=MAX_RECORD_LEN).contains(&block_len) || !block_len.is_multiple_of(4) {
                        return Err(CaptureError::Corrupt {
                            offset: base_offset + pos as u64,
                            reason: format!(
                                "pcapng block length {block_len} is not a multiple of 4 between 12 and {MAX_RECORD_LEN}"
                            ),
                        });
                    }
                    if buf.len() - pos < block_len {
                        break;
                    }
                    let slice = &buf[pos..pos + block_len];
                    let parsed = if *be {
                        pcap_parser::pcapng::parse_block_be(slice)
                    } else {
                        pcap_parser::pcapng::parse_block_le(slice)
                    };
                    let block = match parsed {
                        Ok((_, block)) => block,
                        Err(e) => {
                            return Err(CaptureError::Corrupt {
                                offset: base_offset + pos as u64,
                                reason: format!("pcapng block does not parse ({e:?})"),
                            });
                        }
                    };
                    match block {
                        Block::SectionHeader(_) => ifaces.clear(),
                        Block::InterfaceDescription(idb) => {
                            if ifaces.len() >= MAX_INTERFACES {
                                return Err(CaptureError::Corrupt {
                                    offset: base_offset + pos as u64,
                                    reason: format!(
                                        "more than {MAX_INTERFACES} interfaces in one section"
                                    ),
                                });
                            }
                            ifaces.push(Iface {
                                linktype: idb.linktype.0 as u16,
                                // Invalid resolutions fall back to the default, µs.
                                units_per_sec: idb.ts_resolution().unwrap_or(1_000_000),
                                offset_secs: idb.if_tsoffset,
                            });
                        }
                        Block::EnhancedPacket(epb) => match ifaces.get(epb.if_id as usize) {
                            Some(iface) => {
                                let ticks = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                                let mut ts = Timestamp::from_ticks(ticks, iface.units_per_sec);
                                if iface.offset_secs != 0 {
                                    let off = iface
                                        .offset_secs
                                        .unsigned_abs()
                                        .saturating_mul(1_000_000_000);
                                    ts = if iface.offset_secs > 0 {
                                        Timestamp(ts.0.saturating_add(off))
                                    } else {
                                        Timestamp(ts.0.saturating_sub(off))
                                    };
                                }
                                let caplen = (epb.caplen as usize).min(epb.data.len());
                                let offset = epb.data.as_ptr() as usize - base_ptr;
                                *last_ts = ts;
                                frames.push(FrameRef {
                                    ts,
                                    offset: offset as u32,
                                    caplen: caplen as u32,
                                    wire_len: epb.origlen.max(caplen as u32),
                                    linktype: iface.linktype,
                                });
                            }
                            None => self.skipped_frames += 1,
                        },
                        Block::SimplePacket(spb) => match ifaces.first() {
                            // Simple packet blocks carry no time: use the last one seen.
                            Some(iface) => {
                                let caplen = (spb.origlen as usize).min(spb.data.len());
                                let offset = spb.data.as_ptr() as usize - base_ptr;
                                frames.push(FrameRef {
                                    ts: *last_ts,
                                    offset: offset as u32,
                                    caplen: caplen as u32,
                                    wire_len: spb.origlen.max(caplen as u32),
                                    linktype: iface.linktype,
                                });
                            }
                            None => self.skipped_frames += 1,
                        },
                        _ => {}
                    }
                    pos += block_len;
                }
                Ok(pos)
            }
            None => Ok(pos),
        }
    }
}

/// Room the loaders leave before each block for the bytes carried from the
/// one before (a record cut by the block boundary).
const LOAD_ROOM: usize = 64 << 10;
/// Blocks each loader may have read ahead.
const LOAD_AHEAD: usize = 2;

/// A loaded block (its buffer, how many bytes follow [`LOAD_ROOM`], and its
/// records as its loader cut them), or the read error that ended the file.
type Loaded = io::Result<(Vec<u8>, usize, Option<Walk>)>;

/// A classic pcap block's records, cut by its loader right after reading
/// it, while its bytes are still in that core's cache (walking the record
/// headers of a block read on another core costs a cache miss per record).
/// The loaders pass the offset where each block's first record begins from
/// one to the next ([`Chain`]), so each block is cut from the same place as
/// the reader would cut it; the reader checks that before taking the frames.
struct Walk {
    /// Where the block's first record begins, after [`LOAD_ROOM`] (the
    /// bytes before finish the record the last block left unfinished).
    first: usize,
    /// The block's whole records, offsets from the buffer's start; when
    /// `first > 0` and the block is not the file's first, `frames[0]` is a
    /// placeholder for the unfinished record.
    frames: Vec<FrameRef>,
    /// Where the first record that is not whole begins, from the buffer's start.
    end: usize,
}

/// What one loader tells the next about the block it reads next.
#[derive(Clone, Copy)]
enum Chain {
    /// The first block: it begins with the file header.
    FileStart,
    /// The next record begins at this offset in the file.
    At(u64, PcapFormat),
    /// Not a classic pcap file, or a record that cannot be walked: the
    /// reader cuts every block from here on.
    Off,
}

/// Cuts `buf` (block `at..at + len` of the file, after [`LOAD_ROOM`]) with
/// the chain's offset; returns the walk and what the next block needs.
/// A header cut by the block's end is read from the file (16 bytes).
fn prewalk(
    buf: &[u8],
    len: usize,
    at: u64,
    full: bool,
    chain: Chain,
    file: &File,
    mut frames: Vec<FrameRef>,
) -> (Option<Walk>, Chain) {
    use std::os::unix::fs::FileExt;
    let data = &buf[..LOAD_ROOM + len];
    let (next, fmt) = match chain {
        Chain::Off => return (None, Chain::Off),
        Chain::FileStart => match pcap_format(&data[LOAD_ROOM..]) {
            Some(fmt) if at == 0 => (24, fmt),
            _ => return (None, Chain::Off),
        },
        Chain::At(next, fmt) => (next, fmt),
    };
    let Some(first) = next.checked_sub(at) else {
        return (None, Chain::Off);
    };
    if first >= len as u64 {
        // A record that runs through the whole block: none begins in it.
        return (None, if full { chain } else { Chain::Off });
    }
    let first = first as usize;
    frames.clear();
    if first > 0 && at > 0 {
        frames.push(FrameRef {
            ts: Timestamp::ZERO,
            offset: 0,
            caplen: 0,
            wire_len: 0,
            linktype: 0,
        });
    }
    let Ok(end) = walk_pcap(data, LOAD_ROOM + first, fmt, 0, &mut frames) else {
        return (None, Chain::Off);
    };
    let walk = Walk { first, frames, end };
    if !full {
        return (Some(walk), Chain::Off);
    }
    let mut h = [0u8; 16];
    let head = at + (end - LOAD_ROOM) as u64;
    let have = data.len() - end;
    if have >= 16 {
        h.copy_from_slice(&data[end..end + 16]);
    } else {
        h[..have].copy_from_slice(&data[end..]);
        let mut got = have;
        while got < 16 {
            match file.read_at(&mut h[got..], head + got as u64) {
                Ok(0) | Err(_) => return (Some(walk), Chain::Off),
                Ok(m) => got += m,
            }
        }
    }
    let caplen = pcap_caplen(&h, fmt.be);
    if caplen > MAX_RECORD_LEN {
        return (Some(walk), Chain::Off);
    }
    (Some(walk), Chain::At(head + 16 + caplen as u64, fmt))
}

/// Threads that read a plain file's blocks with positioned reads, loader
/// `j` blocks `j`, `j + n`, `j + 2n`, ...: the reader takes them back in
/// file order, round robin. A short block is the end of the file (a file
/// still growing is read to where it was when its last block was read, as
/// a sequential read would); each loader stops after its first short or
/// failed read. Dropping the pool stops and joins the threads.
struct Loaders {
    blocks: Vec<crossbeam_channel::Receiver<Loaded>>,
    /// Buffers the reader is done with, for the loaders to fill again.
    free: crossbeam_channel::Sender<Vec<u8>>,
    /// Frame lists the pipeline is done with, for the loaders' walks.
    free_frames: crossbeam_channel::Sender<Vec<FrameRef>>,
    next: usize,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Loaders {
    fn start(file: Arc<File>, n: usize, block: usize) -> io::Result<Self> {
        use std::os::unix::fs::FileExt;
        let (free, free_rx) = crossbeam_channel::bounded::<Vec<u8>>(n * (LOAD_AHEAD + 2));
        let (free_frames, frames_rx) = crossbeam_channel::bounded(n * (LOAD_AHEAD + 2));
        // Loader j hears from loader j - 1 where its next block's first
        // record begins, and tells loader j + 1 (a ring). One message at
        // most waits on each link: loader j sends again only after the
        // chain has gone round, through loader j + 1's receive.
        let (links, hear): (Vec<_>, Vec<_>) = (0..n)
            .map(|_| crossbeam_channel::bounded::<Chain>(1))
            .unzip();
        let _ = links[0].send(Chain::FileStart);
        let mut blocks = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for j in 0..n {
            let (tx, rx) = crossbeam_channel::bounded(LOAD_AHEAD);
            let (file, free_rx) = (Arc::clone(&file), free_rx.clone());
            let (frames_rx, heard, tell) = (
                frames_rx.clone(),
                hear[j].clone(),
                links[(j + 1) % n].clone(),
            );
            let t = std::thread::Builder::new()
                .name(format!("load-{j}"))
                .spawn(move || {
                    let mut k = j as u64;
                    loop {
                        let mut buf = free_rx.try_recv().unwrap_or_default();
                        if buf.len() < LOAD_ROOM + block {
                            buf.resize(LOAD_ROOM + block, 0);
                        }
                        let mut len = 0;
                        let mut failed = None;
                        let at = k * block as u64;
                        while len < block {
                            match file.read_at(
                                &mut buf[LOAD_ROOM + len..LOAD_ROOM + block],
                                at + len as u64,
                            ) {
                                Ok(0) => break,
                                Ok(m) => len += m,
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                Err(e) => {
                                    failed = Some(e);
                                    break;
                                }
                            }
                        }
                        let last = len < block || failed.is_some();
                        // Cut it while it is in this core's cache, from where
                        // the block before ended; then tell the next loader,
                        // before the reader may wait on it for this block.
                        let chain = heard.recv().unwrap_or(Chain::Off);
                        let (walk, next) = match failed {
                            Some(_) => (None, Chain::Off),
                            None => {
                                let spare = frames_rx.try_recv().unwrap_or_default();
                                prewalk(&buf, len, at, !last, chain, &file, spare)
                            }
                        };
                        let _ = tell.try_send(next);
                        let msg = match failed {
                            Some(e) => Err(e),
                            None => Ok((buf, len, walk)),
                        };
                        if tx.send(msg).is_err() || last {
                            return;
                        }
                        k += n as u64;
                    }
                })?;
            blocks.push(rx);
            threads.push(t);
        }
        Ok(Loaders {
            blocks,
            free,
            free_frames,
            next: 0,
            threads,
        })
    }

    /// The next block in file order, how many bytes it holds (after
    /// [`LOAD_ROOM`]) and its loader's cut.
    fn next(&mut self) -> Loaded {
        let rx = &self.blocks[self.next % self.blocks.len()];
        self.next += 1;
        // The reader stops asking at the first short block, the one its
        // loader stopped after: a loader gone before that has panicked.
        rx.recv()
            .unwrap_or_else(|_| Err(io::Error::other("a capture loader thread stopped")))
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        let _ = self.free.try_send(buf);
    }

    /// A cut the reader did not take: its frame list back to the loaders.
    fn recycle_walk(&mut self, walk: Option<Walk>) {
        if let Some(w) = walk {
            let _ = self.free_frames.try_send(w.frames);
        }
    }
}

impl Drop for Loaders {
    fn drop(&mut self) {
        // Their sends fail once the receivers are gone: every loader returns.
        self.blocks.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a whole file shorter than a capture header (24 bytes) is: empty,
/// cut short when its bytes begin like a capture, or not a capture.
fn short_file(buf: &[u8]) -> CaptureError {
    if buf.is_empty() {
        return CaptureError::Empty;
    }
    let n = buf.len().min(4);
    let mut magic = [0u8; 4];
    magic[..n].copy_from_slice(&buf[..n]);
    const MAGICS: [[u8; 4]; 5] = [
        [0x0a, 0x0d, 0x0d, 0x0a],
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
    ];
    if MAGICS.iter().any(|m| m[..n] == buf[..n]) {
        CaptureError::Truncated {
            offset: 0,
            partial: buf.len(),
            compressed: None,
        }
    } else {
        CaptureError::NotACapture { magic }
    }
}

/// A classic pcap file's byte order, timestamp unit and link type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PcapFormat {
    be: bool,
    units_per_sec: u64,
    linktype: u16,
}

/// The format a classic pcap file header (its first 24 bytes) states.
fn pcap_format(head: &[u8]) -> Option<PcapFormat> {
    let h: &[u8; 24] = head.get(..24)?.try_into().ok()?;
    let (be, units_per_sec) = pcap_magic(&[h[0], h[1], h[2], h[3]])?;
    let network = read_u32([h[20], h[21], h[22], h[23]], be);
    Some(PcapFormat {
        be,
        units_per_sec,
        // The upper bits carry FCS information (pcap spec, LinkType field).
        linktype: (network & 0xffff) as u16,
    })
}

/// A field of a capture written in the byte order its header states.
fn read_u32(b: [u8; 4], be: bool) -> u32 {
    if be {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

/// The captured length in a pcap record header.
fn pcap_caplen(h: &[u8; 16], be: bool) -> usize {
    read_u32([h[8], h[9], h[10], h[11]], be) as usize
}

/// Walks the pcap records of `buf` from `pos`: each whole record becomes a
/// frame (its offset counted from `buf[0]`); returns where the first
/// record that is not whole begins. `base_offset` is `buf[0]`'s offset in
/// the file, for the error a record longer than [`MAX_RECORD_LEN`] gives.
/// The reader and the loaders ([`prewalk`]) cut with this one function,
/// so a block cut by either gives the same frames.
fn walk_pcap(
    buf: &[u8],
    mut pos: usize,
    fmt: PcapFormat,
    base_offset: u64,
    frames: &mut Vec<FrameRef>,
) -> Result<usize, CaptureError> {
    let base_ptr = buf.as_ptr() as usize;
    while let Some(h) = buf.get(pos..pos + 16) {
        let caplen = pcap_caplen(h.try_into().expect("16 bytes"), fmt.be);
        if caplen > MAX_RECORD_LEN {
            return Err(CaptureError::Corrupt {
                offset: base_offset + pos as u64,
                reason: format!("captured length {caplen} exceeds the {MAX_RECORD_LEN}-byte limit"),
            });
        }
        let parsed = if fmt.be {
            pcap_parser::pcap::parse_pcap_frame_be(&buf[pos..])
        } else {
            pcap_parser::pcap::parse_pcap_frame(&buf[pos..])
        };
        let Ok((rest, block)) = parsed else {
            break; // Incomplete: wait for more bytes.
        };
        frames.push(FrameRef {
            ts: Timestamp::from_units(block.ts_sec as u64, block.ts_usec as u64, fmt.units_per_sec),
            offset: (block.data.as_ptr() as usize - base_ptr) as u32,
            caplen: block.caplen,
            wire_len: block.origlen.max(block.caplen),
            linktype: fmt.linktype,
        });
        pos = buf.len() - rest.len();
    }
    Ok(pos)
}

/// pcap magic → (big-endian, timestamp units per second).
fn pcap_magic(m: &[u8; 4]) -> Option<(bool, u64)> {
    match m {
        [0xd4, 0xc3, 0xb2, 0xa1] => Some((false, 1_000_000)),
        [0xa1, 0xb2, 0xc3, 0xd4] => Some((true, 1_000_000)),
        [0x4d, 0x3c, 0xb2, 0xa1] => Some((false, 1_000_000_000)),
        [0xa1, 0xb2, 0x3c, 0x4d] => Some((true, 1_000_000_000)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_bytes(be: bool, nanos: bool, frames: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut out = Vec::new();
        out.extend_from_slice(&w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
        out.extend_from_slice(&w16(2));
        out.extend_from_slice(&w16(4));
        out.extend_from_slice(&w32(0));
        out.extend_from_slice(&w32(0));
        out.extend_from_slice(&w32(65535));
        out.extend_from_slice(&w32(1));
        for (s, frac, data) in frames {
            out.extend_from_slice(&w32(*s));
            out.extend_from_slice(&w32(*frac));
            out.extend_from_slice(&w32(data.len() as u32));
            out.extend_from_slice(&w32(data.len() as u32 + 4));
            out.extend_from_slice(data);
        }
        out
    }

    type Frames = Vec<(Timestamp, Vec<u8>, u32)>;

    /// Every frame and the error that ended the file, read in order by
    /// this thread; the same file read by loader threads must give the
    /// same (checked for one and three loaders).
    fn read_all(bytes: Vec<u8>, chunk: usize) -> (Frames, Option<CaptureError>) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        let r = CaptureReader::from_reader("t".into(), Box::new(io::Cursor::new(bytes)))
            .unwrap()
            .with_chunk_size(chunk);
        let (frames, err) = drain(r);
        // Small blocks too: the carry then crosses many boundaries, and a
        // long record takes the joining path.
        for loaders in [1, 3] {
            for size in [chunk, 64, 97] {
                let r = CaptureReader::open_loaded(file.path(), loaders)
                    .unwrap()
                    .with_chunk_size(size);
                let (f2, e2) = drain(r);
                assert!(
                    f2 == frames,
                    "{loaders} loaders, block {size}: other frames"
                );
                assert_eq!(
                    e2.as_ref().map(|e| e.to_string()),
                    err.as_ref().map(|e| e.to_string()),
                    "{loaders} loaders, block {size}"
                );
            }
        }
        (frames, err)
    }

    #[test]
    fn loaders_cut_the_blocks_of_a_classic_pcap() {
        // Records of many lengths, so that block boundaries fall in record
        // headers and in record bodies alike.
        let bodies: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| vec![(i % 251) as u8; (i as usize * 37) % 1500 + 1])
            .collect();
        let frames: Vec<(u32, u32, &[u8])> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    1_700_000_000 + i as u32,
                    i as u32 * 7 % 1_000_000,
                    b.as_slice(),
                )
            })
            .collect();
        for be in [false, true] {
            let bytes = pcap_bytes(be, false, &frames);
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &bytes).unwrap();
            let (want, err) = drain(
                CaptureReader::from_reader("t".into(), Box::new(io::Cursor::new(bytes.clone())))
                    .unwrap(),
            );
            assert!(err.is_none() && want.len() == 3000);
            for loaders in [1, 2, 3] {
                let mut r = CaptureReader::open_loaded(file.path(), loaders)
                    .unwrap()
                    .with_chunk_size(16 << 10);
                let mut got = Vec::new();
                let mut blocks = 0;
                while let Some(c) = r.next_chunk().unwrap() {
                    blocks += 1;
                    got.extend(
                        c.frames
                            .iter()
                            .map(|f| (f.ts, c.frame_bytes(f).to_vec(), f.wire_len)),
                    );
                    // Frame lists go back to the loaders, as a replay gives them.
                    r.recycle_frames(c.frames);
                }
                assert!(got == want, "{loaders} loaders: other frames");
                // Every block but the first (the file header) is cut by its loader.
                assert_eq!(r.loader_cuts, blocks - 1, "{loaders} loaders, be {be}");
            }
        }
    }

    fn drain(mut r: CaptureReader) -> (Frames, Option<CaptureError>) {
        let mut out = Vec::new();
        loop {
            match r.next_chunk() {
                Ok(Some(c)) => {
                    for f in &c.frames {
                        out.push((f.ts, c.frame_bytes(f).to_vec(), f.wire_len));
                    }
                }
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn records_longer_than_a_block_complete() {
        // Up to the largest record accepted, around small ones, with the
        // default block size and a tiny one.
        let big: Vec<u8> = (0..MAX_RECORD_LEN - 16).map(|i| (i % 251) as u8).collect();
        let mid = vec![7u8; CHUNK_SIZE + 1];
        let frames = [
            (1, 0, &b"head"[..]),
            (2, 0, &big[..]),
            (3, 0, &mid[..]),
            (4, 0, &b"tail"[..]),
        ];
        for chunk in [CHUNK_SIZE, 64] {
            let (got, err) = read_all(pcap_bytes(false, false, &frames), chunk);
            assert!(err.is_none(), "{err:?}");
            let lens: Vec<usize> = got.iter().map(|f| f.1.len()).collect();
            assert_eq!(lens, [4, big.len(), mid.len(), 4], "chunk {chunk}");
            assert_eq!(got[1].1, big);
            assert_eq!(got[3].1, b"tail");
        }
    }

    #[test]
    fn a_long_record_then_a_cut_or_a_corrupt_header_is_named_at_its_offset() {
        // A record longer than the loaders' front room, then the file cut
        // inside the next one, or a hostile length right after it.
        let big = vec![3u8; LOAD_ROOM + 5000];
        let bytes = pcap_bytes(false, false, &[(1, 0, b"a"), (2, 0, &big), (3, 0, &big)]);
        let second = 24 + 16 + 1 + 16 + big.len();
        let cut = bytes[..second + 16 + 1000].to_vec();
        for chunk in [CHUNK_SIZE, 4096] {
            let (got, err) = read_all(cut.clone(), chunk);
            assert_eq!(got.len(), 2);
            match err {
                Some(CaptureError::Truncated {
                    offset, partial, ..
                }) => assert_eq!((offset, partial), (second as u64, 1016)),
                e => panic!("{e:?}"),
            }
            let mut bad = bytes[..second].to_vec();
            bad.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
            bad.extend_from_slice(&[0u8; 64]);
            let (got, err) = read_all(bad, chunk);
            assert_eq!(got.len(), 2);
            match err {
                Some(CaptureError::Corrupt { offset, .. }) => assert_eq!(offset, second as u64),
                e => panic!("{e:?}"),
            }
        }
    }

    #[test]
    fn a_pipe_is_read_in_order() {
        // A FIFO cannot be read at offsets: open_loaded falls back.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let bytes = pcap_bytes(false, false, &[(1, 0, b"abc"), (2, 0, b"defg")]);
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
        };
        let (got, err) = drain(CaptureReader::open_loaded(&fifo, 2).unwrap());
        writer.join().unwrap();
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, b"defg");
    }

    #[test]
    fn all_four_pcap_magics() {
        for be in [false, true] {
            for nanos in [false, true] {
                let bytes = pcap_bytes(be, nanos, &[(10, 5, b"abc"), (11, 7, b"defgh")]);
                let (frames, err) = read_all(bytes, 64);
                assert!(err.is_none(), "{err:?}");
                assert_eq!(frames.len(), 2);
                let unit = if nanos { 1 } else { 1000 };
                assert_eq!(frames[0].0, Timestamp(10_000_000_000 + 5 * unit));
                assert_eq!(frames[1].1, b"defgh");
                assert_eq!(frames[1].2, 9);
            }
        }
    }

    #[test]
    fn records_cut_by_blocks_are_carried_over() {
        let frames: Vec<(u32, u32, Vec<u8>)> = (0..50u32)
            .map(|i| (i, i, vec![i as u8; (i * 7 % 100) as usize + 1]))
            .collect();
        let refs: Vec<(u32, u32, &[u8])> = frames
            .iter()
            .map(|(a, b, d)| (*a, *b, d.as_slice()))
            .collect();
        let bytes = pcap_bytes(false, false, &refs);
        for chunk in [64, 100, 333, 1 << 20] {
            let (got, err) = read_all(bytes.clone(), chunk);
            assert!(err.is_none());
            assert_eq!(got.len(), 50, "chunk {chunk}");
            for (i, (_, data, _)) in got.iter().enumerate() {
                assert_eq!(data, &frames[i].2);
            }
        }
    }

    #[test]
    fn truncated_file_yields_frames_then_offset() {
        let mut bytes = pcap_bytes(
            false,
            false,
            &[(1, 0, b"0123456789"), (2, 0, b"abcdefghij")],
        );
        bytes.truncate(bytes.len() - 3);
        let (got, err) = read_all(bytes, 1 << 20);
        assert_eq!(got.len(), 1);
        match err {
            Some(CaptureError::Truncated {
                offset, partial, ..
            }) => {
                assert_eq!(offset, 24 + 16 + 10);
                assert_eq!(partial, 16 + 7);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_caplen_is_refused_without_allocation() {
        let mut bytes = pcap_bytes(false, false, &[(1, 0, b"ok")]);
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let (got, err) = read_all(bytes, 1 << 20);
        assert_eq!(got.len(), 1);
        assert!(
            matches!(err, Some(CaptureError::Corrupt { offset: 42, .. })),
            "{err:?}"
        );
    }

    #[test]
    fn not_a_capture_is_named() {
        let (_, err) = read_all(
            b"hello, this is a text file and not a capture".to_vec(),
            1 << 20,
        );
        assert!(
            matches!(err, Some(CaptureError::NotACapture { .. })),
            "{err:?}"
        );
        let (_, err) = read_all(b"hi".to_vec(), 1 << 20);
        assert!(
            matches!(err, Some(CaptureError::NotACapture { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn short_files_are_truncated_empty_or_not_a_capture() {
        let pcap = pcap_bytes(false, false, &[]);
        let mut pcapng = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a];
        pcapng.extend_from_slice(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let be_nanos = pcap_bytes(true, true, &[]);
        for head in [&pcap[..], &pcapng[..], &be_nanos[..]] {
            for n in 1..24 {
                let (got, err) = read_all(head[..n].to_vec(), 1 << 20);
                assert!(got.is_empty());
                match err {
                    Some(CaptureError::Truncated {
                        offset: 0,
                        partial,
                        compressed: None,
                    }) if partial == n => {}
                    other => panic!("{n} bytes of {:02x?}: {other:?}", &head[..4]),
                }
            }
        }
        let err = read_all(pcap[..7].to_vec(), 1 << 20).1.unwrap();
        assert_eq!(
            err.to_string(),
            "truncated at byte offset 0: the file header is incomplete (7 bytes); no record could be read"
        );
        for garbage in [
            &b"h"[..],
            b"\xd4\xc3\xb2\xa2",
            b"\x0a\x0d\x0d\x0b 23 bytes of text.",
        ] {
            let (_, err) = read_all(garbage.to_vec(), 1 << 20);
            assert!(
                matches!(err, Some(CaptureError::NotACapture { .. })),
                "{garbage:?}: {err:?}"
            );
        }
        let (_, err) = read_all(Vec::new(), 1 << 20);
        assert!(matches!(err, Some(CaptureError::Empty)), "{err:?}");
        // Empty once decompressed, too.
        let (_, err) = read_all(zstd::encode_all(&b""[..], 3).unwrap(), 1 << 20);
        assert!(matches!(err, Some(CaptureError::Empty)), "{err:?}");
    }

    #[test]
    fn a_cut_compressed_file_yields_its_frames_then_the_decompressed_offset() {
        let frames: Vec<(u32, u32, Vec<u8>)> = (0..2000u32)
            .map(|i| {
                (
                    i,
                    i,
                    (0..(i * 37 % 300) + 1).map(|j| (i ^ j) as u8).collect(),
                )
            })
            .collect();
        let refs: Vec<(u32, u32, &[u8])> = frames
            .iter()
            .map(|(a, b, d)| (*a, *b, d.as_slice()))
            .collect();
        let plain = pcap_bytes(false, false, &refs);
        let (whole, err) = read_all(plain.clone(), 1 << 20);
        assert!(err.is_none());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(io::Cursor::new(&plain), 3).unwrap();
        for (kind, compressed) in [("gzip", gz), ("zstd", zs)] {
            for percent in [1, 50, 90] {
                let cut = compressed[..compressed.len() * percent / 100].to_vec();
                for chunk in [1 << 20, 4096] {
                    let (got, err) = read_all(cut.clone(), chunk);
                    let what = format!("{kind} cut at {percent}%, blocks of {chunk}");
                    let Some(CaptureError::Truncated {
                        offset,
                        partial,
                        compressed: Some(end),
                    }) = err
                    else {
                        panic!("{what}: {err:?}")
                    };
                    assert_eq!(end.kind, kind);
                    // Every frame before the damage, as in the whole file.
                    assert_eq!(got[..], whole[..got.len()], "{what}");
                    // The offset is where the first frame not read begins in
                    // the decompressed stream, and what follows it is a
                    // prefix of that frame.
                    // (0 when not even the file header came out.)
                    let next_at = 24
                        + frames[..got.len()]
                            .iter()
                            .map(|f| 16 + f.2.len() as u64)
                            .sum::<u64>();
                    if !(got.is_empty() && offset == 0) {
                        assert_eq!(offset, next_at, "{what}");
                        assert!(partial < 16 + frames[got.len()].2.len(), "{what}");
                    }
                    if percent > 1 {
                        assert!(got.len() * 100 > frames.len() * (percent - 40), "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn gzip_and_zstd_are_read_directly() {
        let bytes = pcap_bytes(false, false, &[(1, 0, b"abc")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &bytes).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(io::Cursor::new(bytes), 3).unwrap();
        for compressed in [gz, zs] {
            let (got, err) = read_all(compressed, 1 << 20);
            assert!(err.is_none());
            assert_eq!(got[0].1, b"abc");
        }
    }
}
