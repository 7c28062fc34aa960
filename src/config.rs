//! Configuration: one TOML file, every option with a default, CLI overrides.
//!
//! Two stages (ripgrep's lowargs → hiargs): [`RawConfig`] is what the file
//! says, deserialised strictly (unknown keys are errors naming the key and
//! line); [`Config`] is the validated form the pipeline uses, in its own
//! units. The README lists every key with its default and unit.

use crate::decode::defrag::DefragLimits;
use crate::flow::FlowSettings;
use crate::flow::reassembly::ReassemblyLimits;
use crate::time::NANOS_PER_SEC;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub pipeline: RawPipeline,
    pub flow: RawFlow,
    pub reassembly: RawReassembly,
    pub fragments: RawFragments,
    pub output: RawOutput,
    pub tls: RawTls,
    pub inspection: RawInspection,
    pub devices: RawDevices,
    /// Where the text came from (for error messages and relative paths).
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Debug, Default, Clone)]
pub struct Origin {
    pub name: String,
    pub text: String,
    pub dir: Option<std::path::PathBuf>,
}

impl Origin {
    /// `file:line` of a byte offset.
    fn place(&self, offset: usize) -> String {
        let line = self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        format!("{}:{line}", self.name)
    }
}

/// The enterprise TLS-inspection proxy's CA(s).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawInspection {
    /// SHA-256 (64 hex digits) of an inspection CA certificate (DER) or of
    /// its SubjectPublicKeyInfo.
    pub ca_sha256: Vec<toml::Spanned<String>>,
    /// PEM files of inspection CA certificates (relative paths are taken
    /// from the config file's folder).
    pub ca_files: Vec<toml::Spanned<String>>,
}

/// Caps of the correlator's device tables (what they refuse is counted in
/// `stats.devices`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDevices {
    /// Addresses with an IP → MAC history.
    pub max_ips: usize,
    /// Bindings kept per address; the oldest is forgotten first.
    pub max_bindings_per_ip: usize,
    /// MACs remembered (host names, first seen).
    pub max_macs: usize,
}

impl Default for RawDevices {
    fn default() -> Self {
        let d = crate::correlate::devices::DeviceLimits::default();
        RawDevices {
            max_ips: d.max_ips,
            max_bindings_per_ip: d.max_bindings_per_ip,
            max_macs: d.max_macs,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// Parse TLS in every TCP flow (false: flow records only).
    pub enabled: bool,
}

impl Default for RawTls {
    fn default() -> Self {
        RawTls { enabled: true }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPipeline {
    /// Flow worker threads; 0 = everything on the reading thread.
    pub workers: usize,
    /// Batches each bounded queue holds before the reader waits.
    pub queue_batches: usize,
}

impl Default for RawPipeline {
    fn default() -> Self {
        RawPipeline {
            workers: 2,
            queue_batches: 8,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFlow {
    pub max_flows: usize,
    pub tcp_idle_timeout_s: u64,
    pub tcp_attempt_timeout_s: u64,
    pub tcp_closed_timeout_s: u64,
    pub udp_idle_timeout_s: u64,
    pub first_payload_bytes: usize,
}

impl Default for RawFlow {
    fn default() -> Self {
        let d = FlowSettings::default();
        RawFlow {
            max_flows: d.max_flows,
            tcp_idle_timeout_s: d.tcp_idle / NANOS_PER_SEC,
            tcp_attempt_timeout_s: d.tcp_attempt / NANOS_PER_SEC,
            tcp_closed_timeout_s: d.tcp_closed / NANOS_PER_SEC,
            udp_idle_timeout_s: d.udp_idle / NANOS_PER_SEC,
            first_payload_bytes: d.first_payload_bytes,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReassembly {
    pub max_segments: usize,
    pub max_bytes: usize,
}

impl Default for RawReassembly {
    fn default() -> Self {
        let d = ReassemblyLimits::default();
        RawReassembly {
            max_segments: d.max_segments,
            max_bytes: d.max_bytes,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFragments {
    pub max_datagrams: usize,
    pub max_bytes: usize,
    pub timeout_s: u64,
}

impl Default for RawFragments {
    fn default() -> Self {
        let d = DefragLimits::default();
        RawFragments {
            max_datagrams: d.max_datagrams,
            max_bytes: d.max_bytes,
            timeout_s: d.timeout / NANOS_PER_SEC,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOutput {
    /// Flush (and end a zstd frame) at least this often, milliseconds.
    pub flush_interval_ms: u64,
    /// zstd compression level for `.zst` outputs (1–19).
    pub zstd_level: i32,
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput {
            flush_interval_ms: 1000,
            zstd_level: 3,
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub workers: usize,
    pub queue_batches: usize,
    pub flow: FlowSettings,
    pub defrag: DefragLimits,
    pub flush_interval_ms: u64,
    pub zstd_level: i32,
    pub inspection: std::sync::Arc<crate::correlate::inspection::Inspection>,
    pub device_limits: crate::correlate::devices::DeviceLimits,
    /// Lease files, RADIUS sessions and MDM inventory (from the command line).
    pub device_inputs: std::sync::Arc<crate::correlate::devices::DeviceInputs>,
}

impl Default for Config {
    fn default() -> Self {
        RawConfig::default().validate().expect("defaults are valid")
    }
}

/// A configuration problem, with the key (and line, when the file has one).
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError(format!(
            "{key} = {v} is out of range: use a value from {lo} to {hi}"
        )));
    }
    Ok(v)
}

impl RawConfig {
    pub fn parse(text: &str, source: &str) -> Result<RawConfig, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| {
            let place = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("{source}:{line}")
                }
                None => source.to_string(),
            };
            ConfigError(format!("{place}: {}", e.message().trim()))
        })?;
        raw.origin = Origin {
            name: source.to_string(),
            text: text.to_string(),
            dir: None,
        };
        Ok(raw)
    }

    pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "{}: cannot read the config file: {e}",
                path.display()
            ))
        })?;
        let mut raw = Self::parse(&text, &path.display().to_string())?;
        raw.origin.dir = path.parent().map(Path::to_path_buf);
        Ok(raw)
    }

    fn inspection(&self) -> Result<crate::correlate::inspection::Inspection, ConfigError> {
        use crate::correlate::inspection::{Inspection, InspectionCa};
        let mut cas = Vec::new();
        for (i, h) in self.inspection.ca_sha256.iter().enumerate() {
            let v = h.get_ref().trim().to_ascii_lowercase().replace(':', "");
            if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError(format!(
                    "{}: inspection.ca_sha256[{i}] = {:?} is not a SHA-256: give 64 hex digits \
                     (`openssl x509 -outform der | sha256sum`)",
                    self.origin.place(h.span().start),
                    h.get_ref()
                )));
            }
            cas.push(InspectionCa::from_hash(v));
        }
        for (i, f) in self.inspection.ca_files.iter().enumerate() {
            let path = match &self.origin.dir {
                Some(d) => d.join(f.get_ref()),
                None => std::path::PathBuf::from(f.get_ref()),
            };
            let ca = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|pem| InspectionCa::from_pem(&pem))
                .map_err(|e| {
                    ConfigError(format!(
                        "{}: inspection.ca_files[{i}] = {:?}: {}: {e}",
                        self.origin.place(f.span().start),
                        f.get_ref(),
                        path.display()
                    ))
                })?;
            cas.extend(ca);
        }
        Ok(Inspection { cas })
    }

    pub fn validate(&self) -> Result<Config, ConfigError> {
        let f = &self.flow;
        let s = NANOS_PER_SEC;
        Ok(Config {
            workers: range("pipeline.workers", self.pipeline.workers, 0, 64)?,
            queue_batches: range(
                "pipeline.queue_batches",
                self.pipeline.queue_batches,
                1,
                1024,
            )?,
            flow: FlowSettings {
                max_flows: range("flow.max_flows", f.max_flows, 1, 100_000_000)?,
                tcp_idle: range("flow.tcp_idle_timeout_s", f.tcp_idle_timeout_s, 1, 86_400)? * s,
                tcp_attempt: range(
                    "flow.tcp_attempt_timeout_s",
                    f.tcp_attempt_timeout_s,
                    1,
                    86_400,
                )? * s,
                tcp_closed: range(
                    "flow.tcp_closed_timeout_s",
                    f.tcp_closed_timeout_s,
                    0,
                    3_600,
                )? * s,
                udp_idle: range("flow.udp_idle_timeout_s", f.udp_idle_timeout_s, 1, 86_400)? * s,
                first_payload_bytes: range(
                    "flow.first_payload_bytes",
                    f.first_payload_bytes,
                    0,
                    65_536,
                )?,
                tls: self.tls.enabled,
                reassembly: ReassemblyLimits {
                    max_segments: range(
                        "reassembly.max_segments",
                        self.reassembly.max_segments,
                        1,
                        4096,
                    )?,
                    max_bytes: range(
                        "reassembly.max_bytes",
                        self.reassembly.max_bytes,
                        1,
                        16 << 20,
                    )?,
                },
            },
            defrag: DefragLimits {
                max_datagrams: range(
                    "fragments.max_datagrams",
                    self.fragments.max_datagrams,
                    0,
                    1_000_000,
                )?,
                max_bytes: range("fragments.max_bytes", self.fragments.max_bytes, 0, 1 << 30)?,
                timeout: range("fragments.timeout_s", self.fragments.timeout_s, 1, 600)? * s,
            },
            flush_interval_ms: range(
                "output.flush_interval_ms",
                self.output.flush_interval_ms,
                10,
                1000,
            )?,
            zstd_level: range("output.zstd_level", self.output.zstd_level, 1, 19)?,
            inspection: std::sync::Arc::new(self.inspection()?),
            device_limits: crate::correlate::devices::DeviceLimits {
                max_ips: range("devices.max_ips", self.devices.max_ips, 1, 100_000_000)?,
                max_bindings_per_ip: range(
                    "devices.max_bindings_per_ip",
                    self.devices.max_bindings_per_ip,
                    1,
                    65_536,
                )?,
                max_macs: range("devices.max_macs", self.devices.max_macs, 1, 100_000_000)?,
            },
            device_inputs: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = RawConfig::parse("", "t.toml").unwrap().validate().unwrap();
        assert_eq!(c.workers, 2);
        assert_eq!(c.flow.tcp_idle, 300 * NANOS_PER_SEC);
        assert_eq!(c.flow.first_payload_bytes, 1024);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = RawConfig::parse("[flow]\nmax_flows = 10\ntcp_idle_timeout = 5\n", "b.toml")
            .unwrap_err();
        assert!(e.0.starts_with("b.toml:3:"), "{}", e.0);
        assert!(e.0.contains("tcp_idle_timeout"), "{}", e.0);
    }

    #[test]
    fn bad_value_names_key() {
        let e = RawConfig::parse("[flow]\nmax_flows = \"many\"\n", "c.toml").unwrap_err();
        assert!(e.0.starts_with("c.toml:2:"), "{}", e.0);
        let e = RawConfig::parse("[pipeline]\nworkers = 1000\n", "d.toml")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.0.contains("pipeline.workers = 1000"), "{}", e.0);
    }
}
