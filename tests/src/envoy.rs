//! [`Envoy`]: one running Envoy process, owned by a test.
//!
//! Every run gets its own scratch directory under
//! `$TMPDIR/tenant-egress-tests/` holding `bootstrap.json`, `envoy.log`,
//! `stdout.log`/`stderr.log`, `access.log`, `admin.addr` and (with ECDS)
//! `xds/ecds.json`. Dropping the [`Envoy`] kills the process; the directory is
//! removed unless the test is panicking (then the log tail is printed and the
//! directory kept) or `TENANT_EGRESS_KEEP_TMP=1` is set.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::config::{
    ecds_path, upstream_stat_prefix, wasm_typed_config, EnvoyConfig, FilterMode, Topology,
    ECDS_FILTER_NAME,
};
use crate::http::{Http1Conn, Response};

/// How long [`Envoy`] start-up may take until the admin `/ready` says LIVE. A deadline, not a
/// wait: a healthy start takes well under a second. It is generous because V8 compiles the
/// module and every VM (one per worker plus the main thread's) compiles the policy before the
/// listeners open, and a 100,000-rule policy on a 2-core machine that is also compiling took
/// over 15 s.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval of every bounded wait in this module.
pub const POLL: Duration = Duration::from_millis(50);

/// Why Envoy did not come up; `Display` includes the log tail.
#[derive(Debug)]
pub struct StartError {
    pub reason: String,
    /// `Some` if the process exited on its own.
    pub exit_status: Option<ExitStatus>,
    /// Run directory.
    pub dir: PathBuf,
    /// Whether `dir` was kept for inspection: yes for the panicking `start`
    /// functions or with `TENANT_EGRESS_KEEP_TMP=1`; `try_start` removes it
    /// (the log and stderr are in this struct).
    pub dir_kept: bool,
    /// Full `envoy.log`.
    pub log: String,
    /// Envoy's stderr (start-up errors may land here).
    pub stderr: String,
}

impl StartError {
    pub(crate) fn other(reason: &str) -> Self {
        Self {
            reason: reason.into(),
            exit_status: None,
            dir: PathBuf::new(),
            dir_kept: false,
            log: String::new(),
            stderr: String::new(),
        }
    }

    /// A listener could not bind its port (taken between allocation and start).
    pub fn is_port_conflict(&self) -> bool {
        self.exit_status.is_some()
            && (self.log.contains("Address already in use")
                || self.stderr.contains("Address already in use"))
    }

    /// Log and stderr together, for assertions on the failure reason.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.log, self.stderr)
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.reason)?;
        if let Some(s) = self.exit_status {
            writeln!(f, "exit status: {s}")?;
        }
        if self.dir_kept {
            writeln!(f, "run dir: {}", self.dir.display())?;
        } else {
            writeln!(
                f,
                "run dir: {} (removed; set TENANT_EGRESS_KEEP_TMP=1 to keep it)",
                self.dir.display()
            )?;
        }
        writeln!(
            f,
            "--- envoy.log (last 200 lines, banner omitted) ---\n{}",
            tail(&without_banner(&self.log), 200)
        )?;
        write!(
            f,
            "--- stderr (last 50 lines) ---\n{}",
            tail(&self.stderr, 50)
        )
    }
}

impl std::error::Error for StartError {}

/// Result of waiting for an ECDS update to be processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcdsOutcome {
    /// Envoy applied the new filter config on all workers (`update_success`
    /// and `config_reload` went up).
    Accepted,
    /// Envoy refused it (`update_rejected` or `update_failure` went up); the
    /// previous config keeps serving.
    Rejected,
    /// Neither counter moved within the timeout.
    TimedOut,
}

/// Snapshot of the ECDS counters of the filter, see [`Envoy::ecds_counts`]
/// (`extension_config_discovery.http_filter.tenant-egress.<counter>`).
///
/// Per update (one read of the file) exactly one of `success`, `rejected`,
/// `failure` goes up. `reload`/`fail` are the extension-config provider's own
/// counters: an accepted update bumps `reload`; a rejected one bumps `fail`
/// and, for a wasm plugin that fails to load, ALSO `reload` (observed with
/// Envoy 1.40), so do not take `reload` alone as "accepted".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EcdsCounts {
    /// `update_attempt`: the file was (re)read.
    pub attempt: u64,
    /// `update_success`: the new config was accepted and applied.
    pub success: u64,
    /// `update_rejected`: parsed but refused (wrong type URL, wasm failing to
    /// load or its `on_configure` returning false / panicking, ...).
    pub rejected: u64,
    /// `update_failure`: the file could not be read/parsed as a DiscoveryResponse.
    pub failure: u64,
    /// `config_reload`.
    pub reload: u64,
    /// `config_fail`.
    pub fail: u64,
}

struct EcdsState {
    path: PathBuf,
    /// For [`FilterMode::Wasm`]: the module and failure policy, to re-render on update.
    wasm: Option<(PathBuf, String)>,
    version: AtomicU64,
}

/// A running Envoy; see the module docs.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    bootstrap_path: PathBuf,
    log_path: PathBuf,
    stderr_path: PathBuf,
    admin_port: u16,
    topology: Option<Topology>,
    ecds: Option<EcdsState>,
    keep_dir: bool,
    /// Through both ends ([`crate::ends`]): the destination sidecars and the bypass probes.
    both: Option<crate::ends::BothEnds>,
}

/// What a destination sidecar of a both-ends run is started from ([`crate::ends`]).
pub(crate) struct DestinationLaunch<'a> {
    pub(crate) cfg: &'a EnvoyConfig,
    pub(crate) namespace: &'a str,
    pub(crate) policy: &'a str,
    pub(crate) keep_on_failure: bool,
}

static RUN_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty scratch directory named after the current test thread.
pub fn new_run_dir() -> PathBuf {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>();
    let test: String = test
        .chars()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir()
        .join("tenant-egress-tests")
        .join(format!("{test}-{}-{n}-{nanos:x}", std::process::id()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Writes `contents` to `path` atomically: a sibling temp file renamed over it
/// (a rename is the event Envoy's file watcher reacts to).
pub fn write_atomically(path: &Path, contents: &[u8]) {
    static TMP: AtomicUsize = AtomicUsize::new(0);
    let parent = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    let tmp = parent.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = fs::File::create(&tmp).unwrap_or_else(|e| panic!("create {}: {e}", tmp.display()));
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    drop(f);
    fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), path.display()));
}

/// The file-based xDS `DiscoveryResponse` carrying one ECDS resource.
pub fn ecds_discovery_response(version: u64, typed_config: &Value) -> Value {
    json!({
        "version_info": version.to_string(),
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": ECDS_FILTER_NAME,
            "typed_config": typed_config,
        }],
    })
}

/// The counters and gauges of an admin `/stats?format=json` body, by full name (histograms
/// are left out).
pub fn parse_stats(body: &str) -> Result<BTreeMap<String, u64>, String> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| format!("admin /stats?format=json is not JSON ({e}): {body}"))?;
    let mut out = BTreeMap::new();
    for s in v["stats"].as_array().map(Vec::as_slice).unwrap_or_default() {
        if let (Some(name), Some(value)) = (s["name"].as_str(), s["value"].as_u64()) {
            out.insert(name.to_string(), value);
        }
    }
    Ok(out)
}

/// Counter/gauge `name` in `stats`, also under `wasmcustom.<name>` (the namespace Envoy may
/// give proxy-wasm metrics).
pub fn stat(stats: &BTreeMap<String, u64>, name: &str) -> Option<u64> {
    stats
        .get(name)
        .or_else(|| stats.get(&format!("wasmcustom.{name}")))
        .copied()
}

/// The stats of an Envoy this process did not start (the demo's, a container's), from its
/// admin interface on 127.0.0.1:`admin_port`.
pub fn admin_stats(admin_port: u16) -> std::io::Result<BTreeMap<String, u64>> {
    let r = Http1Conn::connect(admin_port)?.request(
        b"GET /stats?format=json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )?;
    if r.status != 200 {
        return Err(std::io::Error::other(format!(
            "admin 127.0.0.1:{admin_port} /stats answered {}",
            r.status
        )));
    }
    parse_stats(&r.body).map_err(std::io::Error::other)
}

/// `envoy.log` without the start-up banner (the long lists of linked
/// extensions and header maps), which would otherwise fill any log tail.
pub fn without_banner(log: &str) -> String {
    log.lines()
        .filter(|l| {
            let msg = l
                .split_once("[source/")
                .and_then(|(_, rest)| rest.split_once("] "))
                .map(|(_, m)| m);
            !matches!(msg, Some(m) if m.starts_with("  ") || m == "statically linked extensions:")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `TENANT_EGRESS_KEEP_TMP` set (and not `0`): never remove run directories.
fn keep_tmp_env() -> bool {
    std::env::var_os("TENANT_EGRESS_KEEP_TMP").is_some_and(|v| v != "0")
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl Envoy {
    /// Starts Envoy with a hand-written bootstrap (YAML, or JSON if it starts
    /// with `{`). The admin address may use port 0: it is discovered through
    /// `--admin-address-path`. Panics with the log if Envoy does not get ready.
    pub fn start(bootstrap: &str) -> Envoy {
        match Self::start_raw(bootstrap, true) {
            Ok(e) => e,
            Err(e) => panic!("Envoy failed to start: {e}"),
        }
    }

    /// [`start`](Self::start) returning the failure instead of panicking.
    pub fn try_start(bootstrap: &str) -> Result<Envoy, StartError> {
        Self::start_raw(bootstrap, false)
    }

    fn start_raw(bootstrap: &str, keep_on_failure: bool) -> Result<Envoy, StartError> {
        let dir = new_run_dir();
        let ext = if bootstrap.trim_start().starts_with('{') {
            "json"
        } else {
            "yaml"
        };
        let path = dir.join(format!("bootstrap.{ext}"));
        fs::write(&path, bootstrap).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let args = ["-l", "info", "--component-log-level", "wasm:debug"].map(String::from);
        Self::spawn(dir, path, &args, None, None, keep_on_failure)
    }

    /// Renders `cfg` with fresh ports and starts it (used by [`EnvoyConfig::try_start`]).
    pub(crate) fn launch(cfg: &EnvoyConfig, keep_on_failure: bool) -> Result<Envoy, StartError> {
        let dir = new_run_dir();
        let topo = cfg.allocate();
        let ecds = if cfg.uses_ecds() {
            let path = ecds_path(&dir);
            let body = ecds_discovery_response(1, &cfg.filter_typed_config());
            write_atomically(&path, &serde_json::to_vec_pretty(&body).unwrap_or_default());
            let wasm = match cfg.filter() {
                FilterMode::Wasm { .. } => {
                    Some((cfg.resolved_wasm_file(), cfg.failure_policy().to_string()))
                }
                _ => None,
            };
            Some(EcdsState {
                path,
                wasm,
                version: AtomicU64::new(1),
            })
        } else {
            None
        };
        let mut bootstrap = cfg.render(&topo, &dir);
        let both = if crate::ends::wanted(cfg) {
            match crate::ends::start(cfg, &topo, &dir, &mut bootstrap, keep_on_failure) {
                Ok(b) => Some(b),
                Err(e) => {
                    let _ = fs::remove_dir_all(&dir);
                    return Err(e);
                }
            }
        } else {
            None
        };
        let path = dir.join("bootstrap.json");
        fs::write(
            &path,
            serde_json::to_vec_pretty(&bootstrap).unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let mut envoy = Self::spawn(
            dir,
            path,
            &cfg.cli_args(),
            Some(topo),
            ecds,
            keep_on_failure,
        )?;
        if let Some(b) = &both {
            b.register();
        }
        envoy.both = both;
        Ok(envoy)
    }

    /// Starts a destination sidecar of a both-ends run: `render` gets the run directory.
    pub(crate) fn launch_destination(
        launch: DestinationLaunch<'_>,
        render: impl FnOnce(&Path) -> Value,
    ) -> Result<Envoy, StartError> {
        let dir = new_run_dir();
        let cfg = launch.cfg;
        let ecds = if cfg.uses_ecds() {
            let path = ecds_path(&dir);
            let typed = wasm_typed_config(&crate::wasm_path(), launch.policy, cfg.failure_policy());
            let body = ecds_discovery_response(1, &typed);
            write_atomically(&path, &serde_json::to_vec_pretty(&body).unwrap_or_default());
            Some(EcdsState {
                path,
                wasm: Some((crate::wasm_path(), cfg.failure_policy().to_string())),
                version: AtomicU64::new(1),
            })
        } else {
            None
        };
        let bootstrap = render(&dir);
        let path = dir.join("bootstrap.json");
        fs::write(
            &path,
            serde_json::to_vec_pretty(&bootstrap).unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        Self::spawn(
            dir,
            path,
            &cfg.cli_args(),
            None,
            ecds,
            launch.keep_on_failure,
        )
        .map_err(|mut e| {
            e.reason = format!("destination sidecar of {}: {}", launch.namespace, e.reason);
            e
        })
    }

    fn spawn(
        dir: PathBuf,
        bootstrap_path: PathBuf,
        args: &[String],
        topology: Option<Topology>,
        ecds: Option<EcdsState>,
        keep_on_failure: bool,
    ) -> Result<Envoy, StartError> {
        let bin = crate::envoy_bin();
        let log_path = dir.join("envoy.log");
        let stderr_path = dir.join("stderr.log");
        let admin_addr_path = dir.join("admin.addr");
        let open = |p: &Path| {
            fs::File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()))
        };
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&bootstrap_path)
            .arg("--log-path")
            .arg(&log_path)
            .args(["--file-flush-interval-msec", "50", "--concurrency", "1"])
            // No shared memory / hot-restart domain sockets: any number of
            // Envoys can run in parallel without a unique --base-id.
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_addr_path)
            .args(args);
        cmd.stdin(Stdio::null())
            .stdout(open(&dir.join("stdout.log")))
            .stderr(open(&stderr_path));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Err(StartError {
                    reason: format!("cannot spawn {}: {e}", bin.display()),
                    exit_status: None,
                    dir,
                    dir_kept: true,
                    log: String::new(),
                    stderr: String::new(),
                })
            }
        };
        let mut envoy = Envoy {
            child,
            dir,
            bootstrap_path,
            log_path,
            stderr_path,
            admin_port: 0,
            topology,
            ecds,
            keep_dir: false,
            both: None,
        };
        match envoy.wait_ready(&admin_addr_path) {
            Ok(()) => Ok(envoy),
            Err((reason, exit_status)) => {
                // Give the file logger a chance to flush before reading it.
                std::thread::sleep(Duration::from_millis(150));
                let _ = envoy.child.kill();
                let _ = envoy.child.wait();
                envoy.keep_dir = keep_on_failure;
                let err = StartError {
                    reason,
                    exit_status,
                    dir: envoy.dir.clone(),
                    dir_kept: keep_on_failure || keep_tmp_env(),
                    log: envoy.log(),
                    stderr: read_lossy(&envoy.stderr_path),
                };
                drop(envoy); // removes the run dir unless kept
                Err(err)
            }
        }
    }

    fn wait_ready(&mut self, admin_addr_path: &Path) -> Result<(), (String, Option<ExitStatus>)> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(("Envoy exited during start-up".into(), Some(status)));
                }
                Ok(None) => {}
                Err(e) => return Err((format!("try_wait: {e}"), None)),
            }
            if self.admin_port == 0 {
                let addr = fs::read_to_string(admin_addr_path).unwrap_or_default();
                if let Some(port) = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok()) {
                    self.admin_port = port;
                }
            }
            if self.admin_port != 0 {
                if let Ok(r) = self.admin("GET", "/ready") {
                    if r.status == 200 && r.body.trim() == "LIVE" {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err((
                    format!(
                        "Envoy not ready within {READY_TIMEOUT:?} (admin port {})",
                        self.admin_port
                    ),
                    None,
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The run's scratch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn bootstrap_path(&self) -> &Path {
        &self.bootstrap_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The destination sidecars of a both-ends run ([`crate::ends`]); empty otherwise.
    pub fn destinations(&self) -> &[std::sync::Arc<crate::ends::Destination>] {
        self.both
            .as_ref()
            .map_or(&[], |b| b.destinations.as_slice())
    }

    /// The destination sidecar of namespace `ns` (a both-ends run).
    pub fn destination(&self, ns: &str) -> &Envoy {
        match self.destinations().iter().find(|d| d.namespace == ns) {
            Some(d) => &d.envoy,
            None => panic!("no destination sidecar for namespace {ns} in this run"),
        }
    }

    /// What the bypass probes of a both-ends run found so far; `None` for the caller's end only.
    pub fn both_ends_tally(&self) -> Option<crate::ends::Tally> {
        self.both.as_ref().map(crate::ends::BothEnds::tally)
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Ports of this run (only for Envoys started from an [`EnvoyConfig`]).
    pub fn topology(&self) -> &Topology {
        self.topology
            .as_ref()
            .expect("this Envoy was started from a raw bootstrap: no topology")
    }

    /// Local port of the outbound listener standing for service port `service_port`.
    pub fn listener_port(&self, service_port: u16) -> u16 {
        match self.topology().listeners.get(&service_port) {
            Some(&p) => p,
            None => panic!(
                "no outbound listener for service port {service_port}; add a service with \
                 that port or EnvoyConfig::listener({service_port})"
            ),
        }
    }

    /// Through both ends: the bypass listener of the outbound listener of `service_port` (the
    /// same routes and mTLS identity, no filter of the caller's own), where only the destination
    /// sidecar decides ([`crate::ends`]).
    pub fn bypass_port(&self, service_port: u16) -> u16 {
        let local = self.listener_port(service_port);
        match self.both.as_ref().and_then(|b| b.bypass_port(local)) {
            Some(p) => p,
            None => {
                panic!("no bypass listener for service port {service_port}: not a both-ends run")
            }
        }
    }

    /// Local port of the upstream listener of `svc.ns:port`.
    ///
    /// Through both ends, a mesh service's application sits behind its destination sidecar:
    /// its port there.
    pub fn upstream_port(&self, svc: &str, ns: &str, port: u16) -> u16 {
        let key = (svc.to_string(), ns.to_string(), port);
        if let Some(p) = self.both.as_ref().and_then(|b| b.app_port(&key)) {
            return p;
        }
        match self
            .topology()
            .upstreams
            .get(&(svc.to_string(), ns.to_string(), port))
        {
            Some(&p) => p,
            None => panic!("no service {svc}.{ns} with port {port} in this config"),
        }
    }

    /// Local port of the canary (passthrough target) listener.
    pub fn canary_port(&self) -> u16 {
        self.topology().canary
    }

    /// Requests that reached the upstream listener of `svc.ns:port`.
    ///
    /// Through both ends, a mesh service's application sits behind its destination sidecar:
    /// the requests it received since this caller started.
    pub fn upstream_hits(&self, svc: &str, ns: &str, port: u16) -> u64 {
        let _ = self.upstream_port(svc, ns, port); // validates the service exists
        let key = (svc.to_string(), ns.to_string(), port);
        if let Some(hits) = self.both.as_ref().and_then(|b| b.app_hits(&key)) {
            return hits;
        }
        let name = format!(
            "http.{}.downstream_rq_total",
            upstream_stat_prefix(svc, ns, port)
        );
        self.counter(&name).unwrap_or(0)
    }

    /// Requests that reached the canary listener.
    pub fn canary_hits(&self) -> u64 {
        self.counter("http.upstream_canary.downstream_rq_total")
            .unwrap_or(0)
    }

    /// One admin request (`method` `path`, e.g. `POST /logging?wasm=trace`).
    pub fn admin(&self, method: &str, path: &str) -> std::io::Result<Response> {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        Http1Conn::connect(self.admin_port)?.request(req.as_bytes())
    }

    /// GET an admin path; panics unless the answer is 200. Returns the body.
    pub fn admin_get(&self, path: &str) -> String {
        self.admin_ok("GET", path)
    }

    /// POST an admin path (e.g. `/reset_counters`); panics unless 200.
    pub fn admin_post(&self, path: &str) -> String {
        self.admin_ok("POST", path)
    }

    fn admin_ok(&self, method: &str, path: &str) -> String {
        match self.admin(method, path) {
            Ok(r) if r.status == 200 => r.body,
            Ok(r) => panic!(
                "admin {method} {path}: status {} body {:?}",
                r.status, r.body
            ),
            Err(e) => panic!("admin {method} {path} (port {}): {e}", self.admin_port),
        }
    }

    /// All counters and gauges (`/stats?format=json`), by full name.
    /// Custom proxy-wasm metrics appear under the name the plugin defined;
    /// see [`counter`](Self::counter) for the `wasmcustom.` prefix.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let body = self.admin_get("/stats?format=json");
        parse_stats(&body).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`stats`](Self::stats), asking again while the admin does not answer, for up to 30 s
    /// (a deadline, not a wait: on a busy machine the admin shares its thread with wasm
    /// compilation). For the kit's own bookkeeping, where a slow answer is not the test's point.
    pub(crate) fn stats_patiently(&self) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(stats) = self.try_stats() {
                return stats;
            }
            if Instant::now() >= deadline {
                return self.stats(); // panics with the admin's error
            }
            std::thread::sleep(POLL);
        }
    }

    /// [`stats`](Self::stats), or `None` when the admin does not answer (in time).
    fn try_stats(&self) -> Option<BTreeMap<String, u64>> {
        let r = self.admin("GET", "/stats?format=json").ok()?;
        (r.status == 200).then(|| parse_stats(&r.body).ok())?
    }

    /// Value of counter/gauge `name`; also tries `wasmcustom.<name>` (the
    /// namespace Envoy may give proxy-wasm metrics). `None` if absent.
    pub fn counter(&self, name: &str) -> Option<u64> {
        stat(&self.stats(), name)
    }

    /// Waits (bounded) until counter `name` is at least `min`; returns its last value.
    pub fn wait_for_counter(&self, name: &str, min: u64, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.counter(name);
            if v.is_some_and(|v| v >= min) || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(POLL);
        }
    }

    /// The whole `envoy.log` so far. Envoy flushes it every 50 ms, so a line
    /// caused by what the test just did may not be there yet: prefer
    /// [`wait_for_log`](Self::wait_for_log).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// Current length of the log, to look only at what comes after it
    /// ([`wait_for_log_after`](Self::wait_for_log_after)).
    pub fn log_mark(&self) -> usize {
        fs::metadata(&self.log_path)
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_log_after(0, needle, timeout)
    }

    /// Waits (bounded) until the log after byte offset `mark` contains `needle`.
    pub fn wait_for_log_after(&self, mark: usize, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let bytes = fs::read(&self.log_path).unwrap_or_default();
            let after = bytes.get(mark..).unwrap_or_default();
            if String::from_utf8_lossy(after).contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// The access log of the outbound listeners (one line per request:
    /// authority, status, response flags/details, route, cluster, upstream host).
    /// Flushed every 50 ms like `envoy.log`: to assert on a request just
    /// made, use [`wait_for_access_log`](Self::wait_for_access_log).
    pub fn access_log(&self) -> String {
        read_lossy(&self.dir.join("access.log"))
    }

    /// Waits (bounded) until the access log contains `needle`.
    pub fn wait_for_access_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.access_log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    // ----- ECDS ---------------------------------------------------------------

    fn ecds_state(&self) -> &EcdsState {
        self.ecds.as_ref().expect(
            "this Envoy has no ECDS filter: use EnvoyConfig::wasm_filter_ecds / typed_filter_ecds",
        )
    }

    /// Path of the watched ECDS file.
    pub fn ecds_file(&self) -> &Path {
        &self.ecds_state().path
    }

    /// Replaces the ECDS resource with `typed_config` (new version, written
    /// atomically with a rename). Does not wait: see [`wait_for_ecds`](Self::wait_for_ecds).
    pub fn update_ecds(&self, typed_config: &Value) {
        let st = self.ecds_state();
        let version = st.version.fetch_add(1, Ordering::SeqCst) + 1;
        let body = ecds_discovery_response(version, typed_config);
        write_atomically(
            &st.path,
            &serde_json::to_vec_pretty(&body).unwrap_or_default(),
        );
    }

    /// Replaces the ECDS file with arbitrary bytes (e.g. malformed JSON).
    pub fn write_ecds_raw(&self, contents: &str) {
        write_atomically(&self.ecds_state().path, contents.as_bytes());
    }

    /// Delivers a new wasm plugin configuration (policy JSON) through ECDS,
    /// same module and failure policy as at start. Does not wait.
    ///
    /// Through both ends, every destination sidecar gets the same policy, as its namespace's
    /// destination shard ([`crate::ends::destination_policy`]).
    pub fn update_policy(&self, policy_json: &str) {
        let (wasm, failure_policy) = self
            .ecds_state()
            .wasm
            .clone()
            .expect("update_policy needs EnvoyConfig::wasm_filter_ecds");
        self.update_ecds(&wasm_typed_config(&wasm, policy_json, &failure_policy));
        for d in self.destinations() {
            d.envoy
                .update_policy(&crate::ends::destination_policy(policy_json, &d.namespace));
        }
    }

    /// [`update_policy`](Self::update_policy) and wait (bounded) for Envoy's verdict. Through
    /// both ends, every destination sidecar must come to the same verdict.
    pub fn update_policy_and_wait(&self, policy_json: &str, timeout: Duration) -> EcdsOutcome {
        let before = self.ecds_counts();
        let before_destinations: Vec<EcdsCounts> = self
            .destinations()
            .iter()
            .map(|d| d.envoy.ecds_counts())
            .collect();
        self.update_policy(policy_json);
        // Through both ends every end compiles the module again at the same time: a longer
        // deadline (not a wait) for all of them.
        let timeout = if self.destinations().is_empty() {
            timeout
        } else {
            timeout.max(Duration::from_secs(30))
        };
        let outcome = self.wait_for_ecds(before, timeout);
        for (d, before) in self.destinations().iter().zip(before_destinations) {
            let at_destination = d.envoy.wait_for_ecds(before, timeout);
            assert_eq!(
                at_destination, outcome,
                "the destination sidecar of {} came to another verdict on the policy update",
                d.namespace
            );
        }
        outcome
    }

    /// [`update_ecds`](Self::update_ecds) and wait (bounded) for Envoy's verdict.
    pub fn update_ecds_and_wait(&self, typed_config: &Value, timeout: Duration) -> EcdsOutcome {
        let before = self.ecds_counts();
        self.update_ecds(typed_config);
        self.wait_for_ecds(before, timeout)
    }

    /// Current ECDS counters of the filter
    /// (`extension_config_discovery.http_filter.tenant-egress.*`).
    pub fn ecds_counts(&self) -> EcdsCounts {
        self.ecds_counts_of(&self.stats())
    }

    fn ecds_counts_of(&self, stats: &BTreeMap<String, u64>) -> EcdsCounts {
        let get = |suffix: &str| {
            stats
                .get(&format!(
                    "extension_config_discovery.http_filter.{ECDS_FILTER_NAME}.{suffix}"
                ))
                .copied()
                .unwrap_or(0)
        };
        EcdsCounts {
            attempt: get("update_attempt"),
            success: get("update_success"),
            rejected: get("update_rejected"),
            failure: get("update_failure"),
            reload: get("config_reload"),
            fail: get("config_fail"),
        }
    }

    /// Waits (bounded) until the ECDS counters move past `before`.
    pub fn wait_for_ecds(&self, before: EcdsCounts, timeout: Duration) -> EcdsOutcome {
        let deadline = Instant::now() + timeout;
        loop {
            // While Envoy applies a new wasm configuration its main thread compiles the module
            // and the admin may not answer: try again until the deadline.
            let Some(now) = self.try_stats().map(|stats| self.ecds_counts_of(&stats)) else {
                if Instant::now() >= deadline {
                    return EcdsOutcome::TimedOut;
                }
                std::thread::sleep(POLL);
                continue;
            };
            if now.rejected + now.failure > before.rejected + before.failure {
                return EcdsOutcome::Rejected;
            }
            // `update_success` is bumped on the main thread; `config_reload`
            // once every worker has the new config. Wait for both.
            if now.success > before.success && now.reload > before.reload {
                return EcdsOutcome::Accepted;
            }
            if Instant::now() >= deadline {
                return EcdsOutcome::TimedOut;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Prints the run dir, bootstrap path and log tails to stderr.
    pub fn dump_diagnostics(&self) {
        let log = self.log();
        eprintln!(
            "==== Envoy diagnostics (pid {}) ====\nrun dir:   {}\nbootstrap: {}\n\
             --- envoy.log (last 200 lines, banner omitted) ---\n{}\n--- stderr (last 50 lines) ---\n{}\n\
             --- access.log (last 50 lines) ---\n{}\n==== end of Envoy diagnostics ====",
            self.child.id(),
            self.dir.display(),
            self.bootstrap_path.display(),
            tail(&without_banner(&log), 200),
            tail(&read_lossy(&self.stderr_path), 50),
            tail(&self.access_log(), 50),
        );
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        // Through both ends: compare the ends' counts while every Envoy still runs.
        let mut disagreement = None;
        if let Some(b) = &self.both {
            disagreement = b.finish(panicking).err();
        }
        if disagreement.is_some() {
            std::thread::sleep(Duration::from_millis(150));
            self.dump_diagnostics();
        }
        if panicking {
            // Let the file logger flush (--file-flush-interval-msec 50).
            std::thread::sleep(Duration::from_millis(150));
            self.dump_diagnostics();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let keep = panicking || disagreement.is_some() || self.keep_dir || keep_tmp_env();
        if !keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
        if let Some(why) = disagreement {
            panic!("the two ends disagree:\n{why}");
        }
    }
}
