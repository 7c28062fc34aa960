//! The encoding stage: a pool of encoder threads between the correlator's
//! [`Handoff`](super::Handoff) and the sink thread, so that turning records
//! into JSON (the costliest per-record step after the flow workers) is
//! not one thread's load.
//!
//! ```text
//!  correlator ──block k──▶ encode-(k mod E) ──bytes k──▶ sink (takes k, k+1, … in turn)
//! ```
//!
//! The correlator hands block `k` to encoder `k mod E`; the sink takes
//! from the encoders in the same rotation, so blocks are written in the
//! order the correlator made them, whatever each encoder's speed. A
//! `Sync` takes its turn in the rotation like a block. Encoded buffers go
//! back to the encoder that filled them.

use super::ToSink;
use crate::correlate::RecordBatch;
use crate::output::Encoding;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use std::thread;
use std::time::{Duration, Instant};

/// What an encoder hands the sink: a block of records with its encoding,
/// or the correlator's `Sync`, passed on in its turn.
pub enum Encoded {
    /// Records, when the correlator sent them, and their bytes in the
    /// sink's form.
    Block(Instant, RecordBatch, Vec<u8>),
    Sync(Sender<()>),
}

/// The sink's end of the stage: one receiver per encoder, taken in turn.
pub struct Merged {
    rxs: Vec<Receiver<Encoded>>,
    back: Vec<Sender<Vec<u8>>>,
    next: usize,
    /// The encoder the last item came from.
    last: usize,
}

impl Merged {
    /// The next item in the correlator's order. `Disconnected` once the
    /// encoder whose turn it is has stopped with nothing left: the
    /// correlator sent nothing more.
    pub fn recv_timeout(&mut self, wait: Duration) -> Result<Encoded, RecvTimeoutError> {
        let item = self.rxs[self.next].recv_timeout(wait)?;
        self.last = self.next;
        self.next = (self.next + 1) % self.rxs.len();
        Ok(item)
    }

    /// Gives an encoded buffer back to the encoder it came from.
    pub fn give_back(&self, mut bytes: Vec<u8>) {
        if let Some(tx) = self.back.get(self.last) {
            bytes.clear();
            let _ = tx.try_send(bytes);
        }
    }
}

/// Starts `n` encoder threads (`encode-0`, …) with the encodings `make`
/// builds; returns the senders the correlator's hand-off uses, in turn,
/// and the sink's end. Each encoder holds at most `queue` blocks each way.
pub fn pool(
    n: usize,
    queue: usize,
    make: impl Fn() -> Encoding,
) -> std::io::Result<(Vec<Sender<ToSink>>, Merged)> {
    let mut txs = Vec::with_capacity(n);
    let mut merged = Merged {
        rxs: Vec::with_capacity(n),
        back: Vec::with_capacity(n),
        next: 0,
        last: 0,
    };
    for i in 0..n {
        let (in_tx, in_rx) = bounded::<ToSink>(queue);
        let (out_tx, out_rx) = bounded::<Encoded>(queue);
        let (back_tx, back_rx) = bounded::<Vec<u8>>(queue + 1);
        let mut encoding = make();
        thread::Builder::new()
            .name(format!("encode-{i}"))
            .spawn(move || encode(&mut encoding, in_rx, out_tx, back_rx))?;
        txs.push(in_tx);
        merged.rxs.push(out_rx);
        merged.back.push(back_tx);
    }
    Ok((txs, merged))
}

fn encode(
    encoding: &mut Encoding,
    rx: Receiver<ToSink>,
    tx: Sender<Encoded>,
    back: Receiver<Vec<u8>>,
) {
    for item in rx {
        let out = match item {
            ToSink::Block(sent, block) => {
                let mut bytes = back.try_recv().unwrap_or_default();
                bytes.extend_from_slice(encoding.encode(&block));
                Encoded::Block(sent, block, bytes)
            }
            ToSink::Sync(ack) => Encoded::Sync(ack),
        };
        if tx.send(out).is_err() {
            return;
        }
    }
}
