//! The `blindspot` command: a thin shell over the library (ripgrep style).
//! Errors become one line on stderr and an exit status; a closed stdout
//! (`blindspot replay x.pcap | head`) ends the run quietly.

/// mimalloc: records are built on the flow workers and freed on the
/// correlator, and glibc's per-thread arenas made that cross-thread traffic
/// cost the threaded replay about a quarter more CPU than one thread
/// (`benches/throughput.sh`; `docs/performance.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use blindspot::config::{Config, RawConfig};
use blindspot::correlate::devices::DeviceInputs;
use blindspot::pipeline;
use clap::{Parser, Subcommand};
use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status when every input was read whole.
const EXIT_OK: u8 = 0;
/// Unusable input, bad configuration or an output that cannot be written.
const EXIT_ERROR: u8 = 1;
/// A capture was cut short or damaged: records up to the damage were written.
const EXIT_PARTIAL_INPUT: u8 = 3;

#[derive(Parser)]
#[command(
    name = "blindspot",
    version,
    about = "Passive sensor for TLS-inspection blind spots and opaque encrypted channels (MITRE ATT&CK Mobile AN1726, AN1717)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per run: the size of the replay variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
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
        /// Where records go: `-` for standard output, or a file path; a path ending in `.zst` is written zstd-compressed as independent frames, flushed at least once a second.
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
    },
    /// Baseline commands: learn what is normal per client fingerprint and destination.
    Baseline {
        #[command(subcommand)]
        cmd: BaselineCmd,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
}

/// What `capture` reads and where its records go.
#[derive(clap::Args)]
struct SensorArgs {
    /// Interface to capture on (repeatable: each is read by every worker through its own ring).
    #[arg(short = 'i', long = "interface", required = true, value_name = "IFACE")]
    interfaces: Vec<String>,
    /// Where records go: `-` for standard output; a folder (existing, or a path ending in `/`) for rotated files `PREFIX-YYYYMMDDTHHMMSSZ-NNNNNN.jsonl.zst` (see the README); any other path is one file, appended to and reopened on SIGHUP (zstd when it ends in `.zst`).
    #[arg(short, long, value_name = "PATH", default_value = "-")]
    output: String,
    /// Write plain JSON Lines files into an output folder. [default: zstd]
    #[arg(long)]
    plain: bool,
    /// Read through libpcap instead of AF_PACKET (needs a build with `--features libpcap`; one worker).
    #[arg(long)]
    pcap: bool,
    /// BPF filter in tcpdump syntax, compiled by libpcap (implies --pcap).
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
    /// Stop after this many seconds, as on SIGTERM. [default: run until a signal]
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
}

/// Device and app knowledge from files (each option repeatable).
#[derive(clap::Args)]
struct InputArgs {
    /// DHCP lease file: ISC dhcpd `dhcpd.leases`, Kea memfile CSV or dnsmasq `dnsmasq.leases` (the format is recognised from the content).
    #[arg(long = "leases", value_name = "FILE")]
    leases: Vec<PathBuf>,
    /// FreeRADIUS `detail` accounting file: ties Calling-Station-Id MACs to the identity that authenticated.
    #[arg(long = "radius", value_name = "FILE")]
    radius: Vec<PathBuf>,
    /// MDM inventory: blindspot's JSON shape, a Jamf Pro mobile-device export or a Microsoft Intune managedDevices export.
    #[arg(long = "mdm", value_name = "FILE")]
    mdm: Vec<PathBuf>,
    /// App catalog: blindspot's JSON shape or MobSF iOS report JSON.
    #[arg(long = "apps", value_name = "FILE")]
    apps: Vec<PathBuf>,
    /// App lifecycle events, JSON Lines (foreground / background / suspended per device and bundle ID).
    #[arg(long = "app-events", value_name = "FILE")]
    app_events: Vec<PathBuf>,
    /// Skip malformed entries in the files above with a warning naming file and line, instead of stopping. [default: stop at the first file with a malformed entry]
    #[arg(long)]
    keep_going: bool,
}

/// Loads every input file; the errors are printed, and stop the run unless
/// `--keep-going` was given.
fn load_inputs(a: &InputArgs) -> Result<DeviceInputs, ()> {
    use blindspot::correlate::inputs::{
        LoadError, Loaded, app_events, catalog, leases, mdm, radius,
    };
    let mut failed = false;
    fn take<T>(
        paths: &[PathBuf],
        load: fn(&std::path::Path) -> Result<Loaded<T>, LoadError>,
        keep_going: bool,
        failed: &mut bool,
    ) -> Vec<T> {
        let mut items = Vec::new();
        for p in paths {
            match load(p) {
                Ok(l) => {
                    for e in &l.errors {
                        let what = if keep_going {
                            "warning (skipped)"
                        } else {
                            "error"
                        };
                        eprintln!("blindspot: {what}: {e}");
                    }
                    if !l.errors.is_empty() && !keep_going {
                        *failed = true;
                    }
                    items.extend(l.items);
                }
                Err(e) => {
                    eprintln!("blindspot: error: {e}");
                    *failed = true;
                }
            }
        }
        items
    }
    let k = a.keep_going;
    let inputs = DeviceInputs {
        leases: take(&a.leases, leases::load, k, &mut failed),
        radius: take(&a.radius, radius::load, k, &mut failed),
        mdm: take(&a.mdm, mdm::load, k, &mut failed),
        apps: take(&a.apps, catalog::load, k, &mut failed),
        app_events: take(&a.app_events, app_events::load, k, &mut failed),
    };
    if failed {
        eprintln!(
            "blindspot: fix the entries named above, or pass --keep-going to skip malformed entries"
        );
        return Err(());
    }
    Ok(inputs)
}

#[derive(Subcommand)]
enum BaselineCmd {
    /// Learn from records written by `blindspot replay` (JSON Lines, plain, .zst or .gz): per JA4 and destination, the inspection states, outcome mix, session durations and sizes.
    Build {
        /// Record files, read in order.
        #[arg(required = true, value_name = "RECORDS")]
        files: Vec<PathBuf>,
        /// The baseline file to write (zstd-compressed JSON).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a configuration file: exit 0 if it is usable, else 1 after listing every problem, one line each with its key and line, in line order.
    Check {
        /// The TOML file to check.
        file: PathBuf,
    },
}

/// The configuration, or every problem with it (one line each, in line order).
fn load_config(path: Option<&PathBuf>) -> Result<Config, Vec<String>> {
    let raw = match path {
        Some(p) => RawConfig::load(p).map_err(|e| e.0)?,
        None => RawConfig::default(),
    };
    raw.validate().map_err(|e| e.0)
}

/// Prints each problem on its own line.
fn print_problems(problems: &[String]) {
    for p in problems {
        eprintln!("blindspot: {p}");
    }
}

/// The configuration with the command line's overrides and input files.
fn setup(
    config: Option<&PathBuf>,
    workers: Option<usize>,
    inputs: &InputArgs,
    baseline: Option<&PathBuf>,
) -> Result<Config, ()> {
    let mut cfg = load_config(config).map_err(|e| print_problems(&e))?;
    if let Some(w) = workers {
        if w > 64 {
            eprintln!("blindspot: --workers {w} is out of range: use 0 to 64");
            return Err(());
        }
        cfg.workers = w;
    }
    cfg.device_inputs = std::sync::Arc::new(load_inputs(inputs)?);
    if let Some(b) = baseline {
        match blindspot::detect::baseline::Baseline::load(b) {
            Ok(b) => cfg.baseline = Some(std::sync::Arc::new(b)),
            Err(e) => {
                eprintln!("blindspot: {e}");
                return Err(());
            }
        }
    }
    Ok(cfg)
}

/// A panic anywhere ends the whole process at once, with one line naming
/// the thread. A worker that died alone would leave a live sensor running
/// blind (no records, no stats) and exiting 0; aborting instead lets systemd
/// (`Restart=on-failure`) start it again, and a replay never writes a partial
/// result that looks whole. Exit status: killed by SIGABRT (134 in a shell).
fn die_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        // One line, without newlines from the message.
        let msg = msg.replace('\n', " ");
        eprintln!(
            "blindspot: fatal: thread '{}' panicked{place}: {msg}; stopping (a bug: please report it with this line)",
            thread.name().unwrap_or("unnamed")
        );
        std::process::abort();
    }));
}

fn main() -> ExitCode {
    die_on_panic();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Baseline {
            cmd: BaselineCmd::Build { files, output },
        } => match blindspot::detect::baseline::Baseline::build(&files)
            .and_then(|(b, rep)| b.write(&output).map(|()| rep))
        {
            Ok(rep) => {
                eprintln!(
                    "blindspot: {}: {} keys from {} sessions in {} records{}",
                    output.display(),
                    rep.keys,
                    rep.sessions,
                    rep.records,
                    if rep.bad_lines + rep.keys_over_cap + rep.pending_over_cap > 0 {
                        format!(
                            " ({} lines not JSON, {} keys and {} TLS records over the caps, left out)",
                            rep.bad_lines, rep.keys_over_cap, rep.pending_over_cap
                        )
                    } else {
                        String::new()
                    }
                );
                ExitCode::from(EXIT_OK)
            }
            Err(e) => {
                eprintln!("blindspot: {e}");
                ExitCode::from(EXIT_ERROR)
            }
        },
        Cmd::Config {
            cmd: ConfigCmd::Check { file },
        } => match load_config(Some(&file)) {
            Ok(_) => {
                // A closed standard output is not an error (`| head -0`).
                let _ = writeln!(std::io::stdout(), "{}: ok", file.display());
                ExitCode::from(EXIT_OK)
            }
            Err(e) => {
                print_problems(&e);
                ExitCode::from(EXIT_ERROR)
            }
        },
        Cmd::Capture {
            sensor,
            workers,
            config,
            promiscuous,
            user,
            inputs,
            baseline,
        } => {
            // The same check as capture.user's, before anything is read.
            if let Some(u) = &user
                && let Err(e) = blindspot::config::check_user(u)
            {
                eprintln!("blindspot: --user {u:?} {e}");
                return ExitCode::from(EXIT_ERROR);
            }
            let Ok(mut cfg) = setup(config.as_ref(), workers, &inputs, baseline.as_ref()) else {
                return ExitCode::from(EXIT_ERROR);
            };
            cfg.capture.ring.promiscuous |= promiscuous;
            if user.is_some() {
                cfg.capture.user = user;
            }
            capture(&cfg, sensor)
        }
        Cmd::Replay {
            files,
            output,
            workers,
            config,
            inputs,
            baseline,
            evidence,
        } => {
            let Ok(mut cfg) = setup(config.as_ref(), workers, &inputs, baseline.as_ref()) else {
                return ExitCode::from(EXIT_ERROR);
            };
            cfg.evidence_dir = evidence;
            cfg.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            match pipeline::replay(&files, &cfg, &output) {
                Ok(outcome) => {
                    for u in &outcome.unusable {
                        eprintln!("blindspot: error: {u}");
                    }
                    for d in &outcome.damaged {
                        eprintln!("blindspot: warning: {d}");
                    }
                    if let Some(Err(e)) = &outcome.evidence {
                        eprintln!("blindspot: error: evidence: {e}");
                        return ExitCode::from(EXIT_ERROR);
                    }
                    if !outcome.unusable.is_empty() {
                        ExitCode::from(EXIT_ERROR)
                    } else if !outcome.damaged.is_empty() {
                        ExitCode::from(EXIT_PARTIAL_INPUT)
                    } else {
                        ExitCode::from(EXIT_OK)
                    }
                }
                Err(e) if e.0.kind() == ErrorKind::BrokenPipe => ExitCode::from(EXIT_OK),
                Err(e) => {
                    eprintln!("blindspot: cannot write {output}: {e}");
                    ExitCode::from(EXIT_ERROR)
                }
            }
        }
    }
}

#[cfg(unix)]
fn capture(cfg: &Config, a: SensorArgs) -> ExitCode {
    let duration = match a.duration {
        Some(d) if d.is_finite() && d > 0.0 && d < 1e9 => {
            Some(std::time::Duration::from_secs_f64(d))
        }
        Some(d) => {
            eprintln!(
                "blindspot: --duration {d} is out of range: use a positive number of seconds"
            );
            return ExitCode::from(EXIT_ERROR);
        }
        None => None,
    };
    let opts = blindspot::sensor::SensorOptions {
        interfaces: a.interfaces,
        output: a.output,
        plain: a.plain,
        libpcap: a.pcap || a.filter.is_some(),
        filter: a.filter,
        duration,
    };
    match blindspot::sensor::run(cfg, &opts) {
        Ok(out) if out.drain_timed_out => {
            eprintln!(
                "blindspot: the drain did not finish within capture.drain_timeout_s ({} s): the last records may be lost",
                cfg.capture.drain_timeout.as_secs()
            );
            ExitCode::from(EXIT_ERROR)
        }
        Ok(out) => {
            let drops = out.stats.drops.values().sum::<u64>();
            eprintln!(
                "blindspot: stopped: {} packets, {} dropped (kernel {}, internal {})",
                out.stats.packets,
                drops,
                out.stats.drops.get("kernel").copied().unwrap_or(0),
                out.stats.drops.get("internal").copied().unwrap_or(0)
            );
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            eprintln!("blindspot: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

#[cfg(not(unix))]
fn capture(_cfg: &Config, _args: SensorArgs) -> ExitCode {
    eprintln!(
        "blindspot: live capture is only built for Unix systems; replay capture files instead"
    );
    ExitCode::from(EXIT_ERROR)
}
