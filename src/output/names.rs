//! Readable names beside codes: IANA cipher suite names (tls-parser's
//! table, generated from the IANA "TLS Cipher Suites" registry) and IANA
//! TLS alert names, so that a SIEM user does not translate `0xc02f` or
//! alert 40 by hand.

/// The IANA name of a cipher suite (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`);
/// `None` for unassigned and GREASE values.
pub fn cipher_suite(id: u16) -> Option<&'static str> {
    tls_parser::TlsCipherSuite::from_id(id).map(|c| c.name)
}

/// The IANA "TLS Alerts" registry (Description column), by value:
/// <https://www.iana.org/assignments/tls-parameters/tls-parameters.xhtml#tls-parameters-6>.
#[rustfmt::skip]
const ALERTS: &[(u8, &str)] = &[
    (0, "close_notify"),
    (10, "unexpected_message"),
    (20, "bad_record_mac"),
    (21, "decryption_failed_RESERVED"),
    (22, "record_overflow"),
    (30, "decompression_failure_RESERVED"),
    (40, "handshake_failure"),
    (41, "no_certificate_RESERVED"),
    (42, "bad_certificate"),
    (43, "unsupported_certificate"),
    (44, "certificate_revoked"),
    (45, "certificate_expired"),
    (46, "certificate_unknown"),
    (47, "illegal_parameter"),
    (48, "unknown_ca"),
    (49, "access_denied"),
    (50, "decode_error"),
    (51, "decrypt_error"),
    (52, "too_many_cids_requested"),
    (60, "export_restriction_RESERVED"),
    (70, "protocol_version"),
    (71, "insufficient_security"),
    (80, "internal_error"),
    (86, "inappropriate_fallback"),
    (90, "user_canceled"),
    (100, "no_renegotiation_RESERVED"),
    (109, "missing_extension"),
    (110, "unsupported_extension"),
    (111, "certificate_unobtainable_RESERVED"),
    (112, "unrecognized_name"),
    (113, "bad_certificate_status_response"),
    (114, "bad_certificate_hash_value_RESERVED"),
    (115, "unknown_psk_identity"),
    (116, "certificate_required"),
    (117, "general_error"),
    (120, "no_application_protocol"),
    (121, "ech_required"),
];

/// The IANA name of a TLS alert description; `None` when unassigned.
pub fn alert(code: u8) -> Option<&'static str> {
    ALERTS
        .binary_search_by_key(&code, |&(c, _)| c)
        .ok()
        .map(|i| ALERTS[i].1)
}

/// Where a blindspot analytic sits in MITRE ATT&CK Mobile (v18): its
/// detection strategy, technique and tactic, as attack.mitre.org lists
/// them (DET0646 "Detection of SSL Pinning" holds AN1726; DET0641
/// "Detection of Encrypted Channel" holds AN1717).
pub struct Attack {
    pub analytic: &'static str,
    pub analytic_name: &'static str,
    pub strategy: &'static str,
    pub technique_id: &'static str,
    pub technique_name: &'static str,
    /// The sub-technique, where the strategy names one.
    pub sub_technique: Option<(&'static str, &'static str)>,
    pub tactic_id: &'static str,
    pub tactic_name: &'static str,
    pub url: &'static str,
}

pub fn attack(analytic: &str) -> Attack {
    if analytic == "AN1726" {
        Attack {
            analytic: "AN1726",
            analytic_name: "Analytic 1726",
            strategy: "DET0646",
            technique_id: "T1521",
            technique_name: "Encrypted Channel",
            sub_technique: Some(("T1521.003", "SSL Pinning")),
            tactic_id: "TA0037",
            tactic_name: "Command and Control",
            url: "https://attack.mitre.org/detectionstrategies/DET0646#AN1726",
        }
    } else {
        Attack {
            analytic: "AN1717",
            analytic_name: "Analytic 1717",
            strategy: "DET0641",
            technique_id: "T1521",
            technique_name: "Encrypted Channel",
            sub_technique: None,
            tactic_id: "TA0037",
            tactic_name: "Command and Control",
            url: "https://attack.mitre.org/detectionstrategies/DET0641#AN1717",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_registries() {
        // RFC 8446 appendix B.4 and RFC 5289 section 3 name these codes.
        assert_eq!(cipher_suite(0x1301), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(
            cipher_suite(0xc02f),
            Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        );
        assert_eq!(cipher_suite(0x0a0a), None, "GREASE has no name");
        // RFC 8446 section 6: handshake_failure(40), unknown_ca(48), certificate_required(116).
        assert_eq!(alert(40), Some("handshake_failure"));
        assert_eq!(alert(48), Some("unknown_ca"));
        assert_eq!(alert(116), Some("certificate_required"));
        assert_eq!(alert(1), None);
        assert!(
            ALERTS.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted for the search"
        );
    }
}
