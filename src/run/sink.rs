//! The sink thread of a run: writes the blocks of records the encoder pool
//! (`run::encode`) encoded, in the correlator's order.

use super::TICK;
use super::encode::{Encoded, Merged};
use crate::correlate::RecordBatch;
use crate::output::Sink;
use crate::output::rotate::LiveSink;
use crossbeam_channel::{RecvTimeoutError, Sender};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Replay's sink thread: writes each encoded block; the first write error
/// ends the run. Emptied blocks go back to the correlator (`spare`).
pub fn replay(mut rx: Merged, mut sink: Sink, spare: Sender<RecordBatch>) -> io::Result<()> {
    let interval = sink.interval();
    loop {
        match rx.recv_timeout(interval) {
            Ok(Encoded::Block(_, mut block, bytes)) => {
                sink.write_encoded(&block, &bytes)?;
                rx.give_back(bytes);
                block.clear();
                let _ = spare.try_send(block);
            }
            Ok(Encoded::Sync(ack)) => {
                sink.flush()?;
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => sink.flush_if_due()?,
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    sink.finish()
}

/// Capture's sink thread: writes each encoded block to the rotated
/// output; a failing write holds the records (up to `max_pending` bytes)
/// and retries every second; `hup` reopens the output; a reader that went
/// away (`-o -`) sets `stop`.
pub fn live(
    mut rx: Merged,
    mut sink: LiveSink,
    hup: &AtomicBool,
    stop: &AtomicBool,
    flush: Duration,
    max_pending: usize,
) -> std::io::Result<()> {
    let mut last_flush = Instant::now();
    let mut last_check = Instant::now();
    let mut failing: Option<(Instant, Instant)> = None; // (since, last report)
    // The correlator waits for everything before this to be written.
    let mut sync: Option<Sender<()>> = None;
    let report = |sink: &LiveSink,
                  r: std::io::Result<()>,
                  failing: &mut Option<(Instant, Instant)>| {
        match r {
            Ok(()) => {
                if let Some((since, _)) = failing.take() {
                    eprintln!(
                        "blindspot: writing to {} again after {} s",
                        sink.current(),
                        since.elapsed().as_secs()
                    );
                }
            }
            Err(e) => {
                // Reported when the failure starts, then once a minute.
                let now = Instant::now();
                if failing.is_none_or(|(_, last)| now - last >= Duration::from_secs(60)) {
                    eprintln!(
                        "blindspot: cannot write {}: {e}; retrying every second, {} KiB of records held (free space, or fix the output)",
                        sink.current(),
                        sink.pending_len() >> 10
                    );
                    *failing = Some((failing.map_or(now, |(since, _)| since), now));
                }
            }
        }
    };
    loop {
        if hup.swap(false, Ordering::Relaxed) {
            let r = sink.reopen();
            if r.is_ok() {
                eprintln!("blindspot: SIGHUP: output reopened: {}", sink.current());
            }
            report(&sink, r, &mut failing);
        }
        if sink.pending_len() < max_pending {
            match rx.recv_timeout(TICK) {
                Ok(Encoded::Block(sent, _, bytes)) => {
                    let waited = sent.elapsed().as_millis() as u64;
                    sink.counters
                        .sink_lag_ms
                        .fetch_max(waited, Ordering::Relaxed);
                    sink.write(&bytes);
                    rx.give_back(bytes);
                }
                Ok(Encoded::Sync(ack)) => sync = Some(ack),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            thread::sleep(TICK);
        }
        let check = last_check.elapsed() >= TICK;
        if check {
            last_check = Instant::now();
        }
        if check && sink.reader_gone() {
            // Nothing may be written for a while (a quiet link): the reader
            // of our output is gone all the same. Stop, as on a failed write.
            stop.store(true, Ordering::Relaxed);
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        let wait = if failing.is_some() {
            Duration::from_secs(1)
        } else {
            flush
        };
        if last_flush.elapsed() >= wait
            || (failing.is_none() && (sink.should_flush() || sync.is_some()))
        {
            last_flush = Instant::now();
            let r = sink.flush().and_then(|()| sink.rotate_if_due());
            if let Err(e) = &r
                && e.kind() == std::io::ErrorKind::BrokenPipe
            {
                // The reader of our output went away (`capture -o - | head`):
                // stop, quietly, as on SIGTERM.
                stop.store(true, Ordering::Relaxed);
                return r;
            }
            report(&sink, r, &mut failing);
            if sink.pending_len() == 0
                && let Some(ack) = sync.take()
            {
                let _ = ack.send(());
            }
        }
    }
    loop {
        let r = sink.finish();
        let ok = r.is_ok();
        report(&sink, r, &mut failing);
        if ok {
            return Ok(());
        }
        thread::sleep(Duration::from_secs(1));
    }
}
