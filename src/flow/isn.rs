//! Each side's initial sequence number (ISN), as the flow table learns it
//! from SYNs, until that side's first payload makes a reassembler.
//!
//! A side may send SYNs with two different ISNs: a server that lost its
//! half-open connection (restarted, or a SYN-cookie or load-balancer path)
//! answers a retransmitted SYN with a fresh SYN-ACK, and a client may retry
//! with a new SYN. The peer acknowledges only one of them, and that one is
//! the stream's start (RFC 9293 §3.10.7.3: an ACK of anything else is not
//! acceptable). So the first ISN is used until the peer's first ACK names
//! the other one ("the one acknowledged wins"); one rival is kept per side
//! (the latest), so the state is bounded whatever a flood of SYNs says.

use crate::flow::key::Direction;

#[derive(Clone, Copy, Debug, Default)]
pub struct Isns {
    isn: [Option<u32>; 2],
    /// A later SYN of the side with another ISN, until the peer's ACK decides.
    rival: [Option<u32>; 2],
}

impl Isns {
    /// The ISN a new reassembler of side `i` starts from.
    pub fn get(&self, i: usize) -> Option<u32> {
        self.isn[i]
    }

    /// A SYN (or SYN-ACK) from `d` with sequence number `seq`.
    pub fn syn(&mut self, d: Direction, seq: u32) {
        let i = d.index();
        match self.isn[i] {
            None => self.isn[i] = Some(seq),
            Some(first) if first != seq => self.rival[i] = Some(seq),
            Some(_) => {}
        }
    }

    /// An acknowledgement `ack` from `d`: where the peer sent SYNs with two
    /// ISNs, picks the one this acknowledges. Returns the peer's side and its
    /// ISN when that changed.
    pub fn ack(&mut self, d: Direction, ack: u32) -> Option<(usize, u32)> {
        let peer = 1 - d.index();
        let rival = self.rival[peer].take()?;
        let first = self.isn[peer]?;
        // How far past the SYN the ACK reaches: 0 for the handshake's ACK,
        // more once data was acknowledged; an ACK below a SYN's sequence
        // number does not acknowledge it.
        let past = |isn: u32| {
            let d = ack.wrapping_sub(isn.wrapping_add(1)) as i32;
            (d >= 0).then_some(d)
        };
        match (past(first), past(rival)) {
            (Some(f), Some(r)) if r < f => {}
            (None, Some(_)) => {}
            _ => return None,
        }
        self.isn[peer] = Some(rival);
        Some((peer, rival))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::*;

    #[test]
    fn the_acknowledged_syn_ack_wins_whatever_its_order() {
        // The later SYN-ACK acknowledged (a server that restarted).
        let mut s = Isns::default();
        s.syn(ToServer, 1000);
        s.syn(ToClient, 5_000_000);
        s.syn(ToServer, 1000); // the client's retransmission: same ISN
        s.syn(ToClient, 9_000_000);
        assert_eq!(s.ack(ToServer, 9_000_001), Some((1, 9_000_000)));
        assert_eq!(s.get(1), Some(9_000_000));
        assert_eq!(s.get(0), Some(1000));
        // The earlier one acknowledged, the rival a few units above it
        // (two stacks answering the same SYN microseconds apart).
        let mut s = Isns::default();
        s.syn(ToClient, 700);
        s.syn(ToClient, 750);
        assert_eq!(s.ack(ToServer, 701), None);
        assert_eq!(s.get(1), Some(700));
        // ... and after server data was acknowledged: the nearest wins.
        let mut s = Isns::default();
        s.syn(ToClient, 700);
        s.syn(ToClient, 750);
        assert_eq!(s.ack(ToServer, 751 + 40), Some((1, 750)));
    }

    #[test]
    fn a_wrapped_rival_and_a_client_retry_are_followed() {
        let mut s = Isns::default();
        s.syn(ToClient, 10);
        s.syn(ToClient, u32::MAX - 5);
        assert_eq!(s.ack(ToServer, u32::MAX - 4), Some((1, u32::MAX - 5)));
        // A client that retried with a new ISN: the SYN-ACK's ACK decides.
        let mut s = Isns::default();
        s.syn(ToServer, 100);
        s.syn(ToServer, 4_000_000);
        assert_eq!(s.ack(ToClient, 4_000_001), Some((0, 4_000_000)));
        // No rival: nothing to decide.
        assert_eq!(s.ack(ToClient, 1), None);
    }
}
