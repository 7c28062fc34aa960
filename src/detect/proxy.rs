//! What a detection cites of the inspecting proxy's own log
//! (`proxy_evidence`), and how it changes the reading: the proxy's verdicts
//! on the window's sessions either agree with what the wire showed, or
//! contradict it. Where the wire could not show the outcome (TLS 1.3's
//! hidden certificate and alerts, QUIC: a `HANDSHAKE_HIDDEN` limit), an
//! agreeing proxy raises the score (`proxy_log_confirms`, +10); where the
//! two disagree, the record says so (`proxy_log_disagrees`, -10, and the
//! limit of the same name).

use super::{Entry, Pattern};
use crate::inputs::proxylog::Verdict;
use crate::record::{FlowId, ProxyCitation, ProxyEvidence};
use std::collections::BTreeMap;

/// Distinct reasons listed at most.
const MAX_REASONS: usize = 8;

/// Does the proxy's verdict agree with the pattern's reading of the wire
/// (`Some(true)`), contradict it (`Some(false)`), or neither?
pub fn agrees(p: Pattern, v: Verdict) -> Option<bool> {
    use Verdict::*;
    match (p, v) {
        (Pattern::RepeatedHandshakeRejection, ClientRejected) => Some(true),
        (Pattern::RepeatedHandshakeRejection, Inspected | NotInspected) => Some(false),
        (Pattern::DestinationBypass, NotInspected) => Some(true),
        (Pattern::DestinationBypass, Inspected | ClientRejected) => Some(false),
        (Pattern::OpaquePersistentSession, NotInspected) => Some(true),
        (Pattern::OpaquePersistentSession, Inspected) => Some(false),
        (Pattern::BackgroundTransmission, Inspected | NotInspected | NotTls) => Some(true),
        (Pattern::BackgroundTransmission, ClientRejected | ServerFailed | Blocked) => Some(false),
        (Pattern::OpaqueEncryptedChannel, NotTls | NotInspected) => Some(true),
        (Pattern::OpaqueEncryptedChannel, Inspected) => Some(false),
        _ => None,
    }
}

/// The citation of the window's joined sessions (`None` when none joined),
/// with the score part it earns and whether the proxy disagrees.
/// `hidden`: the wire reading rests on a hidden handshake.
pub fn evidence(
    p: Pattern,
    entries: &[Entry],
    hidden: bool,
    max_cited: usize,
) -> Option<(ProxyEvidence, Option<(&'static str, i32)>)> {
    let joined: Vec<(&FlowId, &crate::correlate::proxylog::ProxyCite)> = entries
        .iter()
        .filter_map(|e| e.proxy.as_ref().map(|c| (&e.flow_id, c)))
        .collect();
    let first = joined.first()?;
    let mut verdicts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut reasons: Vec<String> = Vec::new();
    let (mut agree, mut disagree) = (0u64, 0u64);
    for (_, c) in &joined {
        *verdicts.entry(c.verdict.name()).or_default() += 1;
        if reasons.len() < MAX_REASONS && !reasons.contains(&c.reason) {
            reasons.push(c.reason.clone());
        }
        match agrees(p, c.verdict) {
            Some(true) => agree += 1,
            Some(false) => disagree += 1,
            None => {}
        }
    }
    let part = if disagree > 0 {
        Some(("proxy_log_disagrees", -10))
    } else if agree > 0 && hidden {
        Some(("proxy_log_confirms", 10))
    } else {
        None
    };
    let cited = joined
        .iter()
        .take(max_cited)
        .map(|(id, c)| ProxyCitation {
            flow_id: **id,
            file: c.file.to_string(),
            line: c.line,
            verdict: c.verdict.name(),
            reason: c.reason.clone(),
        })
        .collect();
    Some((
        ProxyEvidence {
            source: first.1.source,
            sessions: joined.len() as u64,
            verdicts,
            reasons,
            agrees: disagree == 0 && agree > 0,
            disagreements: disagree,
            cited,
        },
        part,
    ))
}
