//! The benchmark's results: every sample (`load.json`), the statistics over rounds and the
//! markdown report (`load.md`). `load --replot load.json` renders both again, and the chart,
//! from a saved file without measuring.

use serde::{Deserialize, Serialize};

/// One cell's measurement in one round.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Responses the load generator received.
    pub requests: u64,
    /// Responses with another status than the cell expects.
    #[serde(default)]
    pub unexpected: u64,
    pub socket_errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Responses per second (load generator).
    pub rps: f64,
    /// Requests the sidecar's listener counted (`downstream_rq_total`).
    pub envoy_requests: u64,
    /// Sidecar CPU (utime + stime, all threads) per request it counted.
    pub cpu_us_per_req: f64,
    /// Sidecar CPU in % of one CPU over the cell's wall time.
    pub cpu_pct: f64,
    /// CPU used by anything but the sidecar, the upstream and the load generator, % of one CPU.
    pub other_pct: f64,
    pub rss_mib: f64,
}

/// One configuration (a sidecar Envoy).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigInfo {
    pub key: String,
    pub label: String,
    #[serde(default)]
    pub note: String,
}

/// One cell: a configuration under one kind of traffic.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CellResult {
    /// `<config key>/<traffic>`.
    pub cell: String,
    pub host: String,
    pub expect: u16,
    pub samples: Vec<Sample>,
}

impl CellResult {
    pub fn key(&self) -> &str {
        self.cell
            .split_once('/')
            .map_or(self.cell.as_str(), |(k, _)| k)
    }

    pub fn traffic(&self) -> &str {
        self.cell.split_once('/').map_or("", |(_, t)| t)
    }
}

/// How the run was made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub loadavg_start: f64,
    pub loadavg_end: f64,
    pub date: String,
    pub envoy: String,
    pub commit: String,
    pub dirty: bool,
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    pub envoy_cpu: Option<usize>,
    pub load_cpu: Option<usize>,
    pub duration: f64,
    pub warmup: f64,
    pub rounds: usize,
    pub connections: usize,
    pub filter_wasm_bytes: u64,
    pub noop_wasm_bytes: u64,
    pub log_level: String,
    /// What generated the load (files written by the former Python script say `wrk`).
    #[serde(alias = "wrk")]
    pub load_generator: String,
    /// The bound on requests per cell and round, if the run had one (`--max-requests`).
    pub max_requests: Option<u64>,
}

/// The whole `load.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub meta: Meta,
    /// Labels and notes of the configurations (absent in files of the former Python script).
    #[serde(default)]
    pub configs: Vec<ConfigInfo>,
    pub cells: Vec<CellResult>,
}

/// Statistics of one cell over its rounds.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu_us_per_req: f64,
    pub cpu_pct: f64,
    pub other_pct: f64,
    pub rss_mib: f64,
    pub rps_min: f64,
    pub rps_max: f64,
    pub cpu_min: f64,
    pub cpu_max: f64,
    /// Median over rounds of (this cell's CPU/request − the same round's no-filter cell's, same
    /// traffic).
    pub added: Option<f64>,
    /// Median over rounds of this cell's requests/s relative to the same round's no-op cell.
    pub vs_noop_rps: Option<f64>,
    /// Median over rounds of this cell's capacity relative to the same round's no-op cell.
    pub vs_noop_cap: Option<f64>,
}

impl Summary {
    /// Requests/s one sidecar core sustains: 10⁶ / CPU µs per request.
    pub fn capacity(&self) -> f64 {
        1e6 / self.cpu_us_per_req
    }
}

/// The no-filter baseline cell.
pub const NONE_CELL: &str = "none/allowed";
/// The no-op wasm baseline cell.
pub const NOOP_CELL: &str = "noop-wasm/allowed";
/// The floor filter's configuration (issue 14).
pub const FLOOR: &str = "floor";

/// Median (mean of the middle two for an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Paired statistic: median over rounds of `f(this round's sample, the baseline's sample)`.
fn paired(c: &CellResult, base: &CellResult, f: impl Fn(&Sample, &Sample) -> f64) -> f64 {
    let v: Vec<f64> = c
        .samples
        .iter()
        .zip(&base.samples)
        .map(|(x, b)| f(x, b))
        .collect();
    median(&v)
}

/// The cell of configuration `key` under the same traffic as `c`, else under `allowed` (the
/// baselines have no denied cell: a denial is compared with a bare allowed request).
fn baseline<'a>(cells: &'a [CellResult], key: &str, c: &CellResult) -> Option<&'a CellResult> {
    let same = format!("{key}/{}", c.traffic());
    let allowed = format!("{key}/allowed");
    cells
        .iter()
        .find(|b| b.cell == same)
        .or_else(|| cells.iter().find(|b| b.cell == allowed))
}

/// Medians over rounds, plus the statistics paired with the same round's baselines of the same
/// traffic (drift between rounds cancels). In the cells' order.
pub fn summarize(cells: &[CellResult]) -> Vec<(String, Summary)> {
    cells
        .iter()
        .map(|c| {
            let none = baseline(cells, "none", c);
            let noop = baseline(cells, "noop-wasm", c);
            let col = |f: fn(&Sample) -> f64| -> Vec<f64> { c.samples.iter().map(f).collect() };
            let max = |v: Vec<f64>| v.into_iter().fold(f64::NAN, f64::max);
            let min = |v: Vec<f64>| v.into_iter().fold(f64::NAN, f64::min);
            let s = Summary {
                rps: median(&col(|s| s.rps)),
                p50_ms: median(&col(|s| s.p50_ms)),
                p99_ms: median(&col(|s| s.p99_ms)),
                cpu_us_per_req: median(&col(|s| s.cpu_us_per_req)),
                cpu_pct: median(&col(|s| s.cpu_pct)),
                other_pct: median(&col(|s| s.other_pct)),
                rss_mib: max(col(|s| s.rss_mib)),
                rps_min: min(col(|s| s.rps)),
                rps_max: max(col(|s| s.rps)),
                cpu_min: min(col(|s| s.cpu_us_per_req)),
                cpu_max: max(col(|s| s.cpu_us_per_req)),
                added: none.map(|b| paired(c, b, |x, b| x.cpu_us_per_req - b.cpu_us_per_req)),
                vs_noop_rps: noop.map(|b| paired(c, b, |x, b| x.rps / b.rps)),
                vs_noop_cap: noop.map(|b| paired(c, b, |x, b| b.cpu_us_per_req / x.cpu_us_per_req)),
            };
            (c.cell.clone(), s)
        })
        .collect()
}

/// `12345.6` → `12,346`.
pub fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let neg = x < 0.0;
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if neg && out != "0" {
        out.insert(0, '-');
    }
    out
}

fn label_of<'a>(report: &'a Report, key: &'a str) -> &'a str {
    report
        .configs
        .iter()
        .find(|c| c.key == key)
        .map_or(key, |c| c.label.as_str())
}

/// The markdown report.
pub fn markdown(report: &Report) -> String {
    let m = &report.meta;
    let summary = summarize(&report.cells);
    let get = |name: &str| summary.iter().find(|(n, _)| n == name).map(|(_, s)| s);
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(
        "# Envoy load benchmark: tenant-egress vs no filter, a no-op wasm filter and Envoy RBAC"
            .into(),
    );
    line(String::new());
    line(format!(
        "{} · Envoy {} (`--concurrency 1`, V8) · commit `{}`{} · {}, {} CPUs, Linux {} · load \
         average {:.1} at start, {:.1} at end",
        m.date,
        m.envoy,
        m.commit,
        if m.dirty {
            " (with uncommitted changes in config/ or filter/)"
        } else {
            ""
        },
        m.cpu,
        m.cpus,
        m.kernel,
        m.loadavg_start,
        m.loadavg_end,
    ));
    line(String::new());
    let cpu =
        |c: Option<usize>| c.map_or_else(|| "no CPU in particular".into(), |c| format!("CPU {c}"));
    line(format!(
        "Sidecar pinned to {}; upstream Envoy (direct_response) and {} ({} connections, \
         keep-alive HTTP/1.1{}) pinned to {}. {} rounds of {} s per cell, cells alternating A B C \
         ... each round, after {} s of warm-up each; medians over rounds (range in brackets). \
         Sidecar log level `{}`. tenant_egress_filter.wasm {} bytes, no-op {} bytes.",
        cpu(m.envoy_cpu),
        m.load_generator,
        m.connections,
        m.max_requests
            .map_or_else(String::new, |n| format!(", at most {n} requests per cell")),
        cpu(m.load_cpu),
        m.rounds,
        m.duration,
        m.warmup,
        m.log_level,
        thousands(m.filter_wasm_bytes as f64),
        thousands(m.noop_wasm_bytes as f64),
    ));
    line(String::new());
    for s in [
        "- **sidecar CPU µs/request**: utime+stime of the sidecar Envoy process (all its threads, \
         from /proc/<pid>/stat) over the requests its listener counted (`downstream_rq_total`); \
         the figure the targets are about.",
        "- **capacity**: 10⁶ / CPU µs per request = requests/s one sidecar core sustains. When the \
         sidecar is not at 100% of its CPU, the measured requests/s is bounded by the \
         load-generator core (the load generator and the upstream share it), and capacity is the \
         comparable throughput.",
        "- **other load**: CPU used during the cell by processes other than the sidecar, the \
         upstream and the load generator (% of one CPU): how shared the machine was.",
        "",
        "- **added over no filter**: median over rounds of (this cell's CPU/request − the same \
         round's no-filter CPU/request): paired by round, so drift between rounds cancels.",
        "",
        "| configuration | traffic | requests/s | p50 ms | p99 ms | sidecar CPU µs/request | \
         added over no filter µs | capacity req/s/core | sidecar CPU % | other load % | RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ] {
        line(s.into());
    }
    for (c, (_, r)) in report.cells.iter().zip(&summary) {
        line(format!(
            "| {} | {} → {} | {} | {:.2} | {:.2} | **{:.1}** [{:.1}–{:.1}] | {:+.1} | {} | {:.0} | {:.0} | {:.0} |",
            label_of(report, c.key()),
            c.traffic(),
            c.expect,
            thousands(r.rps),
            r.p50_ms,
            r.p99_ms,
            r.cpu_us_per_req,
            r.cpu_min,
            r.cpu_max,
            r.added.unwrap_or(f64::NAN),
            thousands(r.capacity()),
            r.cpu_pct,
            r.other_pct,
            r.rss_mib,
        ));
    }
    line(String::new());
    line("Configurations:".into());
    line(String::new());
    for c in report.configs.iter().filter(|c| !c.note.is_empty()) {
        line(format!("- **{}**: {}.", c.label, c.note));
    }
    line(
        "- Allowed traffic is proxied to the upstream; denied traffic is answered by the filter \
         (local reply), so a denied request can cost the sidecar less than an allowed one: \
         compare denied cells with each other, not with \"no filter\"."
            .into(),
    );
    floor_section(report, &summary, &mut line);
    if let (Some(_), Some(noop)) = (get(NONE_CELL), get(NOOP_CELL)) {
        let noop_added = noop.added.unwrap_or(f64::NAN);
        line(String::new());
        line("## Targets (issue 5)".into());
        line(String::new());
        line(format!(
            "No-op wasm adds {noop_added:.1} µs/request over no filter (1.2x = {:.1} µs); its \
             throughput is {} req/s measured, {} req/s/core capacity.",
            1.2 * noop_added,
            thousands(noop.rps),
            thousands(noop.capacity()),
        ));
        line(String::new());
        line(
            "| tenant-egress cell | added CPU µs/req | ≤ 1.2x no-op's | throughput vs no-op \
             (paired): measured / capacity | ≥ 90% |"
                .into(),
        );
        line("|---|---:|---|---:|---|".into());
        let met = |ok: bool| if ok { "met" } else { "**missed**" };
        for (c, (_, r)) in report.cells.iter().zip(&summary) {
            if !c.key().starts_with("te-") || c.traffic() != "allowed" {
                continue;
            }
            let added = r.added.unwrap_or(f64::NAN);
            let ratio = if noop_added > 0.0 {
                added / noop_added
            } else {
                f64::NAN
            };
            let tp = r.vs_noop_rps.unwrap_or(f64::NAN) * 100.0;
            let tc = r.vs_noop_cap.unwrap_or(f64::NAN) * 100.0;
            line(format!(
                "| {} | {added:.1} ({ratio:.2}x) | {} | {tp:.0}% / {tc:.0}% | measured {}, capacity {} |",
                c.cell,
                met(added <= 1.2 * noop_added),
                met(tp >= 90.0),
                met(tc >= 90.0),
            ));
        }
        line(String::new());
        for traffic in ["allowed", "denied"] {
            let rbac = report
                .cells
                .iter()
                .find(|c| c.key().starts_with("rbac-") && c.traffic() == traffic);
            let te = report
                .cells
                .iter()
                .find(|c| c.cell == format!("te-1k/{traffic}"));
            let (Some(rc), Some(tc)) = (rbac, te) else {
                continue;
            };
            let (Some(t), Some(rr)) = (get(&tc.cell), get(&rc.cell)) else {
                continue;
            };
            let diff = paired(tc, rc, |x, b| b.cpu_us_per_req - x.cpu_us_per_req);
            line(format!(
                "- 1,000 rules, {traffic}: tenant-egress {:.1} µs/req ({} req/s measured), RBAC \
                 {:.1} µs/req ({} req/s) → tenant-egress {} RBAC on CPU per request (RBAC − \
                 tenant-egress, paired by round: {diff:+.1} µs).",
                t.cpu_us_per_req,
                thousands(t.rps),
                rr.cpu_us_per_req,
                thousands(rr.rps),
                if t.cpu_us_per_req < rr.cpu_us_per_req {
                    "beats"
                } else {
                    "**does not beat**"
                },
            ));
        }
    }
    out
}

/// Issue 14's table: each configuration's added CPU over no filter on bare and realistic
/// requests, and tenant-egress's as a ratio to the floor filter's and the no-op filter's.
fn floor_section(report: &Report, summary: &[(String, Summary)], line: &mut impl FnMut(String)) {
    let added = |key: &str, traffic: &str| {
        let name = format!("{key}/{traffic}");
        summary
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, s)| s.added)
    };
    let Some(floor_bare) = added(FLOOR, "allowed") else {
        return;
    };
    let floor_real = added(FLOOR, "realistic");
    let noop_bare = added("noop-wasm", "allowed");
    let noop_real = added("noop-wasm", "realistic");
    let num = |x: Option<f64>| x.map_or_else(|| "–".into(), |x| format!("{x:+.1}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "–".into(),
    };
    line(String::new());
    line("## The floor (issue 14)".into());
    line(String::new());
    line(
        "Added sidecar CPU µs per request over no filter under the same traffic (paired by \
         round), and the ratio of that to what the floor filter and the no-op filter add. \
         *bare*: `Host` only; *realistic*: 22 headers with a 2 KB cookie and a 1 KB bearer \
         token. Target: tenant-egress ≤ 1.1x the floor on realistic requests, and its \
         realistic − bare no larger than the floor's."
            .into(),
    );
    line(String::new());
    line(
        "| configuration | added, bare | added, realistic | realistic − bare | ÷ floor, bare | \
         ÷ floor, realistic | ÷ no-op, bare | ÷ no-op, realistic | ≤ 1.1x floor (realistic) |"
            .into(),
    );
    line("|---|---:|---:|---:|---:|---:|---:|---:|---|".into());
    let floor_growth = floor_real.map(|r| r - floor_bare);
    for c in &report.configs {
        let bare = added(&c.key, "allowed");
        if c.key == "none" || bare.is_none() {
            continue;
        }
        let real = added(&c.key, "realistic");
        let growth = real.zip(bare).map(|(r, b)| r - b);
        let verdict = match (c.key.starts_with("te-"), real, floor_real) {
            (true, Some(r), Some(f)) if f > 0.0 => {
                let ok = r <= 1.1 * f;
                let flat = growth.zip(floor_growth).is_some_and(|(g, fg)| g <= fg);
                format!(
                    "{}; growth {}",
                    if ok { "met" } else { "**missed**" },
                    if flat {
                        "within the floor's"
                    } else {
                        "**above the floor's**"
                    }
                )
            }
            _ => String::new(),
        };
        line(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {verdict} |",
            c.label,
            num(bare),
            num(real),
            num(growth),
            ratio(bare, Some(floor_bare)),
            ratio(real, floor_real),
            ratio(bare, noop_bare),
            ratio(real, noop_real),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(name: &str, cpu: &[f64], rps: &[f64]) -> CellResult {
        CellResult {
            cell: name.into(),
            host: "h".into(),
            expect: 200,
            samples: cpu
                .iter()
                .zip(rps)
                .map(|(&c, &r)| Sample {
                    cpu_us_per_req: c,
                    rps: r,
                    ..Sample::default()
                })
                .collect(),
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn paired_statistics_cancel_drift_between_rounds() {
        let cells = vec![
            cell(NONE_CELL, &[30.0, 40.0, 35.0], &[100.0, 80.0, 90.0]),
            cell(NOOP_CELL, &[33.0, 43.0, 38.0], &[90.0, 72.0, 81.0]),
            cell("te-1k/allowed", &[36.0, 46.0, 41.0], &[81.0, 64.8, 72.9]),
        ];
        let s = summarize(&cells);
        assert_eq!(s[2].0, "te-1k/allowed");
        let te = &s[2].1;
        assert!((te.added.unwrap() - 6.0).abs() < 1e-9);
        assert!((te.vs_noop_rps.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(te.cpu_us_per_req, 41.0);
        assert_eq!((te.cpu_min, te.cpu_max), (36.0, 46.0));
        assert!((s[1].1.added.unwrap() - 3.0).abs() < 1e-9);
    }

    #[test]
    fn markdown_has_the_table_and_the_targets() {
        let report = Report {
            meta: Meta {
                rounds: 3,
                ..Meta::default()
            },
            configs: vec![ConfigInfo {
                key: "te-1k".into(),
                label: "tenant-egress, 1,000 rules".into(),
                note: "gen-policy 1000".into(),
            }],
            cells: vec![
                cell(NONE_CELL, &[30.0, 40.0, 35.0], &[100.0, 80.0, 90.0]),
                cell(NOOP_CELL, &[33.0, 43.0, 38.0], &[90.0, 72.0, 81.0]),
                cell("te-1k/allowed", &[36.0, 46.0, 41.0], &[81.0, 64.8, 72.9]),
            ],
        };
        let md = markdown(&report);
        assert!(
            md.contains("| tenant-egress, 1,000 rules | allowed → 200 |"),
            "{md}"
        );
        assert!(
            md.contains("| te-1k/allowed | 6.0 (2.00x) | **missed** | 90% /"),
            "{md}"
        );
        assert!(
            md.contains("- **tenant-egress, 1,000 rules**: gen-policy 1000."),
            "{md}"
        );
    }

    #[test]
    fn floor_ratios_use_the_same_traffic_baseline() {
        let info = |key: &str, label: &str| ConfigInfo {
            key: key.into(),
            label: label.into(),
            note: String::new(),
        };
        let report = Report {
            configs: vec![
                info("none", "no filter"),
                info("noop-wasm", "no-op"),
                info(FLOOR, "floor"),
                info("te-1k", "te 1k"),
            ],
            cells: vec![
                cell(NONE_CELL, &[30.0], &[1.0]),
                cell("none/realistic", &[40.0], &[1.0]),
                cell(NOOP_CELL, &[32.0], &[1.0]),
                cell("noop-wasm/realistic", &[42.0], &[1.0]),
                cell("floor/allowed", &[34.0], &[1.0]),
                cell("floor/realistic", &[45.0], &[1.0]),
                cell("te-1k/allowed", &[36.0], &[1.0]),
                cell("te-1k/realistic", &[50.0], &[1.0]),
                cell("te-1k/denied", &[20.0], &[1.0]),
            ],
            ..Report::default()
        };
        let s = summarize(&report.cells);
        let added = |n: &str| s.iter().find(|(k, _)| k == n).unwrap().1.added.unwrap();
        assert_eq!(added("te-1k/realistic"), 10.0);
        assert_eq!(added("te-1k/denied"), -10.0); // no denied baseline: the bare allowed one
        let md = markdown(&report);
        // te: +6 bare (1.50x the floor's +4), +10 realistic (2.00x the floor's +5).
        assert!(
            md.contains("| te 1k | +6.0 | +10.0 | +4.0 | 1.50x | 2.00x | 3.00x | 5.00x | **missed**; growth **above the floor's** |"),
            "{md}"
        );
        assert!(
            md.contains("| floor | +4.0 | +5.0 | +1.0 | 1.00x | 1.00x | 2.00x | 2.50x |  |"),
            "{md}"
        );
    }

    #[test]
    fn numbers_with_thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1234.0), "-1,234");
        assert_eq!(thousands(f64::NAN), "n/a");
    }
}
