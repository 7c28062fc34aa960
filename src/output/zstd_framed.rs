//! zstd output as a sequence of independent frames.
//!
//! Lines are buffered uncompressed; each flush compresses the buffer into
//! one complete frame and writes it. A reader (`zstdcat`, `zstd -dc`, any
//! library) decodes concatenated frames as one stream, and every frame
//! written so far is readable while the file is still open.

use std::io::{self, Write};

/// Compress at least this often by size, whatever the timer says.
const MAX_PENDING: usize = 4 << 20;

pub struct FramedZstd<W: Write> {
    inner: W,
    pending: Vec<u8>,
    frame: Vec<u8>,
    compressor: zstd::bulk::Compressor<'static>,
    pub frames: u64,
}

impl<W: Write> FramedZstd<W> {
    pub fn new(inner: W, level: i32) -> io::Result<Self> {
        Ok(FramedZstd {
            inner,
            pending: Vec::with_capacity(1 << 20),
            frame: Vec::new(),
            compressor: zstd::bulk::Compressor::new(level)?,
            frames: 0,
        })
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.frame.clear();
        self.frame
            .reserve(zstd::zstd_safe::compress_bound(self.pending.len()));
        self.compressor
            .compress_to_buffer(&self.pending, &mut self.frame)?;
        self.inner.write_all(&self.frame)?;
        self.pending.clear();
        self.frames += 1;
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.emit()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for FramedZstd<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= MAX_PENDING {
            self.emit()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flush_is_a_readable_frame() {
        let mut z = FramedZstd::new(Vec::new(), 3).unwrap();
        z.write_all(b"{\"a\":1}\n").unwrap();
        z.flush().unwrap();
        // What is on "disk" now decodes on its own.
        let so_far = zstd::decode_all(&z.inner[..]).unwrap();
        assert_eq!(so_far, b"{\"a\":1}\n");
        z.write_all(b"{\"b\":2}\n").unwrap();
        let out = z.finish().unwrap();
        assert_eq!(
            zstd::decode_all(&out[..]).unwrap(),
            b"{\"a\":1}\n{\"b\":2}\n"
        );
    }
}
