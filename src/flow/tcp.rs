//! TCP connection state in Zeek's terms: per-endpoint states, the `history`
//! string and the `conn_state` summary (Zeek `base/protocols/conn/main.zeek`).
//!
//! History letters (upper case from the originator, lower case from the
//! responder), as Zeek writes them:
//!
//! | letter | meaning |
//! | --- | --- |
//! | `S` | SYN without ACK |
//! | `H` | SYN+ACK ("handshake") |
//! | `A` | pure ACK (no payload, no SYN/FIN/RST) |
//! | `D` | packet with payload |
//! | `F` | FIN |
//! | `R` | RST |
//! | `I` | inconsistent packet (SYN and RST together) |
//! | `Q` | multi-flag packet (SYN and FIN together) |
//! | `T` | retransmitted payload (repeats at 1, 10, 100, … occurrences) |
//! | `G` | content gap (repeats likewise) |
//! | `W` | zero window advertised (repeats likewise) |
//! | `^` | the originator was flipped (first packet seen was the SYN+ACK) |
//!
//! `S H A D F R I Q` are written once per direction.

use crate::decode::tcp_flags::{ACK, FIN, RST, SYN};
use crate::flow::key::Direction;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EpState {
    #[default]
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

/// Letters that are written once per direction, as bit positions.
const ONCE: &[u8] = b"SHADFRIQ";
/// Letters that repeat at 1, 10, 100, … occurrences.
const REPEAT: &[u8] = b"TGW";

#[derive(Clone, Debug, Default)]
pub struct History {
    text: String,
    once: [u8; 2],
    counts: [[u32; 3]; 2],
}

impl History {
    pub const MAX_LEN: usize = 48;

    fn push(&mut self, letter: u8, d: Direction) {
        if self.text.len() < Self::MAX_LEN {
            let c = if d == Direction::ToServer {
                letter
            } else {
                letter.to_ascii_lowercase()
            };
            self.text.push(c as char);
        }
    }

    /// Records a once-per-direction letter.
    pub fn once(&mut self, letter: u8, d: Direction) {
        let bit = ONCE
            .iter()
            .position(|l| *l == letter)
            .expect("a once letter") as u8;
        let i = d.index();
        if self.once[i] & (1 << bit) == 0 {
            self.once[i] |= 1 << bit;
            self.push(letter, d);
        }
    }

    /// Records an occurrence of a repeating letter.
    pub fn repeat(&mut self, letter: u8, d: Direction) {
        let k = REPEAT
            .iter()
            .position(|l| *l == letter)
            .expect("a repeat letter");
        let i = d.index();
        self.counts[i][k] += 1;
        let n = self.counts[i][k];
        if n == 1 || (n.is_multiple_of(10) && is_power_of_ten(n)) {
            self.push(letter, d);
        }
    }

    pub fn flipped(&mut self) {
        if !self.text.starts_with('^') {
            self.text.insert(0, '^');
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn has(&self, letter: u8, d: Direction) -> bool {
        let bit = match ONCE.iter().position(|l| *l == letter) {
            Some(b) => b,
            None => return false,
        };
        self.once[d.index()] & (1 << bit) != 0
    }
}

fn is_power_of_ten(mut n: u32) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

/// Per-connection TCP state.
#[derive(Clone, Debug, Default)]
pub struct TcpState {
    pub orig: EpState,
    pub resp: EpState,
    /// Highest sequence end seen with payload, per direction (retransmission test).
    pub max_end: [Option<u32>; 2],
    /// Per direction: the acknowledgement number that covers its first FIN.
    fin_ack: [Option<u32>; 2],
    /// Per direction: the peer acknowledged that FIN.
    fin_acked: [bool; 2],
}

impl TcpState {
    fn ep(&mut self, d: Direction) -> (&mut EpState, &mut EpState) {
        match d {
            Direction::ToServer => (&mut self.orig, &mut self.resp),
            Direction::ToClient => (&mut self.resp, &mut self.orig),
        }
    }

    /// Updates endpoint states and history for one packet.
    pub fn update(
        &mut self,
        h: &mut History,
        d: Direction,
        flags: u8,
        seq: u32,
        payload_len: u32,
        window: u16,
    ) {
        let syn = flags & SYN != 0;
        let ack = flags & ACK != 0;
        let fin = flags & FIN != 0;
        let rst = flags & RST != 0;
        if syn && rst {
            h.once(b'I', d);
        }
        if syn && fin {
            h.once(b'Q', d);
        }
        if syn {
            h.once(if ack { b'H' } else { b'S' }, d);
        }
        if fin {
            h.once(b'F', d);
        }
        if rst {
            h.once(b'R', d);
        }
        if payload_len > 0 {
            h.once(b'D', d);
            let i = d.index();
            // A SYN's payload (TCP Fast Open) follows its sequence number.
            let end = seq.wrapping_add(u32::from(syn)).wrapping_add(payload_len);
            match self.max_end[i] {
                Some(max) if (end.wrapping_sub(max) as i32) <= 0 => h.repeat(b'T', d),
                Some(max) if (end.wrapping_sub(max) as i32) > 0 => self.max_end[i] = Some(end),
                _ => self.max_end[i] = Some(end),
            }
        } else if ack && !syn && !fin && !rst {
            h.once(b'A', d);
        }
        if window == 0 && !rst && !syn {
            h.repeat(b'W', d);
        }

        let (me, peer) = self.ep(d);
        if rst {
            *me = EpState::Reset;
            return;
        }
        if syn {
            match (*me, ack) {
                (EpState::Inactive, false) => *me = EpState::SynSent,
                (EpState::Inactive, true) | (EpState::SynSent, true) => {
                    *me = EpState::SynAckSent;
                }
                _ => {}
            }
            if fin {
                *me = EpState::Closed;
            }
            return;
        }
        if fin {
            if *me != EpState::Reset {
                *me = EpState::Closed;
            }
            // A FIN also acknowledges: finish an open handshake.
            if ack && *peer == EpState::SynAckSent {
                *peer = EpState::Established;
            }
            return;
        }
        match (*me, *peer) {
            // Third packet of the handshake, or the responder's first data.
            (EpState::SynSent, EpState::SynAckSent) | (EpState::SynAckSent, EpState::SynSent)
                if ack =>
            {
                *me = EpState::Established;
                *peer = EpState::Established;
            }
            (EpState::SynSent, EpState::Established)
            | (EpState::SynAckSent, EpState::Established)
                if ack =>
            {
                *me = EpState::Established;
            }
            (EpState::Inactive, _) if ack || payload_len > 0 => *me = EpState::Partial,
            _ => {}
        }
    }

    /// Follows each side's FIN and the peer's acknowledgement of it; true
    /// once both FINs are acknowledged: the close is complete, and this is
    /// normally the connection's last packet.
    pub fn note_close(
        &mut self,
        d: Direction,
        flags: u8,
        seq: u32,
        payload_len: u32,
        ack: u32,
    ) -> bool {
        let (me, peer) = (d.index(), 1 - d.index());
        if flags & FIN != 0 && self.fin_ack[me].is_none() {
            self.fin_ack[me] = Some(seq.wrapping_add(payload_len).wrapping_add(1));
        }
        if flags & ACK != 0
            && let Some(want) = self.fin_ack[peer]
            && ack.wrapping_sub(want) as i32 >= 0
        {
            self.fin_acked[peer] = true;
        }
        self.fin_acked == [true, true]
    }

    /// Zeek's `conn_state` for this connection.
    pub fn conn_state(&self, h: &History, orig_bytes: u64, resp_bytes: u64) -> &'static str {
        use EpState::*;
        let (os, rs) = (self.orig, self.resp);
        let o_inactive = matches!(os, Inactive | Partial);
        let r_inactive = matches!(rs, Inactive | Partial);
        if rs == Reset {
            if matches!(os, SynSent | SynAckSent)
                || (os == Reset && orig_bytes == 0 && resp_bytes == 0)
            {
                return "REJ";
            }
            return if o_inactive { "RSTRH" } else { "RSTR" };
        }
        if os == Reset {
            if r_inactive && rstos0_history(h.as_str()) {
                return "RSTOS0";
            }
            return "RSTO";
        }
        if rs == Closed && os == Closed {
            return "SF";
        }
        if os == Closed {
            return if r_inactive { "SH" } else { "S2" };
        }
        if rs == Closed {
            return if o_inactive { "SHR" } else { "S3" };
        }
        if os == SynSent && rs == Inactive {
            return "S0";
        }
        if os == Established && rs == Established {
            return "S1";
        }
        "OTH"
    }
}

/// Zeek's test for RSTOS0: `^?S[^HAFGIQ]*R.*`.
fn rstos0_history(h: &str) -> bool {
    let b = h.strip_prefix('^').unwrap_or(h).as_bytes();
    if b.first() != Some(&b'S') {
        return false;
    }
    for c in &b[1..] {
        match c {
            b'R' => return true,
            b'H' | b'A' | b'F' | b'G' | b'I' | b'Q' => return false,
            _ => {}
        }
    }
    false
}

/// UDP and other transports: Zeek's states from who sent anything.
pub fn udp_conn_state(orig_packets: u64, resp_packets: u64) -> &'static str {
    match (orig_packets > 0, resp_packets > 0) {
        (true, true) => "SF",
        (true, false) => "S0",
        (false, true) => "SHR",
        (false, false) => "OTH",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tcp_flags::PSH;
    use Direction::*;

    fn run(pkts: &[(Direction, u8, u32, u32)]) -> (String, &'static str) {
        let mut st = TcpState::default();
        let mut h = History::default();
        let (mut ob, mut rb) = (0, 0);
        for (d, f, seq, len) in pkts {
            st.update(&mut h, *d, *f, *seq, *len, 1000);
            if *d == ToServer {
                ob += *len as u64
            } else {
                rb += *len as u64
            }
        }
        let s = st.conn_state(&h, ob, rb);
        (h.as_str().to_string(), s)
    }

    #[test]
    fn normal_connection_is_sf() {
        let (h, s) = run(&[
            (ToServer, SYN, 0, 0),
            (ToClient, SYN | ACK, 0, 0),
            (ToServer, ACK, 1, 0),
            (ToServer, ACK | PSH, 1, 10),
            (ToClient, ACK | PSH, 1, 20),
            (ToServer, FIN | ACK, 11, 0),
            (ToClient, FIN | ACK, 21, 0),
            (ToServer, ACK, 12, 0),
        ]);
        assert_eq!((h.as_str(), s), ("ShADdFf", "SF"));
    }

    #[test]
    fn zeek_states_for_attempts_and_resets() {
        assert_eq!(run(&[(ToServer, SYN, 0, 0)]).1, "S0");
        assert_eq!(
            run(&[(ToServer, SYN, 0, 0), (ToClient, RST | ACK, 0, 0)]),
            ("Sr".into(), "REJ")
        );
        assert_eq!(
            run(&[(ToServer, SYN, 0, 0), (ToServer, RST, 1, 0)]),
            ("SR".into(), "RSTOS0")
        );
        let est = [
            (ToServer, SYN, 0, 0),
            (ToClient, SYN | ACK, 0, 0),
            (ToServer, ACK, 1, 0),
        ];
        let mut v = est.to_vec();
        v.push((ToServer, RST | ACK, 1, 0));
        assert_eq!(run(&v).1, "RSTO");
        let mut v = est.to_vec();
        v.push((ToClient, RST | ACK, 1, 0));
        assert_eq!(run(&v).1, "RSTR");
        assert_eq!(run(&est).1, "S1");
        let mut v = est.to_vec();
        v.push((ToServer, FIN | ACK, 1, 0));
        assert_eq!(run(&v).1, "S2");
        let mut v = est.to_vec();
        v.push((ToClient, FIN | ACK, 1, 0));
        assert_eq!(run(&v).1, "S3");
        assert_eq!(
            run(&[(ToServer, ACK | PSH, 5, 10), (ToClient, ACK, 9, 0)]).1,
            "OTH"
        );
    }

    #[test]
    fn retransmissions_repeat_logarithmically() {
        let mut pkts = vec![(ToServer, ACK, 100, 10)];
        for _ in 0..12 {
            pkts.push((ToServer, ACK, 100, 10));
        }
        let (h, _) = run(&pkts);
        assert_eq!(h, "DTT");
    }
}
