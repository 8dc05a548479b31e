//! The local demo (`scripts/demo.sh`, `demo/`), checked the way users run it, on the test kit's
//! demo module (`tenant_egress_tests::demo`) and its `tenant-egress-demo` binary.
//!
//! - The committed `demo/*.yaml` and `demo/ports.env` equal a fresh render of
//!   `demo/policy/` and the topology (`tenant-egress-demo check`), so the policy the sidecars
//!   enforce is exactly `demo/policy/`.
//! - Every demo YAML passes `envoy --mode validate`.
//! - `demo/docker-compose.yaml` runs those same files with the official image.
//! - The demo runs natively: rendered by the same code on free ports (tests must not use the
//!   fixed ones; the drift check above ties that render to the committed files), the mesh and
//!   every sidecar start, and the request table (what `scripts/demo.sh` prints) passes: each
//!   row as the table expects, as the core decides for `demo/policy/`, and as the filter
//!   counted. So do the both-ends connections (certificates made at test time): uat's bypass,
//!   with a valid uat certificate and no filter of its own, and a plaintext caller are refused
//!   by prod's database sidecar with not one byte reaching the database; prod's own caller is
//!   allowed at both ends. The mesh saw exactly the requests the tables let through, and the
//!   binary exits 0 on these Envoys and 1 when the requests go to the wrong sidecars.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tenant_egress_core::Policy;
use tenant_egress_core::Reason;
use tenant_egress_tests::demo::{self, Outcome, Ports, ENDS, SIDECARS};
use tenant_egress_tests::*;

fn demo_dir() -> PathBuf {
    demo::demo_dir()
}

fn policy() -> (String, Policy) {
    let json = demo::read_policy(&demo_dir()).unwrap();
    let (policy, _warnings) = Policy::from_json(json.as_bytes()).unwrap();
    (json, policy)
}

/// A directory holding `tenant_egress_filter.wasm` (a link to the built module) and `pki/` (the
/// certificates), the working directory in which the committed sidecars' relative filenames
/// find them. One per test process: its certificates are made fresh.
fn wasm_workdir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("demo-workdir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let link = dir.join(WASM_FILE);
        let tmp = dir.join(format!(".{WASM_FILE}.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(wasm_path(), &tmp).unwrap();
        fs::rename(&tmp, &link).unwrap(); // atomic: concurrent test runs never see no link
        demo::make_certs(&dir.join("pki")).unwrap();
        dir
    })
}

fn demo_bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenant-egress-demo"));
    cmd.current_dir(workspace_root());
    cmd
}

#[test]
fn committed_demo_files_equal_a_fresh_render() {
    let stale = demo::check(&demo_dir()).unwrap();
    assert!(
        stale.is_empty(),
        "demo/ is stale: run `cargo run -p tenant-egress-tests --bin tenant-egress-demo -- \
         render` and commit the result\n{stale:#?}"
    );
    // The binary says so too (what scripts/demo.sh runs before starting the Envoys).
    let out = demo_bin().arg("check").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    // And the policy they embed is the one the core reads.
    let (json, policy) = policy();
    assert!(
        policy.summary().contains("tenants=5"),
        "{}",
        policy.summary()
    );
    let prod = fs::read_to_string(demo_dir().join("sidecar-prod.yaml")).unwrap();
    let embedded: serde_json::Value = tenant_egress_config::yaml::from_str(&prod).unwrap();
    let filters = embedded["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array()
        .unwrap();
    let filter = &filters
        .iter()
        .find(|f| f["name"] == ECDS_FILTER_NAME)
        .expect("the sidecar has the tenant-egress filter")["typed_config"]["config"];
    assert_eq!(filter["configuration"]["value"], json.as_str());
}

#[test]
fn a_stale_file_is_reported() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("demo-stale-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    // The policy directory: settings.yaml and tenants/*.yaml.
    for rel in ["policy", "policy/tenants"] {
        fs::create_dir_all(dir.join(rel)).unwrap();
        for entry in fs::read_dir(demo_dir().join(rel)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                fs::copy(entry.path(), dir.join(rel).join(entry.file_name())).unwrap();
            }
        }
    }
    assert_eq!(
        demo::write(&dir).unwrap().len(),
        SIDECARS.len() + ENDS.len() + 3
    );
    assert!(demo::check(&dir).unwrap().is_empty());
    let mesh = dir.join("mesh.yaml");
    let text = fs::read_to_string(&mesh).unwrap();
    fs::write(
        &mesh,
        text.replacen("port_value: 15101", "port_value: 15999", 1),
    )
    .unwrap();
    fs::remove_file(dir.join("ports.env")).unwrap();
    let stale = demo::check(&dir).unwrap();
    let names: Vec<&str> = stale.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["mesh.yaml", "ports.env"]);
    assert!(stale[0].1.contains("15999"), "{}", stale[0].1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_demo_yaml_passes_envoy_validate() {
    let mut files = vec!["mesh.yaml".to_string()];
    files.extend(SIDECARS.iter().map(|s| format!("sidecar-{}.yaml", s.name)));
    files.extend(ENDS.iter().map(|e| format!("sidecar-{}.yaml", e.name)));
    for f in files {
        let path = demo_dir().join(&f);
        let out = Command::new(envoy_bin())
            .args([
                "--mode",
                "validate",
                "--disable-hot-restart",
                "-l",
                "warning",
                "-c",
            ])
            .arg(&path)
            .current_dir(wasm_workdir())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success()
                && text.contains(&format!("configuration '{}' OK", path.display())),
            "envoy --mode validate -c demo/{f}:\n{text}"
        );
    }
    // (Validation reads the certificates: without ./pki/ it fails with "Invalid path".)
    fs::remove_dir_all(wasm_workdir()).unwrap();
}

#[test]
fn docker_compose_runs_the_same_files_with_the_official_image() {
    let text = fs::read_to_string(demo_dir().join("docker-compose.yaml")).unwrap();
    let compose: serde_json::Value = tenant_egress_config::yaml::from_str(&text).unwrap();
    let services = compose["services"].as_object().expect("services");
    let mut expected: Vec<String> = vec!["mesh".into()];
    expected.extend(SIDECARS.iter().map(|s| format!("sidecar-{}", s.name)));
    expected.extend(ENDS.iter().map(|e| format!("sidecar-{}", e.name)));
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
        assert_eq!(volumes[0], "./:/etc/envoy:ro", "{name}");
        assert_eq!(
            volumes[1],
            "${TENANT_EGRESS_WASM_DIR:-../target/dist}/tenant_egress_filter.wasm:/work/tenant_egress_filter.wasm:ro",
            "{name}"
        );
        assert_eq!(volumes[2], "../target/demo/pki:/work/pki:ro", "{name}");
    }
    // The sidecars find the module and the certificates where compose mounts them: /work is
    // their working directory.
    for name in SIDECARS
        .iter()
        .map(|s| s.name)
        .chain(ENDS.iter().map(|e| e.name))
    {
        let text = fs::read_to_string(demo_dir().join(format!("sidecar-{name}.yaml"))).unwrap();
        let filter = text.contains("filename: ./tenant_egress_filter.wasm");
        assert_eq!(filter, name != "uat-bypass", "sidecar-{name}");
        if demo::end(name).is_some() {
            assert!(text.contains("filename: ./pki/ca.pem"), "sidecar-{name}");
        }
    }
}

/// The demo rendered on free ports (the built module and fresh certificates by their absolute
/// paths) and started.
struct Demo {
    ports: Ports,
    mesh: Envoy,
    sidecars: Vec<Envoy>,
    ends: Vec<Envoy>,
}

impl Demo {
    fn start(policy_json: &str) -> Demo {
        let wasm = wasm_path().display().to_string();
        let pki = tenant_egress_tests::envoy::new_run_dir().join("pki");
        demo::make_certs(&pki).unwrap();
        let pki = pki.display().to_string();
        let mut last_err = String::new();
        'attempt: for _ in 0..3 {
            let ports = Ports::free();
            let files = demo::render(policy_json, &ports, &wasm, &pki);
            let start = |name: &str| Envoy::try_start(&files[name]);
            let mesh = match start("mesh.yaml") {
                Ok(e) => e,
                Err(e) if e.is_port_conflict() => {
                    last_err = e.to_string();
                    continue;
                }
                Err(e) => panic!("mesh.yaml failed to start: {e}"),
            };
            let mut sidecars = Vec::new();
            for s in &SIDECARS {
                match start(&format!("sidecar-{}.yaml", s.name)) {
                    Ok(e) => sidecars.push(e),
                    Err(e) if e.is_port_conflict() => {
                        last_err = e.to_string();
                        continue 'attempt; // drops what started; fresh ports next time
                    }
                    Err(e) => panic!("sidecar-{}.yaml failed to start: {e}", s.name),
                }
            }
            let mut ends = Vec::new();
            for e in &ENDS {
                match start(&format!("sidecar-{}.yaml", e.name)) {
                    Ok(envoy) => ends.push(envoy),
                    Err(err) if err.is_port_conflict() => {
                        last_err = err.to_string();
                        continue 'attempt;
                    }
                    Err(err) => panic!("sidecar-{}.yaml failed to start: {err}", e.name),
                }
            }
            return Demo {
                ports,
                mesh,
                sidecars,
                ends,
            };
        }
        panic!("ports kept being taken; last error: {last_err}");
    }

    fn sidecar(&self, name: &str) -> &Envoy {
        match SIDECARS.iter().position(|s| s.name == name) {
            Some(i) => &self.sidecars[i],
            None => &self.ends[ENDS.iter().position(|e| e.name == name).unwrap()],
        }
    }
}

#[test]
fn the_demo_runs_natively_and_behaves_as_the_policy_says() {
    let (json, policy) = policy();
    let demo = Demo::start(&json);

    // Each sidecar loaded demo/policy/ for its own identity.
    assert!(demo
        .sidecar("prod")
        .wait_for_log("source namespace=prod tenant=prod workload=-", WAIT));
    assert!(demo
        .sidecar("prod-batman")
        .wait_for_log("workload=permit-logs-to-logmonkey", WAIT));
    assert!(demo
        .sidecar("nometa")
        .wait_for_log("no NAMESPACE node metadata", WAIT));

    assert!(demo.sidecar("prod-db").wait_for_log(
        "loaded policy (root id \"tenant-egress-inbound-tcp\")",
        WAIT
    ));

    // The tables: every row as expected, as the policy says, as the filters counted.
    let report = demo::run(&policy, &demo.ports).unwrap();
    let table = demo::format_report(&report);
    assert_eq!(
        (report.requests.len(), report.connections.len()),
        (24, 3),
        "{table}"
    );
    assert!(report.ok(), "{table}");
    assert!(
        table.contains("all 27 requests behaved as demo/policy/ says"),
        "{table}"
    );
    assert!(!table.contains("FAIL"), "{table}");
    let results = &report.requests;

    // What a denial says: who asked, where it went, what to add.
    let find = |source: &str, host: &str| {
        results
            .iter()
            .find(|r| r.row.source == source && r.row.hosts == [host])
            .unwrap()
    };
    let r = &find("prod", "cockroachdb.uat.svc.cluster.local:26257").response;
    assert!(
        r.body.contains("source: namespace prod (tenant prod)"),
        "{}",
        r.body
    );
    // demo/policy/ keeps the default `denyBody: terse`: the body says where the detail is.
    assert!(
        r.body.contains(
            "or run: tenant-egress explain POLICY --source-namespace prod --authority cockroachdb.uat.svc.cluster.local:26257"
        ),
        "{}",
        r.body
    );
    let r = &find("prod", "cockroachdb.prod.svc.cluster.local:8080").response;
    assert!(r.body.contains("via PassthroughCluster"), "{}", r.body);
    assert!(demo
        .sidecar("staging")
        .wait_for_log("audit-denied source=staging tenant=staging", WAIT));

    // Both ends. uat's pod without its own filter, with uat's valid certificate: refused by
    // prod's database sidecar, and not one byte reached the database.
    let conn = |source: &str| {
        report
            .connections
            .iter()
            .find(|c| c.connection.source() == source)
            .unwrap()
    };
    let bypass = conn("uat-bypass");
    assert_eq!(
        bypass.counted_at_destination,
        Some(Ok(Outcome::Deny(Reason::NotAllowed))),
        "{table}"
    );
    assert_eq!(bypass.counted_at_caller, None, "no filter at uat's end");
    assert_eq!((bypass.app_bytes, bypass.reply.len()), (0, 0), "{table}");
    assert!(demo.sidecar("prod-db").wait_for_log(
        "denied connection at destination caller=spiffe://cluster.local/ns/uat/sa/orders tenant=uat destination=cockroachdb.prod.svc.cluster.local:26257",
        WAIT
    ));
    // Plaintext: no identity, refused by the filter itself.
    let plain = conn("plaintext");
    assert_eq!(
        plain.counted_at_destination,
        Some(Ok(Outcome::Deny(Reason::NoPeerIdentity))),
        "{table}"
    );
    assert_eq!((plain.app_bytes, plain.reply.len()), (0, 0), "{table}");
    // prod's own caller: allowed at its own end and at the database's, answered by the database.
    let prod = conn("prod-tcp");
    assert_eq!(prod.counted_at_caller, Some(Ok(Outcome::Allow)), "{table}");
    assert_eq!(
        prod.counted_at_destination,
        Some(Ok(Outcome::Allow)),
        "{table}"
    );
    assert!(prod.app_bytes > 0, "{table}");
    assert_eq!(
        prod.answered(),
        (Some(200), Some("cockroachdb.prod:26257".to_string()))
    );
    // The deciding Envoys' own totals.
    let db = demo.sidecar("prod-db");
    assert_eq!(
        db.counter("tenant_egress.inbound.connections.denied"),
        Some(2)
    );
    assert_eq!(
        db.counter("tenant_egress.inbound.connections.allowed"),
        Some(1)
    );
    assert_eq!(
        demo.sidecar("prod-tcp")
            .counter("tenant_egress.connections.allowed"),
        Some(1)
    );

    // The mesh saw exactly what the tables let through: nothing denied reached an upstream.
    for u in demo.ports.upstreams() {
        let expected = results
            .iter()
            .filter(|r| r.row.expect.reaches_upstream() && r.route.upstream == u.label)
            .count()
            + report
                .connections
                .iter()
                .filter(|c| c.connection.reaches_database() && u.label == "cockroachdb.prod:26257")
                .count();
        let got = demo
            .mesh
            .counter(&format!("http.{}.downstream_rq_total", u.stat_prefix))
            .unwrap_or(0);
        assert_eq!(
            got, expected as u64,
            "requests that reached {}\n{table}",
            u.label
        );
    }

    // The binary scripts/demo.sh runs, against these Envoys.
    let ports_file = demo.mesh.dir().join("ports.env");
    fs::write(&ports_file, demo.ports.to_env()).unwrap();
    let out = demo_bin()
        .args(["requests", "--ports"])
        .arg(&ports_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}\n{stdout}");
    assert!(
        stdout.contains("all 27 requests behaved as demo/policy/ says"),
        "{stdout}"
    );
    assert!(stdout.contains("Both ends:"), "{stdout}");

    // And it can fail: the requests of prod sent through dev's sidecar and back, and uat's
    // bypass sent through prod's own caller.
    let mut swapped = demo.ports.clone();
    swapped.sidecars.swap(0, 3);
    swapped.ends.swap(1, 2);
    let report = demo::run(&policy, &swapped).unwrap();
    let failed: Vec<&str> = report
        .requests
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.row.source)
        .chain(
            report
                .connections
                .iter()
                .filter(|c| !c.ok())
                .map(|c| c.connection.source()),
        )
        .collect();
    assert!(
        failed.contains(&"prod") && failed.contains(&"dev"),
        "{failed:?}"
    );
    assert!(
        failed.contains(&"uat-bypass") && failed.contains(&"prod-tcp"),
        "{failed:?}"
    );
    assert!(!failed.contains(&"uat"), "{failed:?}");
    assert!(!failed.contains(&"plaintext"), "{failed:?}");
    fs::write(&ports_file, swapped.to_env()).unwrap();
    let out = demo_bin()
        .args(["requests", "--ports"])
        .arg(&ports_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("requests did not behave as expected"),
        "{stdout}"
    );
}
