//! Replay progress on a terminal: bytes read of the input files, packets,
//! rate and time left, redrawn on one stderr line four times a second. Only
//! when stderr is a terminal: piped or redirected, replay prints nothing.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Progress {
    /// Sum of the sizes of the input files (0 when unknown: standard input).
    total: u64,
    started: Instant,
    last: Instant,
    drawn: bool,
}

const EVERY: Duration = Duration::from_millis(250);

fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

impl Progress {
    pub fn new(files: &[PathBuf]) -> Progress {
        let total = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum();
        let now = Instant::now();
        Progress {
            total,
            started: now,
            // The first chunk draws at once.
            last: now.checked_sub(EVERY).unwrap_or(now),
            drawn: false,
        }
    }

    /// The line for `read` bytes of the files and `packets` so far.
    pub fn line(&self, read: u64, packets: u64, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let rate = read as f64 / secs;
        let mut s = format!(
            "blindspot: {} read, {packets} packets, {}/s",
            human(read as f64),
            human(rate)
        );
        if self.total > 0 {
            let pct = (read as f64 * 100.0 / self.total as f64).min(100.0);
            let left = self.total.saturating_sub(read) as f64 / rate.max(1.0);
            s = format!(
                "blindspot: {} of {} ({pct:.0}%), {packets} packets, {}/s, ETA {}:{:02}",
                human(read as f64),
                human(self.total as f64),
                human(rate),
                (left as u64) / 60,
                (left as u64) % 60
            );
        }
        s
    }

    /// Redraws the line when a quarter second has passed.
    pub fn update(&mut self, read: u64, packets: u64) {
        if self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        let line = self.line(read, packets, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the line (the run's own messages follow on a clean line).
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_share_rate_and_time_left() {
        let p = Progress {
            total: 4 << 30,
            started: Instant::now(),
            last: Instant::now(),
            drawn: false,
        };
        let l = p.line(1 << 30, 1_500_000, Duration::from_secs(2));
        assert_eq!(
            l,
            "blindspot: 1.0 GiB of 4.0 GiB (25%), 1500000 packets, 512.0 MiB/s, ETA 0:06"
        );
    }
}
