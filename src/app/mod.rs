//! Application-layer parsers fed by the flow workers.
//!
//! A flow's [`AppState`] says, per direction, whether any parser still wants
//! stream bytes ([`AppState::wants`]). While one does, the worker keeps a
//! bounded reassembler for that direction and hands it the in-order stream;
//! once none does, the reassembler is freed and the flow is only counted
//! (STYLE habit 6: stop work once the answer is known).

pub mod dhcp;
pub mod dhcp6;
pub mod evidence;
pub mod features;
pub mod quic;
pub mod service;
pub mod tls;

use crate::flow::key::Direction;
use crate::flow::reassembly::StreamEvent;
use crate::record::{DhcpBody, DhcpRecord, Mac};
use crate::time::Timestamp;
use features::{PayloadFeatures, Sampler};
use quic::QuicState;
use tls::TlsState;

/// The `dhcp` record of a DHCPv4 (67/68) or DHCPv6 (546/547) message on
/// its well-known ports, if `payload` is one; `flow_id` names its flow.
pub fn dhcp_record(
    p: &crate::decode::Packet,
    flow_id: crate::record::FlowId,
    payload: &[u8],
) -> Option<DhcpRecord> {
    let k = &p.key;
    let dhcp = match (k.sport, k.dport) {
        (67 | 68, 67 | 68) => DhcpBody::V4(dhcp::parse(payload)?),
        (546 | 547, 546 | 547) => DhcpBody::V6(dhcp6::parse(payload)?),
        _ => return None,
    };
    Some(DhcpRecord {
        kind: "dhcp",
        ts: p.ts,
        flow_id,
        src_ip: k.src.to_ip(),
        src_port: k.sport,
        dst_ip: k.dst.to_ip(),
        dst_port: k.dport,
        src_mac: p.src_mac.map(Mac),
        dst_mac: p.dst_mac.map(Mac),
        vlan: k.vlan.iter().copied().filter(|v| *v != 0).collect(),
        dhcp_version: if matches!(dhcp, DhcpBody::V4(_)) {
            4
        } else {
            6
        },
        dhcp,
        device: Default::default(),
        limits: Vec::new(),
    })
}

/// Per-flow parser state.
#[derive(Debug, Default)]
pub struct AppState {
    sample: [Sampler; 2],
    tls: TlsSlot,
    quic: QuicSlot,
}

/// QUIC is looked for in the first datagram of every UDP flow, on any port.
#[derive(Debug, Default)]
pub enum QuicSlot {
    Unprobed,
    Active(Box<QuicState>),
    #[default]
    NotQuic,
}

/// TLS is looked for in the first stream bytes of every TCP flow, on any
/// port, in either direction (a flow picked up mid-stream starts with the
/// server's records as often as the client's).
#[derive(Debug, Default)]
pub enum TlsSlot {
    #[default]
    Unprobed,
    Active(Box<TlsState>),
    NotTls,
}

impl AppState {
    /// `stream` is true for TCP (stream parsers such as TLS run), false for UDP.
    pub fn new(first_payload_bytes: usize, stream: bool) -> Self {
        AppState {
            sample: [
                Sampler::new(first_payload_bytes),
                Sampler::new(first_payload_bytes),
            ],
            tls: if stream {
                TlsSlot::Unprobed
            } else {
                TlsSlot::NotTls
            },
            quic: QuicSlot::NotQuic,
        }
    }

    /// Looks for QUIC in the flow's datagrams (a UDP flow with TLS parsing on).
    pub fn with_quic(mut self, on: bool) -> Self {
        if on {
            self.quic = QuicSlot::Unprobed;
        }
        self
    }

    /// Bytes this state holds, itself included, about (for `flow.memcap`).
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<AppState>()
            + self.sample.iter().map(Sampler::heap_bytes).sum::<usize>()
            + match &self.tls {
                TlsSlot::Active(t) => t.heap_bytes(),
                _ => 0,
            }
            + match &self.quic {
                QuicSlot::Active(q) => std::mem::size_of::<QuicState>() + q.heap_bytes(),
                _ => 0,
            }
    }

    /// Does any parser still want bytes of direction `d`?
    pub fn wants(&self, d: Direction) -> bool {
        self.sample[d.index()].wants()
            || match &self.tls {
                TlsSlot::Unprobed => true,
                TlsSlot::Active(t) => t.wants(),
                TlsSlot::NotTls => false,
            }
            || match &self.quic {
                QuicSlot::Unprobed => true,
                QuicSlot::Active(q) => q.wants(d),
                QuicSlot::NotQuic => false,
            }
    }

    /// In-order stream bytes (TCP) or a datagram's payload (UDP).
    pub fn on_stream(
        &mut self,
        d: Direction,
        ev: StreamEvent<'_>,
        ts: Timestamp,
        ctx: &mut tls::TlsCtx,
    ) {
        let s = &mut self.sample[d.index()];
        match ev {
            StreamEvent::Data(b) => {
                s.feed(b);
                if let QuicSlot::Unprobed = self.quic {
                    self.quic = if QuicState::probe(b) {
                        QuicSlot::Active(Box::default())
                    } else {
                        QuicSlot::NotQuic
                    };
                }
                if let QuicSlot::Active(q) = &mut self.quic {
                    q.feed(d, b, ts);
                }
                if let TlsSlot::Unprobed = self.tls {
                    self.tls = if TlsState::probe(b) {
                        TlsSlot::Active(Box::new(TlsState::new(b)))
                    } else {
                        TlsSlot::NotTls
                    };
                }
                if let TlsSlot::Active(t) = &mut self.tls
                    && t.wants()
                {
                    t.feed(d, b, ts, ctx);
                }
            }
            StreamEvent::Gap(_) => {
                s.gap();
                // A gap in a handshake cannot be bridged: stop parsing.
                match &mut self.tls {
                    TlsSlot::Active(t) => t.not_tls = true,
                    slot => *slot = TlsSlot::NotTls,
                }
            }
        }
    }

    /// The side's first FIN or RST, after that packet's payload was fed.
    pub fn on_close(&mut self, d: Direction, rst: bool, ts: Timestamp) {
        if let TlsSlot::Active(t) = &mut self.tls {
            t.on_close(d, rst, ts);
        }
    }

    pub fn payload_features(&self, d: Direction) -> Option<PayloadFeatures> {
        self.sample[d.index()].features()
    }

    /// The protocol the flow speaks (Zeek's `service` names), if recognised.
    pub fn service(&self, tcp: bool, sport: u16, dport: u16) -> Option<&'static str> {
        service::identify(
            tcp,
            sport,
            dport,
            self.sample[0].bytes(),
            self.sample[1].bytes(),
            self.tls().is_some_and(|t| t.recognised()),
        )
    }

    pub fn quic(&self) -> Option<&QuicState> {
        match &self.quic {
            QuicSlot::Active(q) => Some(q),
            _ => None,
        }
    }

    pub fn tls(&self) -> Option<&TlsState> {
        match &self.tls {
            TlsSlot::Active(t) => Some(t),
            _ => None,
        }
    }
}
