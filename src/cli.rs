//! The command line: every subcommand, option and its help text (clap).
//! `main.rs` turns them into runs; nothing here acts.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "blindspot",
    version,
    about = "Passive sensor for TLS-inspection blind spots and opaque encrypted channels (MITRE ATT&CK Mobile AN1726, AN1717)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

// Parsed once per run: the size of the replay variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Cmd {
    /// Read capture files and write one record per flow as JSON Lines.
    ///
    /// Exit status: 0 when every file was read whole; 1 for unusable input
    /// (not a capture, an empty file), a bad config or an output error; 3
    /// when a capture was truncated or damaged, compressed or not, however
    /// short (the records up to the damage are written, and a warning names
    /// the file and byte offset).
    Replay {
        /// pcap or pcapng files (plain, .gz or .zst), read in the order given as one timeline; `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Where records go: `-` for standard output, or a file path; a path ending in `.zst` is written zstd-compressed as independent frames, one ending in `.gz` gzip-compressed, both flushed at least once a second.
        #[arg(short, long, value_name = "PATH", default_value = "-")]
        output: String,
        /// Flow worker threads. 0 runs every stage on one thread with no channels. [default: pipeline.workers from the config, 2]
        #[arg(short, long, value_name = "N")]
        workers: Option<usize>,
        /// TOML configuration file (see the README for every key and its default). [default: built-in defaults]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        inputs: InputArgs,
        /// Baseline from `blindspot baseline build`: long uninspected sessions it explains are not reported, and its facts are shown in each detection's context. [default: none; detections say `no_baseline`]
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
        #[command(flatten)]
        form: FormatArg,
        #[command(flatten)]
        publish: PublishArg,
        /// Write, for each detection, a pcap of the first packets of its flows into this folder (created if needed), named `PATTERN-DETECTION_ID.pcap` as in the record's `evidence_file`; written after the replay, from a second read of the inputs. [default: none]
        #[arg(long, value_name = "DIR")]
        evidence: Option<PathBuf>,
    },
    /// Capture live from network interfaces (sensor mode) and write records until SIGTERM or SIGINT.
    ///
    /// The records are those of `replay`, plus a `coverage` and a `stats`
    /// record every `capture.stats_interval_s`. Needs CAP_NET_RAW (for
    /// --promiscuous too) to open the interfaces; then drops
    /// every capability (and becomes `--user` when started as root).
    /// SIGHUP reopens the output. Exit status: 0 after a clean drain; 1 for
    /// bad configuration, an interface or output that cannot be opened, or a
    /// drain that did not finish within `capture.drain_timeout_s`.
    Capture {
        #[command(flatten)]
        sensor: SensorArgs,
        /// Worker threads, each with its own ring per interface (AF_PACKET fanout by flow hash). [default: pipeline.workers from the config, 2]
        #[arg(short, long, value_name = "N")]
        workers: Option<usize>,
        /// TOML configuration file ([capture] and [output] keys; see the README). [default: built-in defaults]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Put the interfaces in promiscuous mode (not needed on a SPAN port that sends only mirrored traffic). [default: capture.promiscuous, false]
        #[arg(long)]
        promiscuous: bool,
        /// After opening the interfaces, become this user (when started as root); an empty name or one that is uid 0 is refused. [default: capture.user, or stay]
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        #[command(flatten)]
        inputs: InputArgs,
        /// Baseline from `blindspot baseline build` (as for replay).
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
        #[command(flatten)]
        form: FormatArg,
        #[command(flatten)]
        publish: PublishArg,
    },
    /// Fleet mode: read the sessions sensors published (`--publish`) from NATS JetStream and write the detections of every device across the fleet, each with the sensors that saw its evidence (`observers`).
    ///
    /// Durable consumers (one per partition this process owns) resume where
    /// the last run acknowledged. Exit status: 0 after `--until-idle` or
    /// SIGTERM/SIGINT; 1 when the servers, the stream or the output fail.
    Correlate {
        /// NATS server URLs, comma-separated. [default: fleet.servers from the config]
        #[arg(long, value_name = "URLS")]
        from: Option<String>,
        /// This process's share of the partitions, `I/N` (0-based): the partitions p with p % N == I. [default: 0/1, all]
        #[arg(long, value_name = "I/N", default_value = "0/1")]
        partitions: String,
        /// Stop once the stream has had nothing new for this many seconds: evaluate every open window, write, acknowledge, exit. [default: run until SIGTERM]
        #[arg(long, value_name = "SECONDS")]
        until_idle: Option<f64>,
        /// Where detections go: `-` or a file path (`.zst`, `.gz` as for replay).
        #[arg(short, long, value_name = "PATH", default_value = "-")]
        output: String,
        /// TOML configuration file ([fleet], [detections], [inputs]; the same detection settings as the sensors'). [default: built-in defaults]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        inputs: InputArgs,
        /// Baseline from `blindspot baseline build` (as for replay).
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
        #[command(flatten)]
        form: FormatArg,
    },
    /// Baseline commands: learn what is normal per client fingerprint and destination.
    Baseline {
        #[command(subcommand)]
        cmd: BaselineCmd,
    },
    /// A page a person reads from records (JSON Lines, plain, .zst or .gz): detections by severity with evidence and limits, devices, apps, beacon and rejection timelines, the coverage record's blind spots, destinations' inspection state. One self-contained HTML file (no script, no network) with `-o FILE`; Markdown tables on stdout without `-o` or with `-o -`.
    Report {
        /// Record files, read in order.
        #[arg(required = true, value_name = "RECORDS")]
        files: Vec<PathBuf>,
        /// The HTML file to write; `-` or absent: Markdown on stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
}

/// Fleet mode's publishing.
#[derive(clap::Args)]
pub struct PublishArg {
    /// Publish sessions, device records, coverage and stats to NATS JetStream for `blindspot correlate` (fleet mode): server URLs, comma-separated (`nats://a:4222,nats://b:4222`); `kafka://HOST:PORT` URLs write the same records to Kafka topics (a build with the `kafka` feature; see "Kafka export"). May be given twice (NATS and Kafka). Local outputs are written as without it. [default: fleet.publish from the config, none]
    #[arg(long, value_name = "URLS")]
    pub publish: Vec<String>,
}

/// The output form.
#[derive(clap::Args)]
pub struct FormatArg {
    /// Output form: `jsonl` (blindspot's records, the richest), `ocsf` (OCSF 1.8.0 events), `ecs` (Elastic Common Schema 8.17), `eve` (Suricata EVE JSON); see the README's "Output forms". [default: output.format from the config, jsonl]
    #[arg(long, value_name = "FORM")]
    pub format: Option<blindspot::output::Format>,
}

/// What `capture` reads and where its records go.
#[derive(clap::Args)]
pub struct SensorArgs {
    /// Interface to capture on (repeatable: each is read by every worker through its own ring).
    #[arg(short = 'i', long = "interface", required = true, value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// Where records go: `-` for standard output; a folder (existing, or a path ending in `/`) for rotated files `PREFIX-YYYYMMDDTHHMMSSZ-NNNNNN.jsonl.zst` (see the README); any other path is one file, appended to and reopened on SIGHUP (zstd when it ends in `.zst`).
    #[arg(short, long, value_name = "PATH", default_value = "-")]
    pub output: String,
    /// Write plain JSON Lines files into an output folder. [default: zstd]
    #[arg(long)]
    pub plain: bool,
    /// Read through libpcap instead of AF_PACKET (needs a build with `--features libpcap`; one worker).
    #[arg(long)]
    pub pcap: bool,
    /// BPF filter in tcpdump syntax, compiled by libpcap (implies --pcap).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Stop after this many seconds, as on SIGTERM. [default: run until a signal]
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
}

/// Device and app knowledge from files (each option repeatable).
#[derive(clap::Args)]
pub struct InputArgs {
    /// DHCP lease file: ISC dhcpd `dhcpd.leases`, Kea memfile CSV or dnsmasq `dnsmasq.leases` (the format is recognised from the content).
    #[arg(long = "leases", value_name = "FILE")]
    pub leases: Vec<PathBuf>,
    /// FreeRADIUS `detail` accounting file: ties Calling-Station-Id MACs to the identity that authenticated.
    #[arg(long = "radius", value_name = "FILE")]
    pub radius: Vec<PathBuf>,
    /// MDM inventory: blindspot's JSON shape, a Jamf Pro mobile-device export or a Microsoft Intune managedDevices export.
    #[arg(long = "mdm", value_name = "FILE")]
    pub mdm: Vec<PathBuf>,
    /// App catalog: blindspot's JSON shape or MobSF iOS report JSON.
    #[arg(long = "apps", value_name = "FILE")]
    pub apps: Vec<PathBuf>,
    /// App lifecycle events, JSON Lines (foreground / background / suspended per device and bundle ID).
    #[arg(long = "app-events", value_name = "FILE")]
    pub app_events: Vec<PathBuf>,
    /// Bypass list: one domain per line (`*.example.com` for a domain and its subdomains), `#` comments; joins `detections.bypass_domains`.
    #[arg(long = "bypass-list", value_name = "FILE")]
    pub bypass_list: Vec<PathBuf>,
    /// An inspecting proxy's own log: Squid access log (the README's logformat), mitmproxy addon JSON Lines, PAN-OS DECRYPTION CSV, Zscaler NSS web JSON, Netskope transaction JSON or FortiGate type=ssl lines; each entry is joined to its wire session and cited by detections. Also `inspection.proxy_logs` in the config.
    #[arg(long = "proxy-log", value_name = "FILE")]
    pub proxy_log: Vec<PathBuf>,
    /// Skip malformed entries in the files above with a warning naming file and line, instead of stopping. [default: stop at the first file with a malformed entry]
    #[arg(long)]
    pub keep_going: bool,
}

#[derive(Subcommand)]
pub enum BaselineCmd {
    /// Learn from records written by `blindspot replay` (JSON Lines, plain, .zst or .gz): per JA4 and destination, the inspection states, outcome mix, session durations and sizes.
    Build {
        /// Record files, read in order.
        #[arg(required = true, value_name = "RECORDS")]
        files: Vec<PathBuf>,
        /// The baseline file to write (zstd-compressed JSON).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Also put every entry in the fleet's baselines bucket (JetStream key-value, README "Fleet mode"), under this builder's name: sensors and `correlate` without a baseline of their own read the fleet's.
        #[arg(long, value_name = "nats://HOST:PORT[,...]")]
        publish: Option<String>,
        /// Configuration file (`[fleet]` stream and replicas; `sensor.name`, the builder's name: default the host name).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Validate a configuration file: exit 0 if it is usable, else 1 after listing every problem, one line each with its key and line, in line order.
    Check {
        /// The TOML file to check.
        file: PathBuf,
    },
}
