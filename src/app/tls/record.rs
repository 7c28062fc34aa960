//! The `tls` record: built from a connection's TLS state when its flow ends
//! (the flow table hands the state over and knows nothing of the record).

use super::hello::{self, is_grease, version_name};
use super::summary::summarize;
use super::{Ev, TlsCtx, TlsState};
use crate::flow::key::FlowKey;
use crate::record::TlsRecord;

/// The `tls` record of a flow whose client spoke TLS, if any TLS record was
/// seen; `timed_out` when the flow ended by its idle timeout.
pub fn record(
    t: &TlsState,
    ctx: &mut TlsCtx,
    k: &FlowKey,
    flow_id: crate::record::FlowId,
    community_id: &std::sync::Arc<str>,
    timed_out: bool,
) -> Option<TlsRecord> {
    let ch = t.client_hellos.first().map(|(_, h)| h);
    let ts = t
        .client_hellos
        .first()
        .map(|(ts, _)| *ts)
        .or(t.first_record())?;
    let sh = t
        .server_hellos
        .iter()
        .rev()
        .find(|(_, s)| !s.hello_retry_request)
        .map(|(_, s)| s);
    let tls13 = t.tls13();
    let sum = summarize(&t.events, &t.facts(timed_out));
    let resumed = match (ch, sh) {
        (Some(c), Some(s)) if tls13 => c.psk && s.extensions.contains(&hello::EXT_PRE_SHARED_KEY),
        (Some(c), Some(s)) => {
            (!s.session_id.is_empty() && s.session_id == c.session_id)
                || (c.session_ticket
                    && t.events.iter().any(|e| e.from == 0 && e.ev == Ev::Ccs)
                    && !t.events.iter().any(|e| e.from == 0 && e.ev == Ev::Hs(16)))
        }
        _ => false,
    };
    let mut limits = crate::record::Limits::new();
    if sum.handshake_not_seen {
        limits.push("handshake_not_seen");
    }
    if t.certs.is_none() && sh.is_some() {
        limits.push(if tls13 {
            "tls13_certificate_hidden"
        } else {
            "certificate_not_seen"
        });
    }
    if ch.is_some_and(|c| c.ech) {
        limits.push("sni_hidden_by_ech");
    }
    if t.events_truncated {
        limits.push("history_truncated");
    }
    if t.handshake_overflow {
        limits.push("handshake_overflow");
    }
    let mut alerts = t.alerts.clone();
    alerts.extend(sum.inferred_alerts.iter().cloned());
    alerts.sort_by_key(|a| a.ts);
    let fp = ch.map(|c| c.fingerprints(&mut ctx.fingerprints));
    Some(TlsRecord {
        kind: "tls",
        ts,
        flow_id,
        community_id: community_id.clone(),
        src_ip: k.src.to_ip(),
        src_port: k.sport,
        dst_ip: k.dst.to_ip(),
        dst_port: k.dport,
        proto: "tcp",
        sni: ch.and_then(|c| c.sni.as_deref()).map(std::sync::Arc::from),
        alpn: ch.map(|c| c.alpn.clone()).unwrap_or_default(),
        client_versions: ch
            .map(|c| {
                c.supported_versions
                    .iter()
                    .filter(|v| !is_grease(**v))
                    .map(|v| version_name(*v))
                    .collect()
            })
            .unwrap_or_default(),
        client_max_version: ch.map(|c| version_name(c.max_version())),
        version: sh.map(|s| version_name(s.version)),
        cipher: sh.map(|s| format!("0x{:04x}", s.cipher)),
        cipher_name: sh.and_then(|s| crate::output::names::cipher_suite(s.cipher)),
        alpn_selected: sh.and_then(|s| s.alpn.clone()),
        ja3: fp.as_ref().map(|f| f.ja3.clone()),
        ja3_string: fp.as_ref().map(|f| f.ja3_string.clone()),
        ja4: fp.as_ref().map(|f| f.ja4.as_str().into()),
        ja4_r: fp.as_ref().map(|f| f.ja4_r.clone()),
        ja3s: sh.map(|s| s.ja3s().into()),
        ja3s_string: sh.map(|s| s.ja3s_string()),
        ech: ch.is_some_and(|c| c.ech),
        hrr: t.server_hellos.iter().any(|(_, s)| s.hello_retry_request),
        resumed,
        client_hellos: t.client_hellos.len() as u32,
        server_hellos: t.server_hellos.len() as u32,
        inspected: t.certs.as_ref().map(|_| false),
        cert: t.certs.clone(),
        inspection_ca: None,
        inspection_source: None,
        outcome: sum.outcome,
        history: sum.history,
        timing: sum.timing,
        alerts,
        client_response_len: sum.client_response_len,
        client_app_records: sum.app_records[0],
        server_app_records: sum.app_records[1],
        upgrade: t.upgrade(),
        proxy_connect: t.proxy_connect().map(str::to_string),
        sslv2_hello: t.sslv2_hello,
        handshake_overflow: t.handshake_overflow,
        quic: None,
        device: Default::default(),
        limits,
    })
}
