//! What the OCSF, ECS and EVE forms carry beyond their schemas: per record
//! type, the same blindspot fields under blindspot's own names (OCSF
//! `unmapped`, ECS `blindspot.<type>`, EVE `blindspot`), so that no form
//! loses what JSON Lines says. README "Output forms" lists them.

use super::builder::Obj;
use crate::record::{DetectionRecord, DeviceRecord, DhcpRecord, FlowRecord, TlsRecord};

pub fn flow(o: &mut Obj<'_>, f: &FlowRecord) {
    o.disp("flow_id", &f.flow_id)
        .opt_str("service", f.service)
        .f64("duration", f.duration)
        .str("state", f.state)
        .str("history", &f.history)
        .str("end_reason", f.end_reason)
        .ser("vlan", &f.vlan)
        .ser("rtt_syn_synack_us", &f.rtt_syn_synack_us)
        .ser("rtt_synack_ack_us", &f.rtt_synack_ack_us)
        .ser("orig", &f.orig)
        .ser("resp", &f.resp)
        .ser("device", &f.device)
        .ser("limits", &f.limits);
}

pub fn tls(o: &mut Obj<'_>, t: &TlsRecord) {
    o.disp("flow_id", &t.flow_id)
        .ser("cipher", &t.cipher)
        .ser("cipher_name", &t.cipher_name)
        .ser("alpn", &t.alpn)
        .ser("alpn_selected", &t.alpn_selected)
        .ser("client_versions", &t.client_versions)
        .ser("client_max_version", &t.client_max_version)
        .ser("ja3_string", &t.ja3_string)
        .ser("ja3s_string", &t.ja3s_string)
        .ser("ja4_r", &t.ja4_r)
        .bool("ech", t.ech)
        .bool("hrr", t.hrr)
        .bool("resumed", t.resumed)
        .u64("client_hellos", u64::from(t.client_hellos))
        .u64("server_hellos", u64::from(t.server_hellos))
        .ser("cert", &t.cert)
        .ser("inspected", &t.inspected)
        .ser("inspection_ca", &t.inspection_ca)
        .str("outcome", t.outcome.name())
        .str("history", &t.history)
        .ser("timing", &t.timing)
        .ser("alerts", &t.alerts)
        .ser("client_response_len", &t.client_response_len)
        .u64("client_app_records", u64::from(t.client_app_records))
        .u64("server_app_records", u64::from(t.server_app_records))
        .ser("upgrade", &t.upgrade)
        .ser("proxy_connect", &t.proxy_connect)
        .bool("sslv2_hello", t.sslv2_hello)
        .bool("handshake_overflow", t.handshake_overflow)
        .ser("device", &t.device)
        .ser("limits", &t.limits);
}

pub fn dhcp(o: &mut Obj<'_>, d: &DhcpRecord) {
    o.disp("flow_id", &d.flow_id)
        .u64("dhcp_version", u64::from(d.dhcp_version))
        .ser("message", &d.dhcp)
        .ser("vlan", &d.vlan)
        .ser("device", &d.device)
        .ser("limits", &d.limits);
}

pub fn device(o: &mut Obj<'_>, d: &DeviceRecord) {
    o.str("event", d.event)
        .ser("ip", &d.ip)
        .disp("mac", &d.mac)
        .ser("lease_start", &d.lease_start)
        .ser("lease_end", &d.lease_end)
        .str("source", d.source)
        .ser("previous_mac", &d.previous_mac)
        .ser("device", &d.device)
        .ser("limits", &d.limits);
}

pub fn detection(o: &mut Obj<'_>, d: &DetectionRecord) {
    o.str("detection_id", &d.detection_id)
        .str("analytic", d.analytic)
        .str("pattern", d.pattern)
        .u64("score", u64::from(d.score))
        .ser("score_parts", &d.score_parts)
        .str("status", d.status)
        .str("severity", d.severity)
        .str("visibility", d.visibility)
        .str("recommended_action", &d.recommended_action)
        .disp("ts", &d.ts)
        .disp("end_ts", &d.end_ts)
        .ser("device", &d.device)
        .ser("app", &d.app)
        .ser("destination", &d.destination)
        .ser("ja4", &d.ja4)
        .disp("window_start", &d.window_start)
        .u64("window_s", d.window_s)
        .ser("evidence", &d.evidence)
        .ser("context", &d.context)
        .ser("limits", &d.limits)
        .ser("flow_ids", &d.flow_ids)
        .ser("community_ids", &d.community_ids)
        .u64("flow_ids_total", d.flow_ids_total)
        .ser("proxy_evidence", &d.proxy_evidence)
        .ser("evidence_file", &d.evidence_file);
    if !d.observers.is_empty() {
        o.ser("observers", &d.observers);
    }
}
