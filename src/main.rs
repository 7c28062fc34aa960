//! The `blindspot` command: a thin shell over the library (ripgrep style).
//! Errors become one line on stderr and an exit status; a closed stdout
//! (`blindspot replay x.pcap | head`) ends the run quietly.

/// mimalloc: records are built on the flow workers and freed on the
/// correlator, and glibc's per-thread arenas made that cross-thread traffic
/// cost the threaded replay about a quarter more CPU than one thread
/// (`benches/throughput.sh`; `docs/performance.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

use blindspot::config::{Config, InputFiles, RawConfig};
use blindspot::correlate::devices::DeviceInputs;
use blindspot::run;
use clap::Parser;
use cli::{BaselineCmd, Cli, Cmd, ConfigCmd, InputArgs, SensorArgs};
use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Why a command did not end with status 0. One mapping, in `main`, turns
/// each into its exit status (clap's usage errors are status 2); the lines
/// that explain it are printed where it happens or by that mapping.
enum Failure {
    /// Problems to print, one line each: status 1 (unusable input, bad
    /// configuration, an output that cannot be written).
    Problems(Vec<String>),
    /// Already explained on stderr: status 1.
    Reported,
    /// A capture was cut short or damaged: the records up to the damage
    /// were written, and a warning names the file and offset: status 3.
    PartialInput,
}

impl From<String> for Failure {
    fn from(problem: String) -> Self {
        Failure::Problems(vec![problem])
    }
}

/// Loads every input file, the config's `[inputs]` first, then the command
/// line's, with the bypass lists' names; the errors are printed, and stop
/// the run unless `--keep-going` was given. `proxy_logs`: the config's
/// `inspection.proxy_logs`, read before `--proxy-log`'s.
fn load_inputs(
    files: &InputFiles,
    a: &InputArgs,
    proxy_logs: &[PathBuf],
) -> Result<(DeviceInputs, Vec<blindspot::detect::names::DomainPattern>), ()> {
    use blindspot::inputs::{
        LoadError, Loaded, app_events, bypass, catalog, leases, mdm, proxylog, radius,
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
                    for w in &l.warnings {
                        eprintln!("blindspot: warning: {w}");
                    }
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
    let both = |c: &[PathBuf], l: &[PathBuf]| [c, l].concat();
    let inputs = DeviceInputs {
        leases: take(
            &both(&files.leases, &a.leases),
            leases::load,
            k,
            &mut failed,
        ),
        radius: take(
            &both(&files.radius, &a.radius),
            radius::load,
            k,
            &mut failed,
        ),
        mdm: take(&both(&files.mdm, &a.mdm), mdm::load, k, &mut failed),
        apps: take(&both(&files.apps, &a.apps), catalog::load, k, &mut failed),
        app_events: take(
            &both(&files.app_events, &a.app_events),
            app_events::load,
            k,
            &mut failed,
        ),
        proxy_log: {
            let paths: Vec<PathBuf> = proxy_logs.iter().chain(&a.proxy_log).cloned().collect();
            let mut entries = take(&paths, proxylog::load, k, &mut failed);
            // One timeline across files (each file comes sorted).
            entries.sort_by_key(|e| e.ts);
            std::sync::Arc::new(entries)
        },
    };
    let bypass = take(
        &both(&files.bypass_list, &a.bypass_list),
        bypass::load,
        k,
        &mut failed,
    );
    if failed {
        eprintln!(
            "blindspot: fix the entries named above, or pass --keep-going to skip malformed entries"
        );
        return Err(());
    }
    Ok((inputs, bypass))
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
) -> Result<Config, Failure> {
    let mut cfg = load_config(config).map_err(Failure::Problems)?;
    if let Some(w) = workers {
        if w > 64 {
            return Err(format!("--workers {w} is out of range: use 0 to 64").into());
        }
        cfg.workers = w;
    }
    let (device_inputs, bypass) =
        load_inputs(&cfg.input_files, inputs, &cfg.proxy_logs).map_err(|()| Failure::Reported)?;
    cfg.device_inputs = std::sync::Arc::new(device_inputs);
    if !bypass.is_empty() {
        let mut d = (*cfg.detect).clone();
        d.bypass_domains.extend(bypass);
        cfg.detect = std::sync::Arc::new(d);
    }
    if let Some(b) = baseline {
        let b = blindspot::detect::baseline::Baseline::load(b)?;
        cfg.baseline = Some(std::sync::Arc::new(b));
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
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Problems(problems)) => {
            print_problems(&problems);
            ExitCode::from(1)
        }
        Err(Failure::Reported) => ExitCode::from(1),
        Err(Failure::PartialInput) => ExitCode::from(3),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.cmd {
        Cmd::Baseline {
            cmd:
                BaselineCmd::Build {
                    files,
                    output,
                    publish,
                    config,
                },
        } => baseline_build(&files, &output, publish.as_deref(), config.as_ref()),
        Cmd::Report { files, output } => report(&files, output.as_deref()),
        Cmd::Correlate {
            from,
            partitions,
            until_idle,
            output,
            config,
            inputs,
            baseline,
            form,
        } => correlate(
            from.as_deref(),
            &partitions,
            until_idle,
            output,
            config.as_ref(),
            &inputs,
            baseline.as_ref(),
            &form,
        ),
        Cmd::Config {
            cmd: ConfigCmd::Check { file },
        } => {
            load_config(Some(&file)).map_err(Failure::Problems)?;
            // A closed standard output is not an error (`| head -0`).
            let _ = writeln!(std::io::stdout(), "{}: ok", file.display());
            Ok(())
        }
        Cmd::Capture {
            sensor,
            workers,
            config,
            promiscuous,
            user,
            inputs,
            baseline,
            form,
            publish,
        } => {
            // The same check as capture.user's, before anything is read.
            if let Some(u) = &user {
                blindspot::config::check_user(u).map_err(|e| format!("--user {u:?} {e}"))?;
            }
            let mut cfg = setup(config.as_ref(), workers, &inputs, baseline.as_ref())?;
            cfg.capture.ring.promiscuous |= promiscuous;
            if user.is_some() {
                cfg.capture.user = user;
            }
            cfg.format = form.format.unwrap_or(cfg.format);
            set_publish(&mut cfg, &publish.publish)?;
            let members = cfg.fleet.publish.clone();
            fleet_baseline(&mut cfg, &members);
            // SIGHUP loads the same files again.
            let reload = || match setup(config.as_ref(), workers, &inputs, baseline.as_ref()) {
                Ok(mut c) => {
                    c.fleet.publish.clone_from(&cfg.fleet.publish);
                    c.kafka.brokers.clone_from(&cfg.kafka.brokers);
                    Some(c)
                }
                Err(Failure::Problems(p)) => {
                    print_problems(&p);
                    None
                }
                Err(_) => None,
            };
            capture(&cfg, sensor, &reload)
        }
        Cmd::Replay {
            files,
            output,
            workers,
            config,
            inputs,
            baseline,
            evidence,
            form,
            publish,
        } => {
            let mut cfg = setup(config.as_ref(), workers, &inputs, baseline.as_ref())?;
            cfg.format = form.format.unwrap_or(cfg.format);
            set_publish(&mut cfg, &publish.publish)?;
            let members = cfg.fleet.publish.clone();
            fleet_baseline(&mut cfg, &members);
            cfg.evidence_dir = evidence;
            cfg.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            replay(&files, &cfg, &output)
        }
    }
}

/// `--publish URLS` (each time it is given) over `fleet.publish`: the
/// `kafka://` URLs to Kafka export, the rest to NATS; refused when built
/// without the feature a scheme needs.
fn set_publish(cfg: &mut Config, publish: &[String]) -> Result<(), Failure> {
    if !publish.is_empty() {
        let urls: Vec<String> = publish
            .iter()
            .flat_map(|p| p.split(','))
            .map(|u| u.trim().to_string())
            .collect();
        let (nats, kafka) = blindspot::fleet::kafka::split_urls("--publish", &urls)?;
        blindspot::config::check_nats_urls("--publish", &nats)?;
        cfg.fleet.publish = nats;
        cfg.kafka.brokers = kafka;
    }
    if !cfg.kafka.brokers.is_empty() && !cfg!(feature = "kafka") {
        return Err(
            "--publish kafka://: this blindspot was built without the `kafka` feature (cargo build --features kafka: it builds librdkafka, with cmake, a C++ compiler and libcurl4-openssl-dev)"
                .to_string()
                .into(),
        );
    }
    if !cfg.fleet.publish.is_empty() && !cfg!(feature = "fleet") {
        return Err(
            "--publish: this blindspot was built without the `fleet` feature"
                .to_string()
                .into(),
        );
    }
    Ok(())
}

/// Without a baseline of its own, a fleet member (`--publish`, or
/// `correlate`'s servers) with `fleet.state` on takes the fleet's from the
/// baselines bucket, when there is one.
fn fleet_baseline(cfg: &mut Config, servers: &[String]) {
    // The fleet being away never stops a sensor: it runs without.
    #[cfg(feature = "fleet")]
    if cfg.baseline.is_none()
        && cfg.fleet.state
        && cfg.fleet.state_wait_s > 0
        && !servers.is_empty()
    {
        match blindspot::fleet::state::fetch_baseline(&cfg.fleet, servers) {
            Ok(Some(b)) => {
                eprintln!(
                    "blindspot: baseline: {} keys from the fleet's baselines bucket",
                    b.len()
                );
                cfg.baseline = Some(std::sync::Arc::new(b));
            }
            Ok(None) => {}
            Err(e) => eprintln!("blindspot: fleet baselines: {e}; running without a baseline"),
        }
    }
    let _ = (cfg, servers);
}

/// `blindspot correlate`.
#[allow(clippy::too_many_arguments)]
fn correlate(
    from: Option<&str>,
    partitions: &str,
    until_idle: Option<f64>,
    output: String,
    config: Option<&PathBuf>,
    inputs: &InputArgs,
    baseline: Option<&PathBuf>,
    form: &cli::FormatArg,
) -> Result<(), Failure> {
    let mut cfg = setup(config, None, inputs, baseline)?;
    cfg.format = form.format.unwrap_or(cfg.format);
    // A consumer publishes nothing.
    cfg.fleet.publish.clear();
    cfg.kafka.brokers.clear();
    let servers: Vec<String> = match from {
        Some(f) => f.split(',').map(|u| u.trim().to_string()).collect(),
        None => cfg.fleet.servers.clone(),
    };
    if servers.is_empty() {
        return Err(
            "correlate: name the servers with --from nats://HOST:PORT (or fleet.servers)"
                .to_string()
                .into(),
        );
    }
    blindspot::config::check_nats_urls("--from", &servers)?;
    fleet_baseline(&mut cfg, &servers);
    let share = partitions
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<u32>().ok()?, n.parse::<u32>().ok()?)))
        .filter(|&(i, n)| n >= 1 && i < n && n <= cfg.fleet.partitions)
        .ok_or_else(|| {
            format!(
                "--partitions {partitions}: use I/N with 0 <= I < N <= fleet.partitions ({})",
                cfg.fleet.partitions
            )
        })?;
    let until_idle = match until_idle {
        Some(d) if (0.0..1e6).contains(&d) => Some(std::time::Duration::from_secs_f64(d)),
        Some(d) => {
            return Err(format!("--until-idle {d} is out of range: use seconds from 0").into());
        }
        None => None,
    };
    fleet_correlate(&cfg, servers, share, until_idle, output)
}

fn fleet_correlate(
    cfg: &Config,
    servers: Vec<String>,
    share: (u32, u32),
    until_idle: Option<std::time::Duration>,
    output: String,
) -> Result<(), Failure> {
    let o = blindspot::fleet::CorrelateOptions {
        servers,
        share,
        until_idle,
        output,
    };
    let sum = blindspot::fleet::correlate(cfg, &o).map_err(|e| format!("correlate: {e}"))?;
    let g = |k| sum.get(k).copied().unwrap_or(0);
    eprintln!(
        "blindspot: correlate: {} messages, {} sessions, {} detections, {} lines unreadable",
        g("messages"),
        g("sessions"),
        g("detections"),
        g("bad_lines")
    );
    Ok(())
}

fn baseline_build(
    files: &[PathBuf],
    output: &std::path::Path,
    publish: Option<&str>,
    config: Option<&PathBuf>,
) -> Result<(), Failure> {
    let mut cfg = load_config(config).map_err(Failure::Problems)?;
    set_publish(
        &mut cfg,
        &publish.map(str::to_string).into_iter().collect::<Vec<_>>(),
    )?;
    if !cfg.kafka.brokers.is_empty() {
        return Err("baseline build --publish: the baselines bucket is on NATS JetStream: give nats:// URLs"
            .to_string()
            .into());
    }
    let (b, rep) = blindspot::detect::baseline::Baseline::build(files)?;
    b.write(output)?;
    #[cfg(feature = "fleet")]
    if !cfg.fleet.publish.is_empty() {
        let name = blindspot::output::observer::Observer::new(cfg.sensor_name.as_deref(), &[]).name;
        let built = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let c = blindspot::fleet::state::publish_baseline(
            &cfg.fleet,
            &cfg.fleet.publish,
            &name,
            &b,
            built,
        )
        .map_err(|e| format!("--publish: {e}"))?;
        eprintln!(
            "blindspot: baselines bucket: {} of {} keys written as {name:?} ({} unchanged or failed)",
            c["state_written"],
            b.len(),
            b.len() as u64 - c["state_written"]
        );
    }
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
    Ok(())
}

fn report(files: &[PathBuf], output: Option<&std::path::Path>) -> Result<(), Failure> {
    let sum = blindspot::report::Summary::read(files)?;
    match output {
        Some(p) if p.as_os_str() != "-" => std::fs::write(p, blindspot::report::html::render(&sum))
            .map_err(|e| format!("{}: cannot write: {e}", p.display()).into()),
        _ => {
            match std::io::stdout().write_all(blindspot::report::markdown::render(&sum).as_bytes())
            {
                Err(e) if e.kind() != ErrorKind::BrokenPipe => {
                    Err(format!("cannot write stdout: {e}").into())
                }
                _ => Ok(()),
            }
        }
    }
}

fn replay(files: &[PathBuf], cfg: &Config, output: &str) -> Result<(), Failure> {
    let outcome = match run::replay(files, cfg, output) {
        Ok(outcome) => outcome,
        // `replay … | head`: the reader has what it wanted.
        Err(e) if e.0.kind() == ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(format!("cannot write {output}: {e}").into()),
    };
    for u in &outcome.unusable {
        eprintln!("blindspot: error: {u}");
    }
    for d in &outcome.damaged {
        eprintln!("blindspot: warning: {d}");
    }
    if let Some(Err(e)) = &outcome.evidence {
        return Err(format!("error: evidence: {e}").into());
    }
    if !outcome.unusable.is_empty() {
        Err(Failure::Reported)
    } else if !outcome.damaged.is_empty() {
        Err(Failure::PartialInput)
    } else {
        Ok(())
    }
}

#[cfg(unix)]
fn capture(cfg: &Config, a: SensorArgs, reload: blindspot::sensor::Reload) -> Result<(), Failure> {
    if a.output.ends_with(".gz") {
        return Err(format!(
            "-o {}: capture does not write gzip (its files are reopened and appended to); use a path ending in .zst, or a folder",
            a.output
        )
        .into());
    }
    let duration = match a.duration {
        Some(d) if d.is_finite() && d > 0.0 && d < 1e9 => {
            Some(std::time::Duration::from_secs_f64(d))
        }
        Some(d) => {
            return Err(format!(
                "--duration {d} is out of range: use a positive number of seconds"
            )
            .into());
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
    match blindspot::sensor::run(cfg, &opts, reload)? {
        out if out.drain_timed_out => Err(format!(
            "the drain did not finish within capture.drain_timeout_s ({} s): the last records may be lost",
            cfg.capture.drain_timeout.as_secs()
        )
        .into()),
        out => {
            let drops = out.stats.drops.values().sum::<u64>();
            eprintln!(
                "blindspot: stopped: {} packets, {} dropped (kernel {}, internal {})",
                out.stats.packets,
                drops,
                out.stats.drops.get("kernel").copied().unwrap_or(0),
                out.stats.drops.get("internal").copied().unwrap_or(0)
            );
            Ok(())
        }
    }
}

#[cfg(not(unix))]
fn capture(
    _cfg: &Config,
    _args: SensorArgs,
    _reload: &dyn Fn() -> Option<Config>,
) -> Result<(), Failure> {
    Err(
        "live capture is only built for Unix systems; replay capture files instead"
            .to_string()
            .into(),
    )
}
