//! The application-parser interface and the registry every parser joins
//! with one line (in the spirit of retina's `ConnParsable` and
//! `ParserRegistry`).
//!
//! A flow's first payload (either direction) probes every enabled parser
//! of its transport; those that claim the flow are made and then fed, per
//! direction, the in-order stream (TCP: reassembled bytes and gaps) or each
//! datagram (UDP, with the packet that carried it). A parser writes the
//! records it owns into the context's `out`: per message (DHCP), or at the
//! flow's end in [`Parser::finish`] (TLS). The flow table knows no parser
//! by name.

use super::{dhcp, dhcp6, dns, quic, tls};
use crate::decode::Packet;
use crate::flow::FlowSettings;
use crate::flow::key::{Direction, FlowKey};
use crate::flow::reassembly::StreamEvent;
use crate::record::{FlowId, Record};
use crate::time::Timestamp;
use std::any::Any;

/// Every parser, in the order they are probed and finished (a flow's
/// records are written in this order, before its `flow` record).
pub const PARSERS: &[Registration] = &[
    tls::PARSER,
    quic::PARSER,
    dhcp::PARSER,
    dhcp6::PARSER,
    dns::UDP,
    dns::TCP,
];

/// A parser's entry in [`PARSERS`].
pub struct Registration {
    /// Its name in the README and in errors.
    pub name: &'static str,
    pub transport: Transport,
    /// Is it on with these settings (a config key may switch it off)?
    pub enabled: fn(&FlowSettings) -> bool,
    /// Does the flow whose first payload this is speak the protocol?
    /// Cheap: it runs on every flow of the transport.
    pub probe: fn(&Probe<'_>) -> bool,
    /// The parser's state for a flow it claimed.
    pub new: fn(&Probe<'_>) -> Box<dyn Parser>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Reassembled, in-order stream bytes per direction.
    Tcp,
    /// One datagram at a time, with its packet.
    Udp,
}

/// What a parser sees when it is asked whether a flow is its own.
pub struct Probe<'a> {
    /// Ports of the packet that carried the first payload.
    pub sport: u16,
    pub dport: u16,
    /// The direction of that payload.
    pub dir: Direction,
    /// The first payload bytes (the first in-order segment, or datagram).
    pub first: &'a [u8],
}

/// State the parsers of one worker share across flows (caches).
#[derive(Debug, Default)]
pub struct Shared {
    pub tls: tls::TlsCtx,
}

/// What a parser is handed with each piece of input.
pub struct Cx<'a> {
    /// Packet time of the bytes (of the last packet, for stream bytes
    /// released by a later segment or at the flow's end).
    pub ts: Timestamp,
    /// The datagram's packet (UDP); `None` for stream bytes.
    pub packet: Option<&'a Packet>,
    pub key: &'a FlowKey,
    pub start: Timestamp,
    pub shared: &'a mut Shared,
    pub out: &'a mut Vec<Record>,
}

impl Cx<'_> {
    /// The flow's id (computed on demand: most input needs none).
    pub fn flow_id(&self) -> FlowId {
        self.key.flow_id(self.start.as_nanos())
    }
}

/// What a parser is handed when its flow ends.
pub struct End<'a> {
    pub key: &'a FlowKey,
    pub flow_id: FlowId,
    pub community_id: &'a std::sync::Arc<str>,
    /// The flow ended by its idle timeout.
    pub timed_out: bool,
    pub shared: &'a mut Shared,
    pub out: &'a mut Vec<Record>,
}

/// One protocol's state for one flow.
pub trait Parser: Any + Send + std::fmt::Debug {
    /// Stream bytes or a gap (TCP), or one datagram's payload (UDP), of
    /// direction `d`; called only while [`Parser::wants`] that direction.
    fn feed(&mut self, d: Direction, ev: StreamEvent<'_>, cx: &mut Cx<'_>);
    /// Does it still want direction `d`'s bytes? When no parser does, the
    /// flow table frees the direction's reassembler.
    fn wants(&self, d: Direction) -> bool;
    /// The side's first FIN or RST, after that packet's payload was fed.
    fn on_close(&mut self, _d: Direction, _rst: bool, _ts: Timestamp) {}
    /// Bytes held, its own state included (for `flow.memcap`).
    fn heap_bytes(&self) -> usize {
        0
    }
    /// The flow's `service` (Zeek's names), once the parser recognised it.
    fn service(&self) -> Option<&'static str> {
        None
    }
    /// A limit of the flow's to name in its record's `limits` (a cap the
    /// parser reached), if any.
    fn limit(&self) -> Option<&'static str> {
        None
    }
    /// The flow ended: write what the parser owns.
    fn finish(&mut self, _end: &mut End<'_>) {}
}

/// The registry entries switched on for a transport, as a bit set over
/// [`PARSERS`] (probed at a flow's first payload).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParserSet(u32);

impl ParserSet {
    pub fn enabled(s: &FlowSettings, transport: Transport) -> Self {
        const { assert!(PARSERS.len() <= 32) };
        let mut bits = 0;
        for (i, r) in PARSERS.iter().enumerate() {
            if r.transport == transport && (r.enabled)(s) {
                bits |= 1 << i;
            }
        }
        ParserSet(bits)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flow's parsers: those of the set that claim it.
    pub fn claim(self, p: &Probe<'_>) -> Vec<Box<dyn Parser>> {
        let mut claimed = Vec::new();
        for (i, r) in PARSERS.iter().enumerate() {
            if self.0 & (1 << i) != 0 && (r.probe)(p) {
                // Most flows have one parser: room for exactly one first.
                claimed.reserve_exact(1);
                claimed.push((r.new)(p));
            }
        }
        claimed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(
        s: &FlowSettings,
        t: Transport,
        sport: u16,
        dport: u16,
        first: &[u8],
    ) -> Vec<String> {
        let p = Probe {
            sport,
            dport,
            dir: Direction::ToServer,
            first,
        };
        ParserSet::enabled(s, t)
            .claim(&p)
            .iter()
            .map(|p| match p.service() {
                Some(s) => s.to_string(),
                // TLS says `ssl` only once it has seen a record.
                None => format!("{p:?}").split(' ').next().unwrap_or("").to_string(),
            })
            .collect()
    }

    #[test]
    fn each_flow_is_claimed_by_the_parsers_of_its_transport_that_probe_true() {
        let on = FlowSettings::default();
        let hello = [22, 3, 1, 0, 5];
        assert_eq!(
            claimed(&on, Transport::Tcp, 40000, 8443, &hello),
            ["TlsState"]
        );
        assert!(claimed(&on, Transport::Tcp, 40000, 80, b"GET / HTTP/1.1\r\n").is_empty());
        // TLS is TCP's: a datagram that looks like a TLS record is not claimed.
        assert!(claimed(&on, Transport::Udp, 40000, 443, &hello).is_empty());
        assert_eq!(claimed(&on, Transport::Udp, 68, 67, b"\x01"), ["dhcp"]);
        assert_eq!(claimed(&on, Transport::Udp, 546, 547, b"\x01"), ["dhcpv6"]);
        assert!(claimed(&on, Transport::Udp, 68, 53, b"\x01").is_empty());
        // DNS: a plausible header on its ports, framed by a length on TCP.
        let query = [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1,
        ];
        assert_eq!(claimed(&on, Transport::Udp, 40000, 53, &query), ["dns"]);
        assert_eq!(claimed(&on, Transport::Udp, 5353, 5353, &query), ["dns"]);
        assert!(claimed(&on, Transport::Udp, 40000, 54, &query).is_empty());
        let mut framed = vec![0, query.len() as u8];
        framed.extend_from_slice(&query);
        assert_eq!(claimed(&on, Transport::Tcp, 40000, 53, &framed), ["dns"]);
        assert!(claimed(&on, Transport::Tcp, 40000, 53, &[0xff; 32]).is_empty());
        // `tls.enabled = false` switches the TLS parser off.
        let off = FlowSettings {
            tls: false,
            ..FlowSettings::default()
        };
        assert!(claimed(&off, Transport::Tcp, 40000, 443, &hello).is_empty());
    }

    #[test]
    fn the_registry_names_are_unique() {
        let mut names: Vec<_> = PARSERS.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PARSERS.len());
    }
}
