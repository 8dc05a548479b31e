//! `load`: the side-by-side Envoy load benchmark of tenant-egress (driven by
//! `bench/load/run.sh`; `load --help` lists the options).
//!
//! One sidecar Envoy per configuration (same binary, `--concurrency 1`, pinned to one CPU), one
//! upstream Envoy answering with a `direct_response` (pinned with the load generator to the
//! other CPU, so its work is not counted), and closed-loop keep-alive HTTP/1.1 clients
//! ([`client`]) as the load. Cells (configuration x traffic) are measured in rounds,
//! A B C ... A B C ..., so slow drift of the machine spreads over every configuration instead
//! of biasing one. Each cell reports requests/s and p50/p99 latency, the sidecar's own CPU per
//! request (utime+stime from `/proc/<pid>/stat` over the sidecar's own request counter) and
//! its RSS (`VmRSS`).
//!
//! The sidecars are the test kit's Istio-shaped sidecar ([`tenant_egress_tests::EnvoyConfig`],
//! rendered for the benchmark by [`tenant_egress_tests::loadbench`]): one definition of the
//! bootstrap, Istio's domain aliases and the Envoy process handling for the tests and this
//! benchmark. The configurations and their traffic are in [`cells`]. Results: `load.json`
//! (every sample), `load.md` (tables), `load.svg` (chart).

mod cells;
mod chart;
mod client;
mod instructions;
mod procfs;
mod rbac;
mod report;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;
use tenant_egress_tests::loadbench::{sidecar_bootstrap, upstream_bootstrap};
use tenant_egress_tests::{
    free_ports, try_envoy_bin, try_raw_http1, try_wasm_path, workspace_root, Envoy, StartError,
};

use cells::{configs, Config, SVC_PORT};
use report::{CellResult, ConfigInfo, Meta, Report, Sample};

/// How long a configuration may take, after Envoy is ready, to answer as expected (the wasm
/// VM compiles the policy).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(
    name = "load",
    about = "Side-by-side Envoy load benchmark: no filter, a no-op wasm filter, tenant-egress \
             (example and generated policies) and Envoy RBAC. Envoy comes from ENVOY_BIN or \
             scripts/setup.sh's .tools/envoy-bin."
)]
struct Args {
    /// The tenant-egress .wasm (default: the shipped build, as the tests find it).
    #[arg(long)]
    filter_wasm: Option<PathBuf>,
    /// The no-op filter .wasm (bench/load/noop-filter; run.sh builds it).
    #[arg(long)]
    noop_wasm: Option<PathBuf>,
    /// Seconds of measurement per cell and round.
    #[arg(long, default_value_t = 4.0)]
    duration: f64,
    /// Seconds of warm-up per cell (0: none).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// A B C ... rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Client connections (one thread each).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Also stop a cell's measurement after this many requests (a bound for quick runs).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Generated policy sizes (host entries).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    sizes: Vec<usize>,
    /// Permissions of the RBAC configuration (derived from a generated policy of this size).
    #[arg(long, default_value_t = 1000)]
    rbac_rules: usize,
    /// Only these configuration keys (comma-separated; `none` always runs).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also run the no-op filter making the host calls tenant-egress made before it fetched
    /// only `:authority`: the whole header map + the cluster name.
    #[arg(long)]
    diagnostics: bool,
    /// Leave out the `realistic` cells (allowed traffic with 22 headers, a 2 KB cookie and a
    /// 1 KB bearer token); only bare requests.
    #[arg(long)]
    bare_only: bool,
    /// Also run the 1,000-rule policy with these builds of the filter (comma-separated, e.g.
    /// the opt-level s and 3 builds), each a configuration `te-1k-alt<N>` of its own.
    #[arg(long, value_delimiter = ',')]
    alt_filter_wasm: Vec<PathBuf>,
    /// CPU of the sidecars (default: the first allowed CPU).
    #[arg(long)]
    envoy_cpu: Option<usize>,
    /// CPU of the upstream and the load generator (default: the second allowed CPU).
    #[arg(long)]
    load_cpu: Option<usize>,
    /// Sidecar log level (Istio's default: warning).
    #[arg(long, default_value = "warning")]
    log_level: String,
    /// Count instructions instead of timing: every cell's sidecar runs under valgrind's
    /// callgrind and N requests are counted (machine-independent; writes instructions.md).
    #[arg(long, value_name = "N")]
    instructions: Option<usize>,
    /// Output directory (default: bench/results).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Render load.svg (and load.md, for files this binary wrote) again from a saved load.json,
    /// next to it, without measuring.
    #[arg(long, value_name = "LOAD_JSON")]
    replot: Option<PathBuf>,
}

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("Envoy for configuration {config} did not start: {source}")]
    Start {
        config: String,
        source: Box<StartError>,
    },
    #[error("{cell}: {host} answered {got}, expected {expect} (waited {ANSWER_TIMEOUT:?})")]
    NotReady {
        cell: String,
        host: String,
        got: String,
        expect: u16,
    },
    #[error("configuration {0}: the sidecar Envoy exited during the measurement")]
    Died(String),
    #[error("{0}")]
    Input(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LoadError {
    let what = what.into();
    move |source| LoadError::Io { what, source }
}

fn log(msg: &str) {
    println!("==> {msg}");
}

/// A started sidecar and its cells.
struct Running {
    config: Config,
    envoy: Envoy,
    port: u16,
}

/// One cell while measuring.
struct Cell {
    config: usize,
    traffic: &'static str,
    host: String,
    expect: u16,
    request: Vec<u8>,
    samples: Vec<Sample>,
}

impl Cell {
    fn name(&self, running: &[Running]) -> String {
        format!("{}/{}", running[self.config].config.key, self.traffic)
    }
}

/// Starts `bootstrap(port)` on a fresh port, retrying (3 attempts) if the port was taken
/// between picking and binding it.
fn start(name: &str, bootstrap: impl Fn(u16) -> Value) -> Result<(Envoy, u16), LoadError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_ports(1).first().copied().unwrap_or_default();
        match Envoy::try_start(&bootstrap(port).to_string()) {
            Ok(e) => return Ok((e, port)),
            Err(e) if e.is_port_conflict() && attempt < 3 => continue,
            Err(e) => {
                return Err(LoadError::Start {
                    config: name.into(),
                    source: Box::new(e),
                })
            }
        }
    }
}

/// The kit starts Envoy at `info` with wasm debug logs; the benchmark measures at `level` for
/// every logger (Envoy admin `/logging?level=`).
fn set_log_level(envoy: &Envoy, level: &str) -> Result<(), LoadError> {
    let r = envoy
        .admin("POST", &format!("/logging?level={level}"))
        .map_err(io_err("admin /logging"))?;
    if r.status == 200 {
        Ok(())
    } else {
        Err(LoadError::Input(format!(
            "log level {level:?}: Envoy's admin answered {}: {}",
            r.status,
            r.body.trim()
        )))
    }
}

/// `downstream_rq_total` of the sidecar's outbound listener (read through its admin port).
fn requests_counted(envoy: &Envoy) -> Result<u64, LoadError> {
    let name = format!("http.outbound_0.0.0.0_{SVC_PORT}.downstream_rq_total");
    let r = envoy
        .admin("GET", "/stats?usedonly&filter=downstream_rq_total")
        .map_err(io_err("admin /stats"))?;
    Ok(r.body
        .lines()
        .filter_map(|l| l.split_once(": "))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0))
}

fn cpu_ticks(pid: u32) -> Result<u64, LoadError> {
    procfs::cpu_ticks(pid).map_err(io_err(format!("/proc/{pid}/stat")))
}

/// CPU counters at one instant: sidecar, upstream, machine, load generator (this process).
struct Ticks {
    sidecar: u64,
    upstream: u64,
    machine: u64,
    own: u64,
}

fn ticks(sidecar: u32, upstream: u32) -> Result<Ticks, LoadError> {
    Ok(Ticks {
        sidecar: cpu_ticks(sidecar)?,
        upstream: cpu_ticks(upstream)?,
        machine: procfs::machine_busy_ticks().map_err(io_err("/proc/stat"))?,
        own: procfs::own_cpu_ticks().map_err(io_err("/proc/self/stat"))?,
    })
}

fn command_output(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s
        })
        .unwrap_or_default()
}

/// `1.40.0` out of `envoy --version` (`... version: <sha>/1.40.0/Clean/RELEASE/...`).
fn envoy_version(text: &str) -> String {
    text.split_once("version: ")
        .and_then(|(_, v)| v.split('/').nth(1))
        .map_or_else(|| text.trim().to_string(), str::to_string)
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Writes `load.svg`, `load.md` (if `md`) and `load.json` (if `json`) into `dir`; returns the
/// markdown.
fn write_outputs(report: &Report, dir: &Path, md: bool, json: bool) -> Result<String, LoadError> {
    fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    let text = report::markdown(report);
    if md {
        let path = dir.join("load.md");
        fs::write(&path, &text).map_err(io_err(format!("write {}", path.display())))?;
    }
    if json {
        let path = dir.join("load.json");
        let body =
            serde_json::to_string_pretty(report).map_err(|e| LoadError::Input(e.to_string()))?;
        fs::write(&path, body + "\n").map_err(io_err(format!("write {}", path.display())))?;
    }
    chart::write(report, &dir.join("load.svg")).map_err(LoadError::Input)?;
    Ok(text)
}

fn replot(path: &Path) -> Result<(), LoadError> {
    let text = fs::read_to_string(path).map_err(io_err(format!("read {}", path.display())))?;
    let report: Report = serde_json::from_str(&text)
        .map_err(|e| LoadError::Input(format!("{}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    // Files of the former Python script have no configuration labels and notes: their
    // markdown cannot be rendered again, only the chart.
    let md = !report.configs.is_empty();
    write_outputs(&report, dir, md, false)?;
    let svg = dir.join("load.svg");
    if md {
        log(&format!(
            "wrote {} and {}",
            dir.join("load.md").display(),
            svg.display()
        ));
    } else {
        log(&format!(
            "wrote {} (the file has no configuration labels: load.md left as it is)",
            svg.display()
        ));
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), LoadError> {
    let root = workspace_root();
    let envoy_bin = try_envoy_bin().map_err(|t| {
        LoadError::Input(format!(
            "Envoy not found (tried {t}); run scripts/setup.sh or set ENVOY_BIN"
        ))
    })?;
    let filter_wasm = match &args.filter_wasm {
        Some(p) => p.clone(),
        None => try_wasm_path().map_err(|t| {
            LoadError::Input(format!(
                "filter .wasm not found (tried {t}); run scripts/setup.sh"
            ))
        })?,
    };
    let noop_wasm = args.noop_wasm.clone().unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), |d| root.join(d));
        target.join("noop-filter/wasm32-wasip1/release/noop_filter.wasm")
    });
    for p in [&filter_wasm, &noop_wasm] {
        if !p.is_file() {
            return Err(LoadError::Input(format!(
                "missing {} (bench/load/run.sh builds it)",
                p.display()
            )));
        }
    }
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));

    let cpus = procfs::allowed_cpus();
    let (envoy_cpu, load_cpu) = if cpus.len() >= 2 {
        (
            Some(args.envoy_cpu.unwrap_or(cpus[0])),
            Some(args.load_cpu.unwrap_or(cpus[1])),
        )
    } else {
        log("only one CPU available: not pinning (sidecars, upstream and load generator share it)");
        (None, None)
    };
    // This process (the load generator) and the upstream it starts run on the load CPU; each
    // sidecar is moved to its own CPU once started.
    if let Some(cpu) = load_cpu {
        procfs::pin(std::process::id(), cpu).map_err(io_err("pinning the load generator"))?;
    }

    let configs = configs(args, &filter_wasm, &noop_wasm)?;
    if let Some(n) = args.instructions {
        log(&format!(
            "counting instructions: {n} requests per cell, each sidecar under callgrind; Envoy {}",
            envoy_bin.display()
        ));
        let counted = instructions::count(&envoy_bin, &configs, n.max(1))?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| root.join("bench/results"));
        fs::create_dir_all(&out).map_err(io_err(format!("create {}", out.display())))?;
        let path = out.join("instructions.md");
        let text = instructions::markdown(&counted, n, &configs);
        fs::write(&path, &text).map_err(io_err(format!("write {}", path.display())))?;
        println!("\n{text}");
        log(&format!("wrote {}", path.display()));
        return Ok(());
    }
    log(&format!(
        "sidecars on CPU {envoy_cpu:?}, upstream + load generator on CPU {load_cpu:?}; Envoy {}",
        envoy_bin.display()
    ));
    let tmp = std::env::temp_dir();
    let (upstream, upstream_port) = start("upstream", |port| upstream_bootstrap(port, &tmp))?;
    set_log_level(&upstream, "warning")?;
    let mut running: Vec<Running> = Vec::new();
    let mut cells: Vec<Cell> = Vec::new();
    for config in configs {
        let t0 = Instant::now();
        let cfg = config.envoy_config();
        let (envoy, port) = start(&config.key, |port| {
            sidecar_bootstrap(&cfg, SVC_PORT, port, upstream_port, &tmp)
        })?;
        set_log_level(&envoy, &args.log_level)?;
        if let Some(cpu) = envoy_cpu {
            procfs::pin(envoy.pid(), cpu).map_err(io_err(format!("pinning {}", config.key)))?;
        }
        for &traffic in &config.traffics {
            let expect = config.expect(traffic);
            let host = config.host(traffic);
            let request = config.request(traffic);
            let name = format!("{}/{traffic}", config.key);
            let deadline = Instant::now() + ANSWER_TIMEOUT;
            loop {
                let got = try_raw_http1(port, &request);
                match &got {
                    Ok(r) if r.status == expect => break,
                    _ if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(200))
                    }
                    _ => {
                        return Err(LoadError::NotReady {
                            cell: name,
                            host,
                            got: match got {
                                Ok(r) => format!(
                                    "{} {:?}",
                                    r.status,
                                    r.body.chars().take(300).collect::<String>()
                                ),
                                Err(e) => e.to_string(),
                            },
                            expect,
                        })
                    }
                }
            }
            cells.push(Cell {
                config: running.len(),
                traffic,
                host,
                expect,
                request,
                samples: Vec::new(),
            });
        }
        log(&format!(
            "{}: ready in {:.1}s (pid {}, RSS {:.0} MiB)",
            config.key,
            t0.elapsed().as_secs_f64(),
            envoy.pid(),
            procfs::rss_mib(envoy.pid())
        ));
        running.push(Running {
            config,
            envoy,
            port,
        });
    }

    let loadavg_start = procfs::loadavg();
    if !warmup.is_zero() {
        log(&format!("warm-up: {}s per cell", args.warmup));
        for cell in &cells {
            let r = &running[cell.config];
            client::run(
                r.port,
                &cell.request,
                cell.expect,
                args.connections,
                warmup,
                args.max_requests,
            );
        }
    }
    let tck = procfs::clk_tck();
    let upstream_pid = upstream.pid();
    for round in 0..args.rounds {
        log(&format!("round {}/{}", round + 1, args.rounds));
        for cell in &mut cells {
            let r = &running[cell.config];
            let pid = r.envoy.pid();
            let rq0 = requests_counted(&r.envoy)?;
            let t0 = ticks(pid, upstream_pid)?;
            let start = Instant::now();
            let mut out = client::run(
                r.port,
                &cell.request,
                cell.expect,
                args.connections,
                duration,
                args.max_requests,
            );
            let wall = start.elapsed().as_secs_f64();
            let t1 = ticks(pid, upstream_pid)?;
            let rq1 = requests_counted(&r.envoy)?;
            let requests = rq1.saturating_sub(rq0);
            let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / tck;
            let cpu_s = secs(t0.sidecar, t1.sidecar);
            let ours = cpu_s + secs(t0.upstream, t1.upstream) + secs(t0.own, t1.own);
            out.latencies_us.sort_unstable();
            let s = Sample {
                requests: out.requests,
                unexpected: out.unexpected,
                socket_errors: out.socket_errors,
                p50_ms: client::percentile_ms(&out.latencies_us, 50.0),
                p99_ms: client::percentile_ms(&out.latencies_us, 99.0),
                rps: out.rps(),
                envoy_requests: requests,
                cpu_us_per_req: if requests > 0 {
                    cpu_s / requests as f64 * 1e6
                } else {
                    f64::NAN
                },
                cpu_pct: cpu_s / wall * 100.0,
                // CPU used by anything but the sidecar, the upstream and the load generator
                // (other tenants of a shared machine), in % of one CPU.
                other_pct: ((secs(t0.machine, t1.machine) - ours) / wall * 100.0).max(0.0),
                rss_mib: procfs::rss_mib(pid),
            };
            let name = cell.name(&running);
            if s.unexpected > 0 || s.socket_errors > 0 {
                log(&format!(
                    "  warning: {name}: {} unexpected statuses, {} socket errors",
                    s.unexpected, s.socket_errors
                ));
            }
            println!(
                "    {name:<24} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  CPU {:6.2} us/req ({:.0}%)  RSS {:.0} MiB  other load {:.0}%",
                s.rps, s.p50_ms, s.p99_ms, s.cpu_us_per_req, s.cpu_pct, s.rss_mib, s.other_pct
            );
            cell.samples.push(s);
        }
        for r in &mut running {
            if !r.envoy.is_running() {
                return Err(LoadError::Died(r.config.key.clone()));
            }
        }
    }

    let git = |a: &[&str]| command_output(Command::new("git").arg("-C").arg(&root).args(a));
    let commit = git(&["rev-parse", "--short", "HEAD"]).trim().to_string();
    let meta = Meta {
        loadavg_start,
        loadavg_end: procfs::loadavg(),
        date: command_output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
            .trim()
            .to_string(),
        envoy: envoy_version(&command_output(Command::new(&envoy_bin).arg("--version"))),
        commit: if commit.is_empty() {
            "unknown".into()
        } else {
            commit
        },
        dirty: !git(&["status", "--porcelain", "--", "config", "filter"])
            .trim()
            .is_empty(),
        cpu: procfs::cpu_model(),
        cpus: cpus.len(),
        kernel: procfs::kernel(),
        envoy_cpu,
        load_cpu,
        duration: args.duration,
        warmup: args.warmup,
        rounds: args.rounds,
        connections: args.connections,
        filter_wasm_bytes: file_len(&filter_wasm),
        noop_wasm_bytes: file_len(&noop_wasm),
        log_level: args.log_level.clone(),
        load_generator: "the `load` binary's closed-loop client".into(),
        max_requests: args.max_requests,
    };
    let report = Report {
        meta,
        configs: running
            .iter()
            .map(|r| ConfigInfo {
                key: r.config.key.clone(),
                label: r.config.label.clone(),
                note: r.config.note.clone(),
            })
            .collect(),
        cells: cells
            .iter()
            .map(|c| CellResult {
                cell: c.name(&running),
                host: c.host.clone(),
                expect: c.expect,
                samples: c.samples.clone(),
            })
            .collect(),
    };
    drop(running);
    drop(upstream);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("bench/results"));
    let md = write_outputs(&report, &out, true, true)?;
    println!("\n{md}");
    log(&format!("wrote {}/load.{{md,json,svg}}", out.display()));
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.replot {
        Some(path) => replot(path),
        None => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_versions() {
        assert_eq!(
            envoy_version("envoy  version: 4a1b/1.40.0/Clean/RELEASE/BoringSSL\n"),
            "1.40.0"
        );
        assert_eq!(envoy_version("something else\n"), "something else");
    }
}
