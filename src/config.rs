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
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Serialize: a test lists the numeric keys from the defaults, to hold the
/// README's table to every one of them.
#[derive(Debug, Default, Deserialize, Serialize)]
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
    pub detections: RawDetections,
    pub evidence: RawEvidence,
    pub capture: RawCapture,
    pub inputs: RawInputs,
    pub sensor: RawSensor,
    /// `[fleet]` (validated in place: `Config::fleet` is a checked copy).
    pub fleet: crate::fleet::Settings,
    /// `[kafka]`: Kafka export's topics and producer settings.
    pub kafka: crate::fleet::kafka::Settings,
    /// Where the text came from (for error messages and relative paths).
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Debug, Default, Clone)]
pub struct Origin {
    pub name: String,
    pub text: String,
    pub dir: Option<std::path::PathBuf>,
    /// Byte offset of each key the text sets, by dotted name.
    pub keys: std::collections::HashMap<String, usize>,
}

impl Origin {
    /// The line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The line that sets `key` (dotted), if the text sets it.
    fn key_line(&self, key: &str) -> Option<usize> {
        self.keys.get(key).map(|&o| self.line(o))
    }
}

/// The enterprise TLS-inspection proxy's CA(s).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawInspection {
    /// SHA-256 (64 hex digits) of an inspection CA certificate (DER) or of
    /// its SubjectPublicKeyInfo.
    pub ca_sha256: Vec<toml::Spanned<String>>,
    /// PEM files of inspection CA certificates (relative paths are taken
    /// from the config file's folder).
    pub ca_files: Vec<toml::Spanned<String>>,
    /// Addresses or ranges of the inspection proxy: a session to one of
    /// them whose chain is hidden counts as inspected (inferred).
    pub proxy_addresses: Vec<toml::Spanned<String>>,
    /// JA3S fingerprints (MD5 hex) of the proxy's ServerHello.
    pub proxy_ja3s: Vec<toml::Spanned<String>>,
    /// A JA3S seen with an inspection-CA chain on this many destinations
    /// is learnt as the proxy's (0: never learn).
    pub proxy_learn_destinations: u32,
    /// A CA outside the public roots that signs leaves for this many
    /// registrable domains is learnt as an inspection CA (0: never learn).
    pub learn_ca_domains: u32,
    /// PEM files of CAs to treat as public besides Mozilla's roots (a lab's
    /// test root, a partner's CA): never learnt as inspection CAs.
    pub public_ca_files: Vec<toml::Spanned<String>>,
    /// Inspecting proxies' own logs (as `--proxy-log`; relative paths are
    /// taken from the config file's folder).
    pub proxy_logs: Vec<toml::Spanned<String>>,
}

impl Default for RawInspection {
    fn default() -> Self {
        RawInspection {
            ca_sha256: Vec::new(),
            ca_files: Vec::new(),
            proxy_addresses: Vec::new(),
            proxy_ja3s: Vec::new(),
            proxy_learn_destinations: crate::detect::DetectSettings::default()
                .proxy_learn_destinations,
            learn_ca_domains: crate::detect::DetectSettings::default().learn_ca_domains as u32,
            public_ca_files: Vec::new(),
            proxy_logs: Vec::new(),
        }
    }
}

/// The detections' thresholds and lists (README, "Detections").
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDetections {
    pub enabled: bool,
    pub window_s: u64,
    pub rejection_min_handshakes: u32,
    pub bypass_domains: Vec<toml::Spanned<String>>,
    pub bypass_min_sessions: u32,
    pub bypass_min_quic_sessions: u32,
    pub bypass_min_inspected_elsewhere: u32,
    pub persistent_min_duration_s: u64,
    pub beacon_min_connections: u32,
    pub beacon_min_score: f64,
    pub background_quiet_s: u64,
    pub opaque_min_payload_bytes: u32,
    pub opaque_min_entropy_ratio: f64,
    pub os_channel_ports: Vec<u16>,
    pub os_channel_cidrs: Vec<toml::Spanned<String>>,
    pub os_channel_domains: Vec<toml::Spanned<String>>,
    pub min_score: u8,
    pub max_keys: usize,
    pub max_sessions_per_key: usize,
    pub max_flow_ids: usize,
}

impl Default for RawDetections {
    fn default() -> Self {
        let d = crate::detect::DetectSettings::default();
        let spanned = |v: Vec<String>| v.into_iter().map(|s| toml::Spanned::new(0..0, s)).collect();
        RawDetections {
            enabled: d.enabled,
            window_s: d.window / NANOS_PER_SEC,
            rejection_min_handshakes: d.rejection_min_handshakes,
            bypass_domains: Vec::new(),
            bypass_min_sessions: d.bypass_min_sessions,
            bypass_min_quic_sessions: d.bypass_min_quic_sessions,
            bypass_min_inspected_elsewhere: d.bypass_min_inspected_elsewhere,
            persistent_min_duration_s: d.persistent_min_duration / NANOS_PER_SEC,
            beacon_min_connections: d.beacon_min_connections,
            beacon_min_score: d.beacon_min_score,
            background_quiet_s: d.background_quiet / NANOS_PER_SEC,
            opaque_min_payload_bytes: d.opaque_min_payload_bytes,
            opaque_min_entropy_ratio: d.opaque_min_entropy_ratio,
            os_channel_ports: d.os_channel_ports,
            os_channel_cidrs: spanned(vec!["17.0.0.0/8".into()]),
            os_channel_domains: spanned(vec![
                "*.push.apple.com".into(),
                "*.push-apple.com.akadns.net".into(),
            ]),
            min_score: d.min_score,
            max_keys: d.max_keys,
            max_sessions_per_key: d.max_sessions_per_key,
            max_flow_ids: d.max_flow_ids,
        }
    }
}

/// Input files named in the config (`[inputs]`), read as the command-line
/// options of the same names are, before them; relative paths are taken
/// from the config file's folder.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawInputs {
    pub leases: Vec<String>,
    pub radius: Vec<String>,
    pub mdm: Vec<String>,
    pub apps: Vec<String>,
    pub app_events: Vec<String>,
    pub bypass_list: Vec<String>,
}

/// The `[inputs]` files, resolved against the config's folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputFiles {
    pub leases: Vec<std::path::PathBuf>,
    pub radius: Vec<std::path::PathBuf>,
    pub mdm: Vec<std::path::PathBuf>,
    pub apps: Vec<std::path::PathBuf>,
    pub app_events: Vec<std::path::PathBuf>,
    pub bypass_list: Vec<std::path::PathBuf>,
}

/// `--evidence` caps.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEvidence {
    pub max_packets_per_flow: u32,
    pub max_file_bytes: usize,
}

impl Default for RawEvidence {
    fn default() -> Self {
        let d = crate::detect::evidence::EvidenceLimits::default();
        RawEvidence {
            max_packets_per_flow: d.max_packets_per_flow,
            max_file_bytes: d.max_file_bytes,
        }
    }
}

/// Caps of the correlator's device tables (what they refuse is counted in
/// `stats.devices`).
#[derive(Debug, Deserialize, Serialize)]
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

#[derive(Debug, Deserialize, Serialize)]
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

#[derive(Debug, Deserialize, Serialize)]
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

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFlow {
    pub max_flows: usize,
    pub memcap: usize,
    pub tcp_idle_timeout_s: u64,
    pub tcp_attempt_timeout_s: u64,
    pub tcp_close_linger_ms: u64,
    pub tcp_closed_timeout_s: u64,
    pub udp_idle_timeout_s: u64,
    pub first_payload_bytes: usize,
}

impl Default for RawFlow {
    fn default() -> Self {
        let d = FlowSettings::default();
        RawFlow {
            max_flows: d.max_flows,
            memcap: d.memcap,
            tcp_idle_timeout_s: d.tcp_idle / NANOS_PER_SEC,
            tcp_attempt_timeout_s: d.tcp_attempt / NANOS_PER_SEC,
            tcp_close_linger_ms: d.tcp_close_linger / (NANOS_PER_SEC / 1000),
            tcp_closed_timeout_s: d.tcp_closed / NANOS_PER_SEC,
            udp_idle_timeout_s: d.udp_idle / NANOS_PER_SEC,
            first_payload_bytes: d.first_payload_bytes,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
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

#[derive(Debug, Deserialize, Serialize)]
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

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOutput {
    /// Flush (and end a zstd frame) at least this often, milliseconds.
    pub flush_interval_ms: u64,
    /// zstd compression level for `.zst` outputs (1–19).
    pub zstd_level: i32,
    /// Sensor output folder: close a file at this size (bytes)...
    pub rotate_bytes: u64,
    /// ... or at this age (seconds).
    pub rotate_interval_s: u64,
    /// Sensor output folder: file name prefix.
    pub prefix: String,
    /// Bytes of records the sensor's sink holds while writes fail.
    pub max_pending_bytes: usize,
    /// The output form: `jsonl`, `ocsf`, `ecs` or `eve`.
    pub format: crate::output::Format,
}

/// Who the sensor is, on every record (`observer`).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSensor {
    /// The sensor's name in records. [default: the host name]
    pub name: Option<String>,
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput {
            flush_interval_ms: 250,
            zstd_level: 3,
            rotate_bytes: 256 << 20,
            rotate_interval_s: 3600,
            prefix: "blindspot".into(),
            max_pending_bytes: 64 << 20,
            format: crate::output::Format::Jsonl,
        }
    }
}

/// Sensor mode (`blindspot capture`).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCapture {
    pub ring_block_size: usize,
    pub ring_blocks: usize,
    pub block_timeout_ms: u32,
    pub promiscuous: bool,
    pub stats_interval_s: u64,
    pub drain_timeout_s: u64,
    pub max_backlog_records: usize,
    pub user: Option<String>,
}

impl Default for RawCapture {
    fn default() -> Self {
        RawCapture {
            ring_block_size: 4 << 20,
            ring_blocks: 16,
            block_timeout_ms: 50,
            promiscuous: false,
            stats_interval_s: 60,
            drain_timeout_s: 15,
            max_backlog_records: 65536,
            user: None,
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
    /// The `[inputs]` files (loaded with the command line's by the caller).
    pub input_files: InputFiles,
    pub detect: std::sync::Arc<crate::detect::DetectSettings>,
    pub evidence_limits: crate::detect::evidence::EvidenceLimits,
    /// `inspection.proxy_logs`, relative to the config file's folder
    /// (loaded with `--proxy-log`'s files).
    pub proxy_logs: Vec<std::path::PathBuf>,
    /// `--evidence DIR` (command line only).
    pub evidence_dir: Option<std::path::PathBuf>,
    /// `--baseline FILE`, loaded (command line only).
    pub baseline: Option<std::sync::Arc<crate::detect::baseline::Baseline>>,
    pub capture: CaptureSettings,
    /// Draw replay's progress line and its end-of-run summary (set when
    /// stderr is a terminal).
    pub progress: bool,
    /// The output form (`output.format`, `--format`).
    pub format: crate::output::Format,
    /// `sensor.name`: the `observer` name on records (else the host name).
    pub sensor_name: Option<String>,
    /// `[fleet]`, with `--publish` (command line) in `publish`.
    pub fleet: crate::fleet::Settings,
    /// `[kafka]`, with the `kafka://` URLs of `fleet.publish` or
    /// `--publish` (command line) in `brokers`.
    pub kafka: crate::fleet::kafka::Settings,
}

impl Default for Config {
    fn default() -> Self {
        RawConfig::default().validate().expect("defaults are valid")
    }
}

/// Sensor settings (config `[capture]` and the output keys).
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureSettings {
    pub ring: crate::capture::live::RingSettings,
    pub stats_interval: std::time::Duration,
    pub drain_timeout: std::time::Duration,
    /// Records a worker holds while the correlator is behind; more are dropped and counted.
    pub max_backlog_records: usize,
    pub user: Option<String>,
    pub rotation: crate::output::rotate::Rotation,
    pub prefix: String,
    /// Bytes of records the sink holds while writes fail; then it stops taking more.
    pub max_pending_bytes: usize,
}

/// Every problem found in a configuration, each one line (`FILE:LINE:
/// message`, or `FILE: message` where no line applies), in line order.
/// A TOML syntax error is one problem (the parser stops there).
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl ConfigError {
    fn one(message: String) -> ConfigError {
        ConfigError(vec![message])
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Largest inspection CA file (PEM) read; a CA certificate is a few KiB.
pub const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// Whether `name` may be `capture.user` / `--user`: the user the sensor
/// becomes after opening the rings. An empty name, or one that resolves to
/// uid 0, would leave the sensor root, so both are refused. The error
/// follows `KEY = "NAME" ` in a message. A name that does not exist here is
/// left to the privilege drop, which says so.
pub fn check_user(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty: name a non-root user (such as blindspot), or leave it out".into());
    }
    #[cfg(unix)]
    if let Ok(Some(u)) = nix::unistd::User::from_name(name)
        && u.uid.is_root()
    {
        return Err(
            "is uid 0: the sensor would stay root; name a non-root user (such as blindspot)".into(),
        );
    }
    Ok(())
}

/// Problems found while validating, each with its line where known.
struct Problems<'a> {
    origin: &'a Origin,
    found: Vec<(Option<usize>, String)>,
}

impl<'a> Problems<'a> {
    fn new(origin: &'a Origin) -> Self {
        Problems {
            origin,
            found: Vec::new(),
        }
    }

    fn at(&mut self, line: Option<usize>, message: String) {
        let name = &self.origin.name;
        let text = match (name.is_empty(), line) {
            (true, _) => message,
            (false, Some(l)) => format!("{name}:{l}: {message}"),
            (false, None) => format!("{name}: {message}"),
        };
        self.found.push((line, text));
    }

    /// A problem with `key` (dotted), at its line when the file sets it.
    fn key(&mut self, key: &str, message: String) {
        let line = self.origin.key_line(key);
        self.at(line, message);
    }

    /// A problem with a value whose span the parser kept (0..0: a default).
    fn span(&mut self, span: std::ops::Range<usize>, message: String) {
        let line = (span.end != 0).then(|| self.origin.line(span.start));
        self.at(line, message);
    }

    /// `v` when it is within `lo..=hi`; else a problem, and `lo` (so that
    /// what is built from it stays in range).
    fn range<T: PartialOrd + std::fmt::Display + Copy>(
        &mut self,
        key: &str,
        v: T,
        lo: T,
        hi: T,
    ) -> T {
        if v < lo || v > hi {
            self.key(
                key,
                format!("{key} = {v} is out of range: use a value from {lo} to {hi}"),
            );
            return lo;
        }
        v
    }

    /// Every problem in line order (those without a line last).
    fn finish(mut self) -> Result<(), ConfigError> {
        if self.found.is_empty() {
            return Ok(());
        }
        self.found
            .sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
        Err(ConfigError(
            self.found.into_iter().map(|(_, m)| m).collect(),
        ))
    }
}

/// `nats://host:port` (or `tls://`) URLs: each one checked, none empty.
pub fn check_nats_urls(key: &str, urls: &[String]) -> Result<(), String> {
    for u in urls {
        let ok = ["nats://", "tls://"].iter().any(|p| {
            u.strip_prefix(p)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', ' ']))
        });
        if !ok {
            return Err(format!(
                "{key} {u:?} is not a NATS server URL: use nats://HOST:PORT (several: a list, or comma-separated on the command line)"
            ));
        }
    }
    Ok(())
}

impl RawConfig {
    fn fleet(&self, p: &mut Problems) -> crate::fleet::Settings {
        let f = &self.fleet;
        // `kafka://` URLs are Kafka export's (`kafka()`).
        let publish = crate::fleet::kafka::split_urls("fleet.publish", &f.publish)
            .map(|(nats, _)| nats)
            .unwrap_or_default();
        for (key, urls) in [("fleet.publish", &publish), ("fleet.servers", &f.servers)] {
            if let Err(e) = check_nats_urls(key, urls) {
                p.key(key, e);
            }
        }
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        for (key, v) in [
            ("fleet.stream", &f.stream),
            ("fleet.subject", &f.subject),
            ("fleet.durable", &f.durable),
        ] {
            if !name_ok(v) {
                p.key(
                    key,
                    format!("{key} = {v:?} must be 1 to 64 letters, digits, '-' or '_'"),
                );
            }
        }
        crate::fleet::Settings {
            replicas: p.range("fleet.replicas", f.replicas, 1, 5),
            partitions: p.range("fleet.partitions", f.partitions, 1, 1024),
            batch_records: p.range("fleet.batch_records", f.batch_records, 1, 4096),
            zstd_level: p.range("fleet.zstd_level", f.zstd_level, 0, 19),
            linger_ms: p.range("fleet.linger_ms", f.linger_ms, 1, 60_000),
            queue_records: p.range("fleet.queue_records", f.queue_records, 1, 100_000_000),
            ack_timeout_s: p.range("fleet.ack_timeout_s", f.ack_timeout_s, 1, 600),
            drain_timeout_s: p.range("fleet.drain_timeout_s", f.drain_timeout_s, 0, 3600),
            max_age_h: p.range("fleet.max_age_h", f.max_age_h, 0, 87_600),
            reorder_s: p.range("fleet.reorder_s", f.reorder_s, 0, 86_400),
            ack_wait_s: p.range("fleet.ack_wait_s", f.ack_wait_s, 6, 86_400),
            state_interval_s: p.range("fleet.state_interval_s", f.state_interval_s, 1, 86_400),
            state_max_keys: p.range("fleet.state_max_keys", f.state_max_keys, 1, 4096),
            state_wait_s: p.range("fleet.state_wait_s", f.state_wait_s, 0, 600),
            publish,
            ..f.clone()
        }
    }

    /// `[kafka]`, with the brokers of `fleet.publish`'s `kafka://` URLs.
    fn kafka(&self, p: &mut Problems) -> crate::fleet::kafka::Settings {
        use crate::fleet::kafka;
        let k = &self.kafka;
        let brokers = match kafka::split_urls("fleet.publish", &self.fleet.publish) {
            Ok((_, b)) => b,
            Err(e) => {
                p.key("fleet.publish", e);
                Vec::new()
            }
        };
        for (key, t) in [
            ("kafka.sessions_topic", &k.sessions_topic),
            ("kafka.records_topic", &k.records_topic),
        ] {
            if !kafka::topic_ok(t) {
                p.key(
                    key,
                    format!("{key} = {t:?} must be 1 to 249 letters, digits, '.', '_' or '-'"),
                );
            }
        }
        if !kafka::COMPRESSIONS.contains(&k.compression.as_str()) {
            p.key(
                "kafka.compression",
                format!(
                    "kafka.compression = {:?}: use one of {}",
                    k.compression,
                    kafka::COMPRESSIONS.join(", ")
                ),
            );
        }
        kafka::Settings {
            brokers,
            linger_ms: p.range("kafka.linger_ms", k.linger_ms, 0, 60_000),
            batch_records: p.range("kafka.batch_records", k.batch_records, 1, 1_000_000),
            queue_records: p.range("kafka.queue_records", k.queue_records, 1, 10_000_000),
            message_timeout_s: p.range("kafka.message_timeout_s", k.message_timeout_s, 1, 3600),
            drain_timeout_s: p.range("kafka.drain_timeout_s", k.drain_timeout_s, 0, 3600),
            ..k.clone()
        }
    }

    fn sensor_name(&self, p: &mut Problems) -> Option<String> {
        let n = self.sensor.name.as_ref()?;
        if n.is_empty() || n.len() > 255 || n.chars().any(char::is_control) {
            p.key(
                "sensor.name",
                format!(
                    "sensor.name = {n:?} must be 1 to 255 characters, none a control character"
                ),
            );
            return None;
        }
        Some(n.clone())
    }

    fn capture_settings(&self, p: &mut Problems) -> CaptureSettings {
        let c = &self.capture;
        let o = &self.output;
        let mut block = c.ring_block_size;
        // A block holds at least one whole frame of 64 KiB (GRO/loopback sizes).
        if !block.is_power_of_two() || block < 1 << 17 {
            p.key(
                "capture.ring_block_size",
                format!(
                    "capture.ring_block_size = {block} must be a power of two of at least 131072 (a block holds a whole 64 KiB frame): use 1048576 or 4194304, say"
                ),
            );
            block = 1 << 17;
        }
        let block = p.range("capture.ring_block_size", block, 1 << 17, 1 << 30);
        let blocks = p.range("capture.ring_blocks", c.ring_blocks, 2, 65_536);
        if (block as u128) * (blocks as u128) > 16u128 << 30 {
            let key = if self.origin.key_line("capture.ring_blocks").is_some() {
                "capture.ring_blocks"
            } else {
                "capture.ring_block_size"
            };
            p.key(
                key,
                format!(
                    "capture.ring_block_size × capture.ring_blocks = {} bytes is over 16 GiB per ring: lower one of them",
                    block as u128 * blocks as u128
                ),
            );
        }
        if o.prefix.is_empty() || o.prefix.contains(['/', '\\', '\0']) {
            p.key(
                "output.prefix",
                format!(
                    "output.prefix = {:?} must be a non-empty file name part without '/'",
                    o.prefix
                ),
            );
        }
        if let Some(u) = &c.user
            && let Err(e) = check_user(u)
        {
            p.key("capture.user", format!("capture.user = {u:?} {e}"));
        }
        let s = std::time::Duration::from_secs;
        CaptureSettings {
            ring: crate::capture::live::RingSettings {
                block_size: block,
                blocks,
                block_timeout_ms: p.range(
                    "capture.block_timeout_ms",
                    c.block_timeout_ms,
                    1,
                    10_000,
                ),
                promiscuous: c.promiscuous,
            },
            stats_interval: s(p.range("capture.stats_interval_s", c.stats_interval_s, 1, 86_400)),
            drain_timeout: s(p.range("capture.drain_timeout_s", c.drain_timeout_s, 1, 3_600)),
            max_backlog_records: p.range(
                "capture.max_backlog_records",
                c.max_backlog_records,
                1,
                100_000_000,
            ),
            user: c.user.clone(),
            rotation: crate::output::rotate::Rotation {
                max_bytes: p.range("output.rotate_bytes", o.rotate_bytes, 4096, 1 << 40),
                max_age: s(p.range("output.rotate_interval_s", o.rotate_interval_s, 1, 604_800)),
            },
            prefix: o.prefix.clone(),
            max_pending_bytes: p.range(
                "output.max_pending_bytes",
                o.max_pending_bytes,
                1 << 20,
                1 << 34,
            ),
        }
    }

    pub fn parse(text: &str, source: &str) -> Result<RawConfig, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| {
            let place = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("{source}:{line}")
                }
                None => source.to_string(),
            };
            ConfigError::one(format!("{place}: {}", e.message().trim()))
        })?;
        raw.origin = Origin {
            name: source.to_string(),
            text: text.to_string(),
            dir: None,
            keys: key_offsets(text),
        };
        Ok(raw)
    }

    /// The `[inputs]` paths, relative ones taken from the config's folder.
    fn input_files(&self) -> InputFiles {
        let resolve = |l: &[String]| -> Vec<std::path::PathBuf> {
            l.iter()
                .map(|f| match &self.origin.dir {
                    Some(d) => d.join(f),
                    None => std::path::PathBuf::from(f),
                })
                .collect()
        };
        let i = &self.inputs;
        InputFiles {
            leases: resolve(&i.leases),
            radius: resolve(&i.radius),
            mdm: resolve(&i.mdm),
            apps: resolve(&i.apps),
            app_events: resolve(&i.app_events),
            bypass_list: resolve(&i.bypass_list),
        }
    }

    /// Reads and parses a config file of at most [`MAX_CONFIG_BYTES`].
    pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
        let bytes = crate::bounded::read_file(
            path,
            &crate::bounded::Bound {
                limit: MAX_CONFIG_BYTES,
                what: "a TOML config file",
                fix: "check that the path names the config (a config is a few KiB)",
            },
        )
        .map_err(ConfigError::one)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            ConfigError::one(format!(
                "{}: not UTF-8 text (bad byte at offset {}): a config is a TOML file",
                path.display(),
                e.utf8_error().valid_up_to()
            ))
        })?;
        let mut raw = Self::parse(&text, &path.display().to_string())?;
        raw.origin.dir = path.parent().map(Path::to_path_buf);
        Ok(raw)
    }

    /// `inspection.public_ca_files`: (subject, key id) of each certificate.
    fn public_cas(&self, p: &mut Problems) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for (i, f) in self.inspection.public_ca_files.iter().enumerate() {
            match self.read_ca_file(f.get_ref(), "a PEM file of public CA certificates") {
                Ok(cas) => out.extend(cas.into_iter().filter_map(|c| Some((c.subject?, c.key_id)))),
                Err(e) => p.span(
                    f.span(),
                    format!("inspection.public_ca_files[{i}] = {:?}: {e}", f.get_ref()),
                ),
            }
        }
        out
    }

    /// The certificates of a PEM file named in the config (relative to it).
    fn read_ca_file(
        &self,
        name: &str,
        what: &'static str,
    ) -> Result<Vec<crate::correlate::inspection::InspectionCa>, String> {
        let path = match &self.origin.dir {
            Some(d) => d.join(name),
            None => std::path::PathBuf::from(name),
        };
        let bound = crate::bounded::Bound {
            limit: MAX_CA_FILE_BYTES,
            what,
            fix: "give a file with only those CA certificates",
        };
        // Read errors start with the path; PEM errors do not.
        crate::bounded::read_file(&path, &bound).and_then(|pem| {
            crate::correlate::inspection::InspectionCa::from_pem(&pem)
                .map_err(|e| format!("{}: {e}", path.display()))
        })
    }

    fn inspection(&self, p: &mut Problems) -> crate::correlate::inspection::Inspection {
        use crate::correlate::inspection::{Inspection, InspectionCa};
        let mut cas = Vec::new();
        for (i, h) in self.inspection.ca_sha256.iter().enumerate() {
            let v = h.get_ref().trim().to_ascii_lowercase().replace(':', "");
            if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                p.span(
                    h.span(),
                    format!(
                        "inspection.ca_sha256[{i}] = {:?} is not a SHA-256: give 64 hex digits \
                         (`openssl x509 -outform der | sha256sum`)",
                        h.get_ref()
                    ),
                );
                continue;
            }
            cas.push(InspectionCa::from_hash(v));
        }
        for (i, f) in self.inspection.ca_files.iter().enumerate() {
            match self.read_ca_file(f.get_ref(), "a PEM file of inspection CA certificates") {
                Ok(ca) => cas.extend(ca),
                Err(e) => p.span(
                    f.span(),
                    format!("inspection.ca_files[{i}] = {:?}: {e}", f.get_ref()),
                ),
            }
        }
        Inspection { cas }
    }

    /// Parses each entry of a list of strings; each bad one is a problem
    /// naming the key, index and line.
    fn list<T>(
        &self,
        p: &mut Problems,
        key: &str,
        items: &[toml::Spanned<String>],
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let mut good = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            match parse(v.get_ref()) {
                Ok(t) => good.push(t),
                Err(e) => p.span(v.span(), format!("{key}[{i}]: {e}")),
            }
        }
        good
    }

    fn detect(&self, p: &mut Problems) -> crate::detect::DetectSettings {
        use crate::detect::names::{Cidr, DomainPattern};
        let d = &self.detections;
        let s = NANOS_PER_SEC;
        let ratio = |p: &mut Problems, key: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                v
            } else {
                p.key(
                    key,
                    format!("{key} = {v} is out of range: use a value from 0 to 1"),
                );
                0.0
            }
        };
        let ja3s = self.list(
            p,
            "inspection.proxy_ja3s",
            &self.inspection.proxy_ja3s,
            |v| {
                let v = v.trim().to_ascii_lowercase();
                if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(v)
                } else {
                    Err(format!("{v:?} is not a JA3S: give its 32-hex-digit MD5"))
                }
            },
        );
        for (i, &port) in d.os_channel_ports.iter().enumerate() {
            if port == 0 {
                p.key(
                    "detections.os_channel_ports",
                    format!(
                        "detections.os_channel_ports[{i}] = 0 is out of range: use a value from 1 to 65535"
                    ),
                );
            }
        }
        let learn = p.range(
            "inspection.proxy_learn_destinations",
            self.inspection.proxy_learn_destinations,
            0,
            1_000_000,
        );
        crate::detect::DetectSettings {
            enabled: d.enabled,
            window: p.range("detections.window_s", d.window_s, 60, 7 * 86_400) * s,
            rejection_min_handshakes: p.range(
                "detections.rejection_min_handshakes",
                d.rejection_min_handshakes,
                1,
                10_000,
            ),
            bypass_domains: self.list(
                p,
                "detections.bypass_domains",
                &d.bypass_domains,
                DomainPattern::parse,
            ),
            bypass_min_sessions: p.range(
                "detections.bypass_min_sessions",
                d.bypass_min_sessions,
                1,
                10_000,
            ),
            bypass_min_quic_sessions: p.range(
                "detections.bypass_min_quic_sessions",
                d.bypass_min_quic_sessions,
                1,
                10_000,
            ),
            bypass_min_inspected_elsewhere: p.range(
                "detections.bypass_min_inspected_elsewhere",
                d.bypass_min_inspected_elsewhere,
                1,
                10_000,
            ),
            persistent_min_duration: p.range(
                "detections.persistent_min_duration_s",
                d.persistent_min_duration_s,
                1,
                7 * 86_400,
            ) * s,
            beacon_min_connections: p.range(
                "detections.beacon_min_connections",
                d.beacon_min_connections,
                3,
                100_000,
            ),
            beacon_min_score: ratio(p, "detections.beacon_min_score", d.beacon_min_score),
            background_quiet: p.range(
                "detections.background_quiet_s",
                d.background_quiet_s,
                1,
                86_400,
            ) * s,
            opaque_min_payload_bytes: p.range(
                "detections.opaque_min_payload_bytes",
                d.opaque_min_payload_bytes,
                1,
                65_536,
            ),
            opaque_min_entropy_ratio: ratio(
                p,
                "detections.opaque_min_entropy_ratio",
                d.opaque_min_entropy_ratio,
            ),
            os_channel_ports: d.os_channel_ports.clone(),
            os_channel_cidrs: self.list(
                p,
                "detections.os_channel_cidrs",
                &d.os_channel_cidrs,
                Cidr::parse,
            ),
            os_channel_domains: self.list(
                p,
                "detections.os_channel_domains",
                &d.os_channel_domains,
                DomainPattern::parse,
            ),
            proxy_addresses: self.list(
                p,
                "inspection.proxy_addresses",
                &self.inspection.proxy_addresses,
                Cidr::parse,
            ),
            inspection_configured: !(self.inspection.ca_sha256.is_empty()
                && self.inspection.ca_files.is_empty()
                && self.inspection.proxy_addresses.is_empty()
                && ja3s.is_empty()),
            proxy_ja3s: ja3s,
            proxy_learn_destinations: if learn == 0 { u32::MAX } else { learn },
            learn_ca_domains: p.range(
                "inspection.learn_ca_domains",
                self.inspection.learn_ca_domains,
                0,
                1000,
            ) as usize,
            public_cas: self.public_cas(p),
            min_score: p.range("detections.min_score", d.min_score, 0, 100),
            max_keys: p.range("detections.max_keys", d.max_keys, 1, 100_000_000),
            max_sessions_per_key: p.range(
                "detections.max_sessions_per_key",
                d.max_sessions_per_key,
                3,
                1_000_000,
            ),
            max_flow_ids: p.range("detections.max_flow_ids", d.max_flow_ids, 1, 100_000),
        }
    }

    /// The validated configuration, or every problem found (in line order).
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let mut problems = Problems::new(&self.origin);
        let p = &mut problems;
        let f = &self.flow;
        let s = NANOS_PER_SEC;
        let config = Config {
            workers: p.range("pipeline.workers", self.pipeline.workers, 0, 64),
            queue_batches: p.range(
                "pipeline.queue_batches",
                self.pipeline.queue_batches,
                1,
                1024,
            ),
            flow: FlowSettings {
                max_flows: p.range("flow.max_flows", f.max_flows, 1, 100_000_000),
                memcap: p.range("flow.memcap", f.memcap, 1 << 20, 1 << 40),
                tcp_idle: p.range("flow.tcp_idle_timeout_s", f.tcp_idle_timeout_s, 1, 86_400) * s,
                tcp_attempt: p.range(
                    "flow.tcp_attempt_timeout_s",
                    f.tcp_attempt_timeout_s,
                    1,
                    86_400,
                ) * s,
                tcp_close_linger: p.range(
                    "flow.tcp_close_linger_ms",
                    f.tcp_close_linger_ms,
                    0,
                    5_000,
                ) * (s / 1000),
                tcp_closed: p.range(
                    "flow.tcp_closed_timeout_s",
                    f.tcp_closed_timeout_s,
                    0,
                    3_600,
                ) * s,
                udp_idle: p.range("flow.udp_idle_timeout_s", f.udp_idle_timeout_s, 1, 86_400) * s,
                first_payload_bytes: p.range(
                    "flow.first_payload_bytes",
                    f.first_payload_bytes,
                    0,
                    65_536,
                ),
                tls: self.tls.enabled,
                reassembly: ReassemblyLimits {
                    max_segments: p.range(
                        "reassembly.max_segments",
                        self.reassembly.max_segments,
                        1,
                        4096,
                    ),
                    max_bytes: p.range(
                        "reassembly.max_bytes",
                        self.reassembly.max_bytes,
                        1,
                        16 << 20,
                    ),
                },
            },
            defrag: DefragLimits {
                // 0: no reassembly; every fragment is counted in
                // stats.fragments.dropped_cap and dropped.
                max_datagrams: p.range(
                    "fragments.max_datagrams",
                    self.fragments.max_datagrams,
                    0,
                    1_000_000,
                ),
                max_bytes: p.range("fragments.max_bytes", self.fragments.max_bytes, 1, 1 << 30),
                timeout: p.range("fragments.timeout_s", self.fragments.timeout_s, 1, 600) * s,
            },
            flush_interval_ms: p.range(
                "output.flush_interval_ms",
                self.output.flush_interval_ms,
                10,
                1000,
            ),
            zstd_level: p.range("output.zstd_level", self.output.zstd_level, 1, 19),
            capture: self.capture_settings(p),
            progress: false,
            format: self.output.format,
            sensor_name: self.sensor_name(p),
            fleet: self.fleet(p),
            kafka: self.kafka(p),
            inspection: std::sync::Arc::new(self.inspection(p)),
            device_limits: crate::correlate::devices::DeviceLimits {
                max_ips: p.range("devices.max_ips", self.devices.max_ips, 1, 100_000_000),
                max_bindings_per_ip: p.range(
                    "devices.max_bindings_per_ip",
                    self.devices.max_bindings_per_ip,
                    1,
                    65_536,
                ),
                max_macs: p.range("devices.max_macs", self.devices.max_macs, 1, 100_000_000),
            },
            device_inputs: Default::default(),
            input_files: self.input_files(),
            proxy_logs: self
                .inspection
                .proxy_logs
                .iter()
                .map(|f| match &self.origin.dir {
                    Some(d) => d.join(f.get_ref()),
                    None => std::path::PathBuf::from(f.get_ref()),
                })
                .collect(),
            detect: std::sync::Arc::new(self.detect(p)),
            evidence_limits: crate::detect::evidence::EvidenceLimits {
                max_packets_per_flow: p.range(
                    "evidence.max_packets_per_flow",
                    self.evidence.max_packets_per_flow,
                    1,
                    100_000,
                ),
                max_file_bytes: p.range(
                    "evidence.max_file_bytes",
                    self.evidence.max_file_bytes,
                    1024,
                    1 << 30,
                ),
            },
            evidence_dir: None,
            baseline: None,
        };
        problems.finish().map(|()| config)
    }
}

/// Byte offset of each key the text sets, by dotted name (`flow.max_flows`):
/// where a problem with a plain value is reported. Only called on text that
/// parsed.
fn key_offsets(text: &str) -> std::collections::HashMap<String, usize> {
    let mut keys = std::collections::HashMap::new();
    let Ok(root) = toml::de::DeTable::parse(text) else {
        return keys;
    };
    for (k, v) in root.get_ref() {
        keys.insert(k.get_ref().to_string(), k.span().start);
        if let toml::de::DeValue::Table(t) = v.get_ref() {
            for (k2, _) in t {
                keys.insert(format!("{}.{}", k.get_ref(), k2.get_ref()), k2.span().start);
            }
        }
    }
    keys
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
    fn capture_and_rotation_keys_are_read_and_checked() {
        let ok = "[capture]\nring_block_size = 1048576\nring_blocks = 8\nstats_interval_s = 5\nuser = \"blindspot\"\n[output]\nrotate_bytes = 1000000\nrotate_interval_s = 60\nprefix = \"edge1\"\n";
        let c = RawConfig::parse(ok, "s.toml").unwrap().validate().unwrap();
        assert_eq!(c.capture.ring.block_size, 1 << 20);
        assert_eq!(c.capture.ring.blocks, 8);
        assert_eq!(c.capture.stats_interval, std::time::Duration::from_secs(5));
        assert_eq!(c.capture.user.as_deref(), Some("blindspot"));
        assert_eq!(c.capture.rotation.max_bytes, 1_000_000);
        assert_eq!(c.capture.prefix, "edge1");
        let bad = |text: &str| {
            RawConfig::parse(text, "s.toml")
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        let e = bad("[capture]\nring_block_size = 100000\n");
        assert!(
            e.contains("capture.ring_block_size = 100000 must be a power of two"),
            "{e}"
        );
        let e = bad("[capture]\nring_block_size = 1073741824\nring_blocks = 64\n");
        assert!(e.contains("over 16 GiB per ring"), "{e}");
        let e = bad("[output]\nprefix = \"../x\"\n");
        assert!(e.contains("output.prefix"), "{e}");
        let e = bad("[capture]\nstats_interval_s = 0\n");
        assert!(
            e.contains("capture.stats_interval_s = 0 is out of range"),
            "{e}"
        );
    }

    #[test]
    fn capture_user_is_checked_once_for_config_and_command_line() {
        assert!(check_user("").unwrap_err().starts_with("is empty"));
        assert!(check_user("root").unwrap_err().starts_with("is uid 0"));
        // Not root, or not on this machine: left to the privilege drop.
        assert_eq!(check_user("nobody"), Ok(()));
        assert_eq!(check_user("no-such-user-here"), Ok(()));
    }

    #[test]
    fn problems_without_a_line_come_last_and_defaults_have_none() {
        let text = "[flow]\nmax_flows = 0\n[pipeline]\nworkers = 99\n";
        let mut raw = RawConfig::parse(text, "p.toml").unwrap();
        // A default that a later key makes wrong has no line of its own.
        raw.capture.ring_blocks = 1;
        let e = raw.validate().unwrap_err();
        assert_eq!(
            e.0,
            [
                "p.toml:2: flow.max_flows = 0 is out of range: use a value from 1 to 100000000",
                "p.toml:4: pipeline.workers = 99 is out of range: use a value from 0 to 64",
                "p.toml: capture.ring_blocks = 1 is out of range: use a value from 2 to 65536",
            ]
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = RawConfig::parse("[flow]\nmax_flows = 10\ntcp_idle_timeout = 5\n", "b.toml")
            .unwrap_err();
        assert!(e.to_string().starts_with("b.toml:3:"), "{}", e.to_string());
        assert!(
            e.to_string().contains("tcp_idle_timeout"),
            "{}",
            e.to_string()
        );
    }

    #[test]
    fn bad_value_names_key() {
        let e = RawConfig::parse("[flow]\nmax_flows = \"many\"\n", "c.toml").unwrap_err();
        assert!(e.to_string().starts_with("c.toml:2:"), "{}", e.to_string());
        let e = RawConfig::parse("[pipeline]\nworkers = 1000\n", "d.toml")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            e.to_string().contains("pipeline.workers = 1000"),
            "{}",
            e.to_string()
        );
    }

    #[test]
    fn detection_lists_are_checked_with_key_index_and_line() {
        let text =
            "[detections]\nwindow_s = 600\nbypass_domains = [\"bank.example\",\n  \"bad name\"]\n";
        let e = RawConfig::parse(text, "e.toml")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("e.toml:4: detections.bypass_domains[1]:"),
            "{}",
            e.to_string()
        );
        let e = RawConfig::parse(
            "[inspection]\nproxy_addresses = [\"10.0.0.0/40\"]\n",
            "f.toml",
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("f.toml:2: inspection.proxy_addresses[0]:"),
            "{}",
            e.to_string()
        );
        let e = RawConfig::parse("[detections]\nbeacon_min_score = 1.5\n", "g.toml")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            e.to_string().contains("detections.beacon_min_score = 1.5"),
            "{}",
            e.to_string()
        );
        let e = RawConfig::parse("[detections]\nwindow = 5\n", "h.toml").unwrap_err();
        assert!(
            e.to_string().starts_with("h.toml:2:") && e.to_string().contains("window"),
            "{}",
            e.to_string()
        );
        let c = RawConfig::parse(
            "[inspection]\nproxy_addresses = [\"10.77.0.1\"]\n[detections]\nwindow_s = 600\nbypass_domains = [\"*.apple.com\"]\n",
            "ok.toml",
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(c.detect.window, 600 * NANOS_PER_SEC);
        assert!(c.detect.proxy_addresses[0].contains("10.77.0.1".parse().unwrap()));
        assert!(crate::detect::names::any_matches(
            &c.detect.bypass_domains,
            "x.apple.com"
        ));
        // Defaults: Apple push is an OS channel.
        let d = Config::default();
        assert_eq!(d.detect.os_channel_ports, vec![5223]);
        assert!(d.detect.os_channel_cidrs[0].contains("17.57.144.10".parse().unwrap()));
    }
}
