//! The local demo (`scripts/demo.sh`, `demo/`), checked the way users run it.
//!
//! - The committed `demo/*.yaml` and `demo/ports.env` equal a fresh render of
//!   `demo/policy.yaml` + `demo/topology.py` + `demo/sidecar.yaml.tmpl` (`demo/render.py --check`),
//!   so the policy the sidecars enforce is exactly `demo/policy.yaml`.
//! - Every demo YAML passes `envoy --mode validate`.
//! - `demo/docker-compose.yaml` parses and runs those same files with the official image.
//! - The committed YAMLs run natively: the mesh and every sidecar start, and requests get the
//!   status, denial header and body, upstream and counters the policy says; then the demo's
//!   own request table (`demo/send_requests.py`, what `scripts/demo.sh` prints) passes against them.
//!
//! The demo uses fixed ports (15100-15305). Tests must not, so the native run starts a copy of
//! each committed file in which THE ONLY CHANGE is the port substitution: every fixed port
//! listed in `demo/ports.env` is replaced, as a whole number, by a free one (everywhere it
//! occurs: addresses, the passthrough default, the names and bodies that mention it).
//!
//! The sidecars load `./tenant_egress_filter.wasm` relative to their working directory, as in
//! the demo and in docker-compose. The harness starts Envoy in this process's working
//! directory, so this test binary changes it (once, process-wide, before any Envoy starts) to a
//! directory holding a link to the built module. Nothing else in this binary uses relative paths.
//!
//! Needs Python 3 (the demo's tooling); the render check also needs PyYAML, which
//! `demo/render.sh` installs into `.venv`.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tenant_egress_tests::*;

const DENIED: &str = "x-tenant-egress-denied";

fn demo_dir() -> PathBuf {
    workspace_root().join("demo")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// --- processes ----------------------------------------------------------------------------------

/// Kills the child if the test panics before it was waited for.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Output {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Output {
    fn text(&self) -> String {
        format!(
            "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion within `timeout` (killed after it), output captured in files so a
/// chatty child can never block on a full pipe. Panics if it cannot be spawned.
fn run_bounded(cmd: Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    try_run_bounded(cmd, timeout).unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

fn try_run_bounded(mut cmd: Command, timeout: Duration) -> std::io::Result<Output> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = std::env::temp_dir().join(format!("tenant-egress-demo-{}-{n}", std::process::id()));
    let (out_path, err_path) = (base.with_extension("out"), base.with_extension("err"));
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap());
    let mut child = match cmd.spawn() {
        Ok(c) => ChildGuard(c),
        Err(e) => {
            let _ = fs::remove_file(&out_path);
            let _ = fs::remove_file(&err_path);
            return Err(e);
        }
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            drop(child);
            let out = read(&out_path);
            let _ = fs::remove_file(&out_path);
            let _ = fs::remove_file(&err_path);
            panic!("{what} did not finish within {timeout:?}; stdout so far:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = Output {
        success: status.success(),
        status: status.to_string(),
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    Ok(out)
}

fn python_ok(python: &Path, code: &str) -> bool {
    let mut cmd = Command::new(python);
    cmd.args(["-c", code]);
    matches!(try_run_bounded(cmd, Duration::from_secs(30)), Ok(o) if o.success)
}

/// A Python 3 interpreter (with PyYAML if `yaml`): the project's `.venv` first, then `python3`.
fn python(yaml: bool) -> PathBuf {
    static PLAIN: OnceLock<PathBuf> = OnceLock::new();
    static WITH_YAML: OnceLock<PathBuf> = OnceLock::new();
    let cell = if yaml { &WITH_YAML } else { &PLAIN };
    cell.get_or_init(|| find_python(yaml)).clone()
}

fn find_python(yaml: bool) -> PathBuf {
    let code = if yaml {
        "import yaml"
    } else {
        "import sys; assert sys.version_info >= (3, 8)"
    };
    let candidates = [
        workspace_root().join(".venv/bin/python"),
        PathBuf::from("python3"),
    ];
    for p in &candidates {
        if python_ok(p, code) {
            return p.clone();
        }
    }
    if yaml {
        panic!(
            "no Python with PyYAML (tried {candidates:?}): run demo/render.sh once (it installs \
             PyYAML into .venv), or scripts/setup.sh if it does"
        );
    }
    panic!("no Python 3 (tried {candidates:?}): run scripts/setup.sh");
}

/// `demo/render.py <args>`: needs PyYAML.
fn render_py(args: &[&str]) -> Output {
    let mut cmd = Command::new(python(true));
    cmd.arg(demo_dir().join("render.py"))
        .args(args)
        .current_dir(workspace_root());
    run_bounded(cmd, Duration::from_secs(60))
}

/// A YAML file as JSON, parsed by PyYAML.
fn yaml_to_json(path: &Path) -> Value {
    let out = render_py(&["--to-json", path.to_str().unwrap()]);
    assert!(
        out.success,
        "{} does not parse as YAML:\n{}",
        path.display(),
        out.text()
    );
    serde_json::from_str(&out.stdout).unwrap()
}

// --- the demo's files -------------------------------------------------------------------------

/// `demo/ports.env` as a map (`LISTENER_prod` -> `15201`, `SIDECARS` -> `prod prod-batman ...`).
fn ports_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// Sidecar ids, in order (`prod`, `prod-batman`, ...).
fn sidecars(env: &BTreeMap<String, String>) -> Vec<String> {
    env["SIDECARS"]
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Every fixed port of the demo.
fn fixed_ports(env: &BTreeMap<String, String>) -> Vec<u16> {
    let mut ports = Vec::new();
    for (k, v) in env {
        if k == "MESH_ADMIN"
            || k == "MESH_PORTS"
            || k.starts_with("LISTENER_")
            || k.starts_with("ADMIN_")
        {
            ports.extend(v.split_whitespace().map(|p| p.parse::<u16>().unwrap()));
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The one change made to a committed file: each whole number that is a key of `map` is
/// replaced by its value. Nothing else is touched.
fn substitute_ports(text: &str, map: &BTreeMap<u16, u16>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        match digits.parse::<u16>().ok().and_then(|n| map.get(&n)) {
            Some(new) if !digits.starts_with('0') => out.push_str(&new.to_string()),
            _ => out.push_str(digits),
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// The working directory of the Envoys this binary starts: it holds `tenant_egress_filter.wasm`
/// (a link to the built module), which the sidecars load by that relative name.
fn wasm_workdir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-workdir");
        fs::create_dir_all(&dir).unwrap();
        let link = dir.join(WASM_FILE);
        let tmp = dir.join(format!(".{WASM_FILE}.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(wasm_path(), &tmp).unwrap();
        fs::rename(&tmp, &link).unwrap(); // atomic: concurrent test runs never see no link
        dir
    })
}

// --- tests --------------------------------------------------------------------------------------

#[test]
fn committed_demo_files_equal_a_fresh_render() {
    let out = render_py(&["--check"]);
    assert!(
        out.success,
        "demo/ is stale: run demo/render.sh and commit the result\n{}",
        out.text()
    );
    // And the policy they embed is valid for the filter's own parser.
    let policy = yaml_to_json(&demo_dir().join("policy.yaml"));
    let (policy, _warnings) =
        tenant_egress_core::Policy::from_json(policy.to_string().as_bytes()).unwrap();
    assert!(
        policy.summary().contains("tenants=4"),
        "{}",
        policy.summary()
    );
}

#[test]
fn every_demo_yaml_passes_envoy_validate() {
    let env = ports_env(&read(&demo_dir().join("ports.env")));
    let mut files = vec!["mesh.yaml".to_string()];
    files.extend(sidecars(&env).iter().map(|s| format!("sidecar-{s}.yaml")));
    for f in files {
        let path = demo_dir().join(&f);
        let mut cmd = Command::new(envoy_bin());
        cmd.args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warning",
            "-c",
        ])
        .arg(&path)
        .current_dir(wasm_workdir());
        let out = run_bounded(cmd, Duration::from_secs(60));
        assert!(
            out.success
                && format!("{}{}", out.stdout, out.stderr)
                    .contains(&format!("configuration '{}' OK", path.display())),
            "envoy --mode validate -c demo/{f}:\n{}",
            out.text()
        );
    }
}

#[test]
fn docker_compose_runs_the_same_files_with_the_official_image() {
    let env = ports_env(&read(&demo_dir().join("ports.env")));
    let compose = yaml_to_json(&demo_dir().join("docker-compose.yaml"));
    let services = compose["services"].as_object().expect("services");
    let mut expected: Vec<String> = vec!["mesh".into()];
    expected.extend(sidecars(&env).iter().map(|s| format!("sidecar-{s}")));
    let mut names: Vec<String> = services.keys().cloned().collect();
    names.sort();
    expected.sort();
    assert_eq!(names, expected);
    for (name, svc) in services {
        assert_eq!(svc["image"], "envoyproxy/envoy:v1.40-latest", "{name}");
        assert_eq!(svc["entrypoint"], "/usr/local/bin/envoy", "{name}");
        assert_eq!(
            svc["network_mode"], "host",
            "{name}: same 127.0.0.1 ports as natively"
        );
        assert_eq!(svc["working_dir"], "/work", "{name}");
        let cmd: Vec<&str> = svc["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            cmd[..2],
            ["-c", &format!("/etc/envoy/{name}.yaml")],
            "{name}"
        );
        assert!(demo_dir().join(format!("{name}.yaml")).is_file(), "{name}");
        assert!(cmd.contains(&"--disable-hot-restart"), "{name}: {cmd:?}");
        let volumes: Vec<&str> = svc["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(volumes.contains(&"./:/etc/envoy:ro"), "{name}: {volumes:?}");
        assert!(
            volumes.contains(&"${TENANT_EGRESS_WASM_DIR:-../target/dist}:/work:ro"),
            "{name}: {volumes:?}"
        );
    }
    // The sidecars find the module where compose mounts it: /work is their working directory.
    for s in sidecars(&env) {
        let text = read(&demo_dir().join(format!("sidecar-{s}.yaml")));
        assert!(
            text.contains("filename: ./tenant_egress_filter.wasm"),
            "sidecar-{s}"
        );
    }
}

/// The committed files with fresh ports, started natively.
struct Demo {
    env: BTreeMap<String, String>,
    ports_file: PathBuf,
    mesh: Envoy,
    sidecars: BTreeMap<String, Envoy>,
}

impl Demo {
    fn start() -> Demo {
        let dir = demo_dir();
        let fixed_env = read(&dir.join("ports.env"));
        let fixed = fixed_ports(&ports_env(&fixed_env));
        assert!(fixed.len() >= 20, "{fixed:?}");
        let names = sidecars(&ports_env(&fixed_env));
        // Envoy resolves ./tenant_egress_filter.wasm against the working directory it inherits.
        std::env::set_current_dir(wasm_workdir()).unwrap();
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let map: BTreeMap<u16, u16> =
                fixed.iter().copied().zip(free_ports(fixed.len())).collect();
            let start = |file: &str| {
                let text = read(&dir.join(file));
                let copy = substitute_ports(&text, &map);
                for p in &fixed {
                    assert!(
                        !copy.contains(&format!("port_value: {p}")),
                        "{file}: port {p} not substituted"
                    );
                }
                Envoy::try_start(&copy)
            };
            let mesh = match start("mesh.yaml") {
                Ok(e) => e,
                Err(e) if e.is_port_conflict() => {
                    last_err = e.to_string();
                    continue;
                }
                Err(e) => panic!("demo/mesh.yaml failed to start: {e}"),
            };
            let mut sidecars = BTreeMap::new();
            let mut conflict = false;
            for s in &names {
                match start(&format!("sidecar-{s}.yaml")) {
                    Ok(e) => {
                        sidecars.insert(s.clone(), e);
                    }
                    Err(e) if e.is_port_conflict() => {
                        last_err = e.to_string();
                        conflict = true;
                        break;
                    }
                    Err(e) => panic!("demo/sidecar-{s}.yaml failed to start: {e}"),
                }
            }
            if conflict {
                continue; // drops what started; fresh ports next time
            }
            let env_text = substitute_ports(&fixed_env, &map);
            let ports_file = mesh.dir().join("ports.env");
            fs::write(&ports_file, &env_text).unwrap();
            return Demo {
                env: ports_env(&env_text),
                ports_file,
                mesh,
                sidecars,
            };
        }
        panic!("ports kept being taken; last error: {last_err}");
    }

    fn sidecar(&self, id: &str) -> &Envoy {
        &self.sidecars[id]
    }

    fn listener(&self, id: &str) -> u16 {
        self.env[&format!("LISTENER_{}", id.replace('-', "_"))]
            .parse()
            .unwrap()
    }

    fn get(&self, id: &str, host: &str) -> Response {
        get(self.listener(id), host, "/")
    }

    /// Requests the mesh's upstream `label` (as in its x-upstream header) received.
    fn upstream_hits(&self, label: &str) -> u64 {
        let prefix: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.mesh
            .counter(&format!("http.upstream_{prefix}.downstream_rq_total"))
            .unwrap_or(0)
    }

    fn internet(&self) -> String {
        format!("internet 127.0.0.1:{}", self.env["INTERNET"])
    }
}

#[track_caller]
fn assert_answered(r: &Response, upstream: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    assert_eq!(r.header("x-upstream"), Some(upstream), "{what}: {r:?}");
    assert!(r.body.starts_with("hello from "), "{what}: {r:?}");
    assert_eq!(r.header(DENIED), None, "{what}");
}

#[test]
fn the_committed_demo_runs_natively_and_enforces_the_policy() {
    let demo = Demo::start();
    let prod = demo.sidecar("prod");

    // Each sidecar loaded demo/policy.yaml for its own identity.
    assert!(prod.wait_for_log("source namespace=prod tenant=prod workload=-", WAIT));
    assert!(demo
        .sidecar("prod-batman")
        .wait_for_log("workload=permit-logs-to-logmonkey", WAIT));
    assert!(demo
        .sidecar("nometa")
        .wait_for_log("no NAMESPACE node metadata", WAIT));

    // prod: its own database by the short name; uat's by FQDN is denied.
    assert_answered(
        &demo.get("prod", "cockroachdb:26257"),
        "cockroachdb.prod:26257",
        "prod -> own db",
    );
    let r = demo.get("prod", "cockroachdb.uat.svc.cluster.local:26257");
    assert_denied(&r, "not-allowed", "prod -> uat db");
    assert!(
        r.body.contains("source: namespace prod (tenant prod)"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("add \"uat/cockroachdb.uat.svc.cluster.local\""),
        "{}",
        r.body
    );
    // Host spoofing: an allowed name on a port with no route goes to PassthroughCluster.
    let r = demo.get("prod", "cockroachdb.prod.svc.cluster.local:8080");
    assert_denied(&r, "authority-mismatch", "spoof");
    assert!(r.body.contains("via PassthroughCluster"), "{}", r.body);
    // Duplicate Host headers.
    let r = raw_http1(
        demo.listener("prod"),
        b"GET / HTTP/1.1\r\nHost: cockroachdb\r\nHost: cockroachdb.uat\r\nConnection: close\r\n\r\n",
    );
    assert_denied(&r, "malformed-authority", "duplicate Host");
    assert_counter(prod, "allowed", 1);
    assert_counter(prod, "denied", 3);
    assert_counter(prod, "denied.not_allowed", 1);
    assert_counter(prod, "denied.authority_mismatch", 1);
    assert_counter(prod, "denied.malformed_authority", 1);

    // batman-app: the workload exception, on top of prod's own egress.
    let batman = demo.sidecar("prod-batman");
    let r = demo.get("prod-batman", "logcatcher.logmonkey.svc.cluster.local");
    assert_answered(&r, "logcatcher.logmonkey:80", "batman -> logcatcher");
    assert_denied(
        &demo.get("prod-batman", "cockroachdb.uat:26257"),
        "not-allowed",
        "batman -> uat",
    );
    assert_counter(batman, "allowed", 1);
    assert_counter(batman, "denied.not_allowed", 1);

    // uat is in audit mode: through, but counted and logged.
    let uat = demo.sidecar("uat");
    let r = demo.get("uat", "cockroachdb.prod:26257");
    assert_answered(&r, "cockroachdb.prod:26257", "uat -> prod db (audit)");
    assert_counter(uat, "audit_denied.not_allowed", 1);
    assert_counter(uat, "denied", 0);
    assert!(uat.wait_for_log("audit-denied source=uat tenant=uat", WAIT));

    // dev is ALLOW_ANY: unknown hosts pass through to "the internet"; the exclusion wins.
    let r = demo.get("dev", "downloads.example.org");
    assert_answered(&r, &demo.internet(), "dev -> passthrough");
    assert_answered(
        &demo.get("dev", "en.example.com"),
        "*.example.com:80",
        "dev -> *.example.com",
    );
    assert_denied(
        &demo.get("dev", "secret.example.com"),
        "excluded",
        "dev -> secret",
    );
    assert_denied(
        &demo.get("dev", "cockroachdb.uat:26257"),
        "not-allowed",
        "dev -> uat db",
    );
    assert_answered(
        &demo.get("dev", "api.uat:8080"),
        "api.uat:8080",
        "dev -> uat api",
    );

    // No NAMESPACE metadata: fail closed.
    assert_denied(
        &demo.get("nometa", "api.prod:8080"),
        "unknown-source",
        "nometa",
    );

    // What the mesh saw: denied upstreams were never reached.
    assert_eq!(demo.upstream_hits("cockroachdb.prod:26257"), 2);
    assert_eq!(demo.upstream_hits("cockroachdb.uat:26257"), 0);
    assert_eq!(demo.upstream_hits("logcatcher.logmonkey:80"), 1);
    assert_eq!(demo.upstream_hits("api.prod:8080"), 0);
    assert_eq!(demo.upstream_hits(&demo.internet()), 1);

    // And the demo's own table (what scripts/demo.sh prints) against these Envoys.
    let mut cmd = Command::new(python(false));
    cmd.arg(demo_dir().join("send_requests.py"))
        .arg("--ports")
        .arg(&demo.ports_file)
        .current_dir(workspace_root());
    let out = run_bounded(cmd, Duration::from_secs(120));
    assert!(out.success, "demo/send_requests.py:\n{}", out.text());
    assert!(
        out.stdout
            .contains("requests behaved as demo/policy.yaml says"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("FAIL"), "{}", out.stdout);
}

#[test]
fn port_substitution_changes_only_whole_port_numbers() {
    let map: BTreeMap<u16, u16> = [(15101, 40001), (15201, 40002)].into();
    assert_eq!(
        substitute_ports("port_value: 15101 x151011 15201:15101 26257 015101", &map),
        "port_value: 40001 x151011 40002:40001 26257 015101"
    );
}
