//! `load --instructions N`: the sidecar's instructions per request, counted by valgrind's
//! callgrind, for every cell of the benchmark.
//!
//! Why: the CPU-time figures of the load benchmark move with the machine (a shared 2-vCPU
//! host has run 3-5x slower from one hour to the next, and differences of a few µs are what
//! the floor ratio is made of). An instruction count does not: the same binaries, configuration
//! and requests give the same count to within a fraction of a percent, on any x86-64 machine.
//! It counts instructions, not time (no cache misses, no frequency), so it complements the
//! timed cells; it does not replace them.
//!
//! How: each configuration's sidecar (the same bootstrap the timed cells use) runs under
//! `valgrind --tool=callgrind --instr-atstart=no`, so Envoy starts at near-native speed. The
//! upstream runs natively. For each traffic of the configuration:
//! 1. it waits until the cell answers as expected (V8 compiles the module under valgrind,
//!    which takes a while), then warms up with `WARMUP` requests on one keep-alive connection;
//! 2. switches instrumentation on (`callgrind_control -i on`), sends 50 more requests so the
//!    newly translated code settles, and zeroes the counters (`-z`);
//! 3. sends `N` requests and dumps the counters (`-d`): the dump's `summary:` is every thread's
//!    instructions over those `N` requests (main thread, worker, timers included).
//!
//! Reported: instructions per request, the instructions added over no filter under the same
//! traffic, and the ratio of that to what the floor filter adds.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tenant_egress_tests::loadbench::{sidecar_bootstrap, upstream_bootstrap};
use tenant_egress_tests::{free_ports, Http1Conn};

use crate::cells::{Config, DENIED, SVC_PORT};
use crate::{io_err, log, start, LoadError};

/// Requests before counting (V8 compiles and tiers the module's hot functions).
const WARMUP: usize = 300;
/// How long a sidecar under valgrind may take to start and answer as expected.
const VALGRIND_TIMEOUT: Duration = Duration::from_secs(300);

/// One counted cell.
pub struct Counted {
    pub key: String,
    pub label: String,
    pub traffic: &'static str,
    pub per_request: f64,
}

/// A sidecar running under callgrind; killed on drop.
struct Valgrind {
    child: Child,
    dir: PathBuf,
}

impl Drop for Valgrind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Valgrind {
    fn control(&self, args: &[&str]) -> Result<(), LoadError> {
        let out = Command::new("callgrind_control")
            .args(args)
            .arg(self.child.id().to_string())
            .output()
            .map_err(io_err("callgrind_control (install valgrind)"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(LoadError::Input(format!(
                "callgrind_control {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// The dumps written so far (`callgrind.out.<n>`), oldest first.
    fn dumps(&self) -> Vec<PathBuf> {
        let mut dumps: Vec<(u32, PathBuf)> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let path = e.ok()?.path();
                let n = path
                    .file_name()?
                    .to_str()?
                    .strip_prefix("callgrind.out.")?
                    .parse()
                    .ok()?;
                Some((n, path))
            })
            .collect();
        dumps.sort();
        dumps.into_iter().map(|(_, p)| p).collect()
    }

    /// The `summary:` of the newest dump, waiting for callgrind to write it.
    fn last_summary(&self, dumps_before: usize) -> Result<u64, LoadError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let dumps = self.dumps();
            if dumps.len() > dumps_before {
                if let Some(path) = dumps.last() {
                    let text = fs::read_to_string(path).unwrap_or_default();
                    if let Some(n) = text
                        .lines()
                        .find_map(|l| l.strip_prefix("summary: "))
                        .and_then(|v| v.trim().parse().ok())
                    {
                        return Ok(n);
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(LoadError::Input(format!(
                    "no callgrind dump appeared in {}",
                    self.dir.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Sends `n` requests on one keep-alive connection (reconnecting if the sidecar closes it);
/// every answer must have status `expect`.
fn send(port: u16, request: &[u8], expect: u16, n: usize) -> Result<(), LoadError> {
    let mut conn: Option<Http1Conn> = None;
    for _ in 0..n {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => conn.insert(Http1Conn::connect(port).map_err(io_err("connect"))?),
        };
        let r = c.request(request).map_err(io_err("request"))?;
        if r.status != expect {
            return Err(LoadError::Input(format!(
                "answered {} (expected {expect}): {}",
                r.status,
                r.body.chars().take(200).collect::<String>()
            )));
        }
        if r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            conn = None;
        }
    }
    Ok(())
}

/// Counts every cell of `configs`, `n` requests each.
pub fn count(envoy_bin: &Path, configs: &[Config], n: usize) -> Result<Vec<Counted>, LoadError> {
    let tmp = std::env::temp_dir();
    let (_upstream, upstream_port) = start("upstream", |port| upstream_bootstrap(port, &tmp))?;
    let mut out = Vec::new();
    for config in configs {
        let cfg = config.envoy_config();
        let t0 = Instant::now();
        let port = free_ports(1).first().copied().unwrap_or_default();
        let bootstrap = sidecar_bootstrap(&cfg, SVC_PORT, port, upstream_port, &tmp);
        let vg = spawn(envoy_bin, &config.key, &bootstrap.to_string(), port)?;
        for &traffic in &config.traffics {
            let expect = config.expect(traffic);
            let request = config.request(traffic);
            let name = format!("{}/{traffic}", config.key);
            let deadline = Instant::now() + VALGRIND_TIMEOUT;
            while send(port, &request, expect, 1).is_err() {
                if Instant::now() > deadline {
                    return Err(LoadError::Input(format!(
                        "{name}: no {expect} answer within {VALGRIND_TIMEOUT:?} under valgrind"
                    )));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            send(port, &request, expect, WARMUP)
                .map_err(|e| LoadError::Input(format!("{name} (warm-up): {e}")))?;
            vg.control(&["-i", "on"])?;
            send(port, &request, expect, 50)
                .map_err(|e| LoadError::Input(format!("{name}: {e}")))?;
            vg.control(&["-z"])?;
            let before = vg.dumps().len();
            send(port, &request, expect, n)
                .map_err(|e| LoadError::Input(format!("{name}: {e}")))?;
            vg.control(&["-d"])?;
            let total = vg.last_summary(before)?;
            vg.control(&["-i", "off"])?;
            let per_request = total as f64 / n as f64;
            log(&format!(
                "    {name:<28} {per_request:>10.0} instructions/request ({:.0} s)",
                t0.elapsed().as_secs_f64()
            ));
            out.push(Counted {
                key: config.key.clone(),
                label: config.label.clone(),
                traffic,
                per_request,
            });
        }
    }
    Ok(out)
}

/// Starts Envoy with `bootstrap` under callgrind, instrumentation off, its listener on `port`.
fn spawn(envoy_bin: &Path, key: &str, bootstrap: &str, port: u16) -> Result<Valgrind, LoadError> {
    let dir = std::env::temp_dir().join(format!(
        "tenant-egress-callgrind-{key}-{}-{port}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
    let path = dir.join("bootstrap.json");
    fs::write(&path, bootstrap).map_err(io_err(format!("write {}", path.display())))?;
    let log_file =
        fs::File::create(dir.join("valgrind.log")).map_err(io_err("create valgrind.log"))?;
    let child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--instr-atstart=no")
        // V8 writes the module's machine code at run time.
        .arg("--smc-check=all-non-file")
        .arg(format!(
            "--callgrind-out-file={}",
            dir.join("callgrind.out").display()
        ))
        .arg(envoy_bin)
        .arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--disable-hot-restart"])
        .args(["--log-level", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(io_err("spawn valgrind (install valgrind)"))?;
    Ok(Valgrind { child, dir })
}

/// The report: per cell, instructions per request, added over no filter under the same traffic
/// and that added count's ratio to the floor's.
pub fn markdown(counted: &[Counted], n: usize, configs: &[Config]) -> String {
    let find = |key: &str, traffic: &str| {
        counted
            .iter()
            .find(|c| c.key == key && c.traffic == traffic)
            .map(|c| c.per_request)
    };
    let added = |c: &Counted| find("none", c.traffic).map(|base| c.per_request - base);
    let mut s = String::from("# Instructions per request (callgrind)\n\n");
    s.push_str(&format!(
        "Every thread of the sidecar Envoy over {n} requests on one keep-alive connection, after \
         {WARMUP} warm-up requests (`load --instructions {n}`; see \
         `bench/src/bin/load/instructions.rs`). Machine-independent: the same binaries and \
         configuration give the same count on any x86-64 host.\n\n"
    ));
    s.push_str(
        "| configuration | traffic | instructions/request | added over no filter | ÷ floor |\n\
         |---|---|---:|---:|---:|\n",
    );
    for c in counted {
        let add = added(c);
        let floor = find("floor", c.traffic).zip(find("none", c.traffic));
        let ratio = match (add, floor) {
            (Some(a), Some((f, base))) if f > base && c.key != "none" && c.traffic != DENIED => {
                format!("{:.2}x", a / (f - base))
            }
            _ => "–".into(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            c.label,
            c.traffic,
            crate::report::thousands(c.per_request.round()),
            match add {
                Some(a) if c.key != "none" => {
                    let sign = if a < 0.0 { "" } else { "+" };
                    format!("{sign}{}", crate::report::thousands(a.round()))
                }
                _ => "–".into(),
            },
            ratio
        ));
    }
    let notes: Vec<String> = configs
        .iter()
        .filter(|c| !c.note.is_empty())
        .map(|c| format!("- **{}**: {}.", c.label, c.note))
        .collect();
    if !notes.is_empty() {
        s.push_str("\nConfigurations:\n\n");
        s.push_str(&notes.join("\n"));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;
    use crate::cells::{configs, ALLOWED};

    fn counted(key: &str, traffic: &'static str, per_request: f64) -> Counted {
        Counted {
            key: key.into(),
            label: key.into(),
            traffic,
            per_request,
        }
    }

    /// Added counts pair each cell with no filter under the same traffic; the ratio is to what
    /// the floor adds; no filter and denied cells get neither ratio.
    #[test]
    fn the_report_pairs_by_traffic_and_divides_by_the_floor() {
        let args = crate::Args::parse_from(["load", "--only", "floor,te-1k", "--bare-only"]);
        let cfgs = configs(&args, Path::new("f.wasm"), Path::new("n.wasm")).unwrap();
        let text = markdown(
            &[
                counted("none", ALLOWED, 170_000.0),
                counted("floor", ALLOWED, 205_000.0),
                counted("te-1k", ALLOWED, 212_000.0),
                counted("te-1k", DENIED, 150_000.0),
            ],
            1000,
            &cfgs,
        );
        assert!(
            text.contains("| none | allowed | 170,000 | – | – |"),
            "{text}"
        );
        assert!(
            text.contains("| floor | allowed | 205,000 | +35,000 | 1.00x |"),
            "{text}"
        );
        assert!(
            text.contains("| te-1k | allowed | 212,000 | +42,000 | 1.20x |"),
            "{text}"
        );
        assert!(
            text.contains("| te-1k | denied | 150,000 | – | – |"),
            "{text}"
        );
        assert!(text.contains("over 1000 requests"), "{text}");
    }
}
