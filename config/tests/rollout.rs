//! Rollout safety (issue 17): each hazard of applying the generated manifests to a live mesh
//! has a test here, and the README's "Rollout on a live mesh" section is run command by command.
//!
//! The README replay runs the section's shell blocks in a scratch directory with the real
//! `tenant-egress` and a `kubectl` stand-in that records each call (and copies what it was
//! given to apply). The test then replays the calls on a model of the cluster's objects with
//! `kubectl apply --prune -l`'s rules (upsert by kind/namespace/name; prune what the selector
//! and the allowlist select, in the namespaces the applied files touch, that the files no
//! longer contain) and checks the cluster after each one. A kubectl flag the model does not
//! know fails the test, so the README cannot drift from what is checked.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use tenant_egress_config::manifest::{
    self, import, AuditSidecars, DocKind, Options, Selection, WasmOptions, WasmScope, MANAGED_BY,
    MANAGED_BY_LABEL,
};
use tenant_egress_core::spec::{OutboundTrafficPolicy, PolicySpec};

const BIN: &str = env!("CARGO_BIN_EXE_tenant-egress");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn today_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/today-sidecars.yaml")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tenant-egress-rollout-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A policy copied into `dir` as policy.yaml.
fn example_in(dir: &Path, example: &str) {
    std::fs::copy(
        repo()
            .join("istio/examples")
            .join(example)
            .join("policy.yaml"),
        dir.join("policy.yaml"),
    )
    .unwrap();
}

// === The README's rollout section, run ===

/// The fenced `sh` blocks of the README section "Rollout on a live mesh".
fn rollout_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("\n## Rollout on a live mesh\n")
        .expect("README has a section \"## Rollout on a live mesh\"");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    let mut blocks = Vec::new();
    let mut lines = rest[..end].lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let mut block = String::new();
            for l in lines.by_ref() {
                if l.trim() == "```" {
                    break;
                }
                block.push_str(l);
                block.push('\n');
            }
            blocks.push(block);
        }
    }
    blocks
}

/// Records its arguments and what it is given with `-f`; prints today's Sidecars for `get`.
const KUBECTL: &str = r#"#!/bin/sh
set -eu
n=$(ls "$KUBECTL_LOG" | wc -l | tr -d ' ')
d="$KUBECTL_LOG/$(printf %03d "$n")"
mkdir -p "$d"
for a in "$@"; do printf '%s\n' "$a"; done > "$d/args"
if [ "$1" = get ]; then cat "$TODAY_SIDECARS"; exit 0; fi
prev=
for a in "$@"; do
  if [ "$prev" = -f ]; then cp -R "$a" "$d/input"; fi
  prev=$a
done
"#;

type Key = (String, String, String);

fn key_of(v: &Value) -> Key {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let k = (s("/kind"), s("/metadata/namespace"), s("/metadata/name"));
    assert!(
        !k.1.is_empty(),
        "an applied object without a namespace: {v}"
    );
    k
}

fn read_objects(path: &Path) -> Vec<Value> {
    let mut files = Vec::new();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            files.push(e.unwrap().path());
        }
        files.sort();
    } else {
        files.push(path.to_owned());
    }
    let mut out = Vec::new();
    for f in files {
        let t = std::fs::read_to_string(&f).unwrap();
        out.extend(import::documents(&f.display().to_string(), &t).unwrap());
    }
    out
}

/// One kubectl call and the cluster after it.
struct Step {
    args: Vec<String>,
    cluster: BTreeMap<Key, Value>,
}

fn replay(log: &Path, today: &[Value]) -> Vec<Step> {
    let mut cluster: BTreeMap<Key, Value> = today.iter().map(|v| (key_of(v), v.clone())).collect();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let mut steps = Vec::new();
    for entry in entries {
        let args: Vec<String> = std::fs::read_to_string(entry.join("args"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        match args.first().map(String::as_str) {
            Some("get") => assert_eq!(args, ["get", "sidecars,serviceentries", "-A", "-o", "yaml"]),
            Some("apply") => {
                let (mut file, mut prune, mut selector, mut allow) =
                    (false, false, None::<(String, String)>, BTreeSet::new());
                let mut it = args.iter().skip(1);
                while let Some(a) = it.next() {
                    match a.as_str() {
                        "-f" => {
                            it.next();
                            file = true;
                        }
                        "--prune" => prune = true,
                        "-l" => {
                            let sel = it.next().unwrap();
                            let (k, v) = sel.split_once('=').unwrap();
                            selector = Some((k.to_owned(), v.to_owned()));
                        }
                        other => match other.strip_prefix("--prune-allowlist=") {
                            Some(gvk) => {
                                allow.insert(gvk.to_owned());
                            }
                            None => panic!(
                                "the README runs `kubectl {}`: the replay does not model {other}",
                                args.join(" ")
                            ),
                        },
                    }
                }
                assert!(file, "kubectl apply without -f: {args:?}");
                let applied = read_objects(&entry.join("input"));
                let mut keys = BTreeSet::new();
                for obj in &applied {
                    keys.insert(key_of(obj));
                    cluster.insert(key_of(obj), obj.clone());
                }
                if prune {
                    let (lk, lv) = selector.clone().expect("--prune needs -l");
                    let visited: BTreeSet<&str> = keys.iter().map(|k| k.1.as_str()).collect();
                    cluster.retain(|k, obj| {
                        let gvk = format!("{}/{}", obj["apiVersion"].as_str().unwrap_or(""), k.0);
                        let selected = obj.pointer("/metadata/labels").and_then(|l| l.get(&lk))
                            == Some(&json!(lv));
                        !(selected
                            && allow.contains(&gvk)
                            && visited.contains(k.1.as_str())
                            && !keys.contains(k))
                    });
                }
                // Every generated object is selected by the label the README prunes with.
                for obj in &applied {
                    assert_eq!(
                        obj.pointer(&format!(
                            "/metadata/labels/{}",
                            MANAGED_BY_LABEL.replace('/', "~1")
                        )),
                        Some(&json!(MANAGED_BY)),
                        "{obj}"
                    );
                }
            }
            Some("delete") => {
                // `kubectl delete KIND,KIND -A -l key=value`, nothing else.
                let [_, kinds, all, l, sel] = args.as_slice() else {
                    panic!(
                        "the replay models `kubectl delete KINDS -A -l SELECTOR` only: {args:?}"
                    );
                };
                assert_eq!((all.as_str(), l.as_str()), ("-A", "-l"), "{args:?}");
                let kinds: BTreeSet<&str> = kinds
                    .split(',')
                    .map(|k| match k {
                        "sidecars" => "Sidecar",
                        "wasmplugins" => "WasmPlugin",
                        "envoyfilters" => "EnvoyFilter",
                        "peerauthentications" => "PeerAuthentication",
                        other => panic!("the replay does not model kind {other}"),
                    })
                    .collect();
                let (lk, lv) = sel.split_once('=').unwrap();
                cluster.retain(|k, obj| {
                    !(kinds.contains(k.0.as_str())
                        && obj.pointer("/metadata/labels").and_then(|l| l.get(lk))
                            == Some(&json!(lv)))
                });
            }
            _ => panic!(
                "the README runs `kubectl {}`, which the replay does not model",
                args.join(" ")
            ),
        }
        steps.push(Step {
            args,
            cluster: cluster.clone(),
        });
    }
    steps
}

/// A Sidecar as Istio applies it: selector, outbound policy (unset is the mesh's ALLOW_ANY),
/// and per listener (port and protocol, or the catch-all) the set of hosts.
type SidecarMeaning = (
    Option<BTreeMap<String, String>>,
    OutboundTrafficPolicy,
    BTreeSet<(Option<(i64, Option<String>)>, BTreeSet<String>)>,
);

fn meaning(v: &Value) -> SidecarMeaning {
    let mut w = Vec::new();
    let info = import::parse_sidecar("cluster", v, &mut w).unwrap();
    let listeners = info
        .listeners
        .to_egress()
        .into_iter()
        .map(|e| {
            (
                e.port
                    .map(|p| (p.number, p.protocol.map(|x| x.to_string()))),
                e.hosts.into_iter().collect(),
            )
        })
        .collect();
    (
        info.selector,
        info.outbound.unwrap_or(OutboundTrafficPolicy::AllowAny),
        listeners,
    )
}

fn of_kind<'a>(cluster: &'a BTreeMap<Key, Value>, kind: &str) -> BTreeMap<&'a Key, &'a Value> {
    cluster.iter().filter(|(k, _)| k.0 == kind).collect()
}

#[track_caller]
fn assert_sidecars_are_todays(step: &Step, today: &[Value]) {
    let want: BTreeMap<Key, SidecarMeaning> =
        today.iter().map(|v| (key_of(v), meaning(v))).collect();
    let got: BTreeMap<Key, SidecarMeaning> = of_kind(&step.cluster, "Sidecar")
        .into_iter()
        .map(|(k, v)| (k.clone(), meaning(v)))
        .collect();
    assert_eq!(
        got,
        want,
        "after `kubectl {}` the Sidecars scope differently than today's",
        step.args.join(" ")
    );
}

fn plugins(step: &Step) -> Vec<(String, String)> {
    of_kind(&step.cluster, "WasmPlugin")
        .into_keys()
        .map(|k| (k.1.clone(), k.2.clone()))
        .collect()
}

/// The PeerAuthentications of a step, with their mTLS mode.
fn peer_authentications(step: &Step) -> Vec<((String, String), String)> {
    of_kind(&step.cluster, "PeerAuthentication")
        .into_iter()
        .map(|(k, v)| {
            (
                (k.1.clone(), k.2.clone()),
                v["spec"]["mtls"]["mode"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn readme_rollout_section_runs_and_changes_nothing_until_a_tenant_is_enforced() {
    let blocks = rollout_blocks();
    assert!(blocks.len() >= 5, "{blocks:?}");
    let dir = scratch("readme");
    let shim = dir.join("shim");
    let log = dir.join("kubectl-log");
    std::fs::create_dir_all(&shim).unwrap();
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(shim.join("kubectl"), KUBECTL).unwrap();
    Command::new("chmod")
        .args(["+x", shim.join("kubectl").to_str().unwrap()])
        .status()
        .unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}:{}",
        shim.display(),
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let script = format!("set -eu\n{}", blocks.join("\n"));
    let out = Command::new("sh")
        .args(["-c", &script])
        .current_dir(&work)
        .env("PATH", path)
        .env("DIGEST", "0123456789abcdef".repeat(4))
        .env("KUBECTL_LOG", &log)
        .env("TODAY_SIDECARS", today_path())
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "the README's rollout commands failed:\n{script}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // Step 1: the import is in audit mode and validates.
    assert!(
        stdout.contains("policy.yaml: valid (mode=audit"),
        "{stdout}"
    );
    let imported = std::fs::read_to_string(work.join("imported.yaml")).unwrap();
    assert!(imported.contains("\nmode: audit\n"), "{imported}");
    // The audit verdict on ALLOW_ANY passthrough is explained, and not enforced.
    for needle in [
        "decision:    DENY (audit: would be denied, let through)",
        "reason:      authority-mismatch",
        "PassthroughCluster",
        "Under ALLOW_ANY Istio lets this out today",
        "enforced by: the filter's HTTP plugin",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }

    let today =
        import::documents("today", &std::fs::read_to_string(today_path()).unwrap()).unwrap();
    let steps = replay(&log, &today);
    let applies: Vec<&Step> = steps.iter().filter(|s| s.args[0] == "apply").collect();
    assert_eq!(
        applies.len(),
        4,
        "{:?}",
        steps.iter().map(|s| &s.args).collect::<Vec<_>>()
    );
    let pair = |ns: &str, name: &str| (ns.to_owned(), name.to_owned());
    // Both ends (the default): the caller's plugin, and the destination's in each tenant
    // namespace the step places it in (today's policy declares no TCP port: no NETWORK ones).
    let prod_plugins = vec![
        pair("prod", "tenant-egress"),
        pair("prod", "tenant-egress-inbound"),
    ];
    // Mesh-wide, sharded (the default): the caller's fallback in the root namespace and one
    // shard per tenant namespace, next to each one's destination plugin.
    let mut mesh_plugins = vec![pair("istio-system", "tenant-egress")];
    for ns in ["default", "dev", "foo", "prod", "uat"] {
        mesh_plugins.push(pair(ns, "tenant-egress"));
        mesh_plugins.push(pair(ns, "tenant-egress-inbound"));
    }
    mesh_plugins.sort();
    // Step 2: audit in prod only, then mesh-wide: today's Sidecars, nothing enforced, and no
    // PeerAuthentication (STRICT would refuse plaintext callers: a change audit must not make).
    for (step, want) in [(applies[0], &prod_plugins), (applies[1], &mesh_plugins)] {
        assert_sidecars_are_todays(step, &today);
        assert_eq!(&plugins(step), want, "{:?}", step.args);
        assert!(peer_authentications(step).is_empty(), "{:?}", step.args);
        for plugin in of_kind(&step.cluster, "WasmPlugin").into_values() {
            let config = &plugin["spec"]["pluginConfig"];
            assert_eq!(config["mode"], "audit");
            assert!(config["tenants"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t.get("mode").is_none()));
            assert_eq!(plugin["spec"]["sha256"], "0123456789abcdef".repeat(4));
            // Nothing enforced: a module that cannot run must not fail requests either.
            assert_eq!(plugin["spec"]["failStrategy"], "FAIL_OPEN", "{plugin}");
        }
    }
    // Step 3: prod enforced at both ends; the Sidecars still today's; STRICT mTLS in prod's
    // namespace only.
    assert_sidecars_are_todays(applies[2], &today);
    assert_eq!(plugins(applies[2]), mesh_plugins);
    assert_eq!(
        peer_authentications(applies[2]),
        [(pair("prod", "tenant-egress-strict"), "STRICT".to_owned())]
    );
    for plugin in of_kind(&applies[2].cluster, "WasmPlugin").into_values() {
        assert_eq!(plugin["spec"]["failStrategy"], "FAIL_CLOSE", "{plugin}");
        assert_eq!(plugin["spec"]["sha256"], "0123456789abcdef".repeat(4));
        let modes: Vec<(String, Option<String>)> = plugin["spec"]["pluginConfig"]["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_owned(),
                    t.get("mode").and_then(Value::as_str).map(str::to_owned),
                )
            })
            .collect();
        for (name, mode) in &modes {
            assert_eq!(
                mode.as_deref(),
                (name == "prod").then_some("enforce"),
                "{modes:?}"
            );
        }
    }
    // Step 4: rolled back: the plugins and the PeerAuthentication deleted, today's Sidecars.
    let last = steps.last().unwrap();
    assert_eq!(last.args[0], "apply");
    assert!(steps.iter().any(|s| s.args[0] == "delete"
        && plugins(s).is_empty()
        && peer_authentications(s).is_empty()));
    assert_sidecars_are_todays(last, &today);
    assert!(plugins(last).is_empty(), "{:?}", plugins(last));
    assert!(peer_authentications(last).is_empty());
    for s in &steps {
        assert!(of_kind(&s.cluster, "EnvoyFilter").is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// === Module pinning ===

#[test]
fn fail_close_refuses_an_unpinned_remote_module() {
    let dir = scratch("pin");
    example_in(&dir, "prod-uat-dev-cockroachdb");
    let out = run_in(&dir, &["generate", "policy.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    for needle in [
        "refusing a FAIL_CLOSE plugin",
        "RBAC: access denied",
        "--url oci://ghcr.io/tenant-egress/tenant-egress-filter@sha256:<digest> --sha256 <digest>",
        "istio/wasm-image/build.sh",
        "--allow-unpinned",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    assert!(out.stdout.is_empty());
    let sum = "ab".repeat(32);
    let pinned_url = format!("oci://r.example/f@sha256:{sum}");
    for (args, ok) in [
        (vec!["--sha256", sum.as_str()], true),
        (vec!["--url", pinned_url.as_str()], true),
        (vec!["--allow-unpinned"], true),
        (vec!["--fail-strategy", "FAIL_OPEN"], true),
        (vec!["--url", "file:///var/local/lib/wasm/f.wasm"], true),
        (vec!["--only", "sidecars"], true),
        // The EnvoyFilter reads an oci:// module from a file in the proxy: nothing to pin.
        (vec!["--only", "envoyfilter"], true),
        (vec!["--url", "https://example.com/f.wasm"], false),
        (
            vec![
                "--only",
                "envoyfilter",
                "--url",
                "https://example.com/f.wasm",
            ],
            false,
        ),
        (
            vec![
                "--fail-strategy",
                "FAIL_RELOAD",
                "--url",
                "https://example.com/f.wasm",
            ],
            true,
        ),
    ] {
        let mut all = vec!["generate", "policy.yaml"];
        all.extend(&args);
        let out = run_in(&dir, &all);
        assert_eq!(
            out.status.code() == Some(0),
            ok,
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = run_in(&dir, &["generate", "policy.yaml", "--allow-unpinned"]);
    assert!(text(&out.stdout)
        .contains("# Regenerate with: tenant-egress generate policy.yaml --allow-unpinned\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

// === --out ===

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn out_dir_always_holds_exactly_the_last_output() {
    let dir = scratch("outdir");
    example_in(&dir, "helloworld-ports");
    let gen = |extra: &[&str]| {
        let mut args = vec!["generate", "policy.yaml", "--allow-unpinned", "--out", "m"];
        args.extend(extra);
        run_in(&dir, &args)
    };
    let m = dir.join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("NOTES.txt"), "mine\n").unwrap();
    let out = gen(&["--only", "envoyfilter"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(files(&m), ["NOTES.txt", "envoyfilter.yaml"]);
    // The default run after it: never both the EnvoyFilter and the WasmPlugin.
    let out = gen(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("removed m/envoyfilter.yaml"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        files(&m),
        [
            "NOTES.txt",
            "peerauthentication.yaml",
            "sidecars.yaml",
            "wasmplugin.yaml"
        ]
    );
    let all = read_objects(&m.join("sidecars.yaml"))
        .into_iter()
        .chain(read_objects(&m.join("wasmplugin.yaml")))
        .collect::<Vec<_>>();
    assert!(all.iter().any(|o| o["kind"] == "WasmPlugin"));
    assert!(all.iter().all(|o| o["kind"] != "EnvoyFilter"));
    // Another format replaces the files of the first.
    let out = gen(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        files(&m),
        [
            "NOTES.txt",
            "peerauthentication.json",
            "sidecars.json",
            "wasmplugin.json"
        ]
    );
    // A file of the same name that tenant-egress did not write stops the run, changing nothing.
    std::fs::write(m.join("wasmplugin.yaml"), "kind: Hand-written\n").unwrap();
    let out = gen(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("was not generated by tenant-egress"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        files(&m),
        [
            "NOTES.txt",
            "peerauthentication.json",
            "sidecars.json",
            "wasmplugin.json",
            "wasmplugin.yaml"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(m.join("NOTES.txt")).unwrap(),
        "mine\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn out_file_is_a_file_not_a_directory() {
    let dir = scratch("outfile");
    example_in(&dir, "helloworld-ports");
    let out = run_in(
        &dir,
        &[
            "generate",
            "policy.yaml",
            "--allow-unpinned",
            "--out",
            "manifests.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let path = dir.join("manifests.yaml");
    assert!(path.is_file(), "--out manifests.yaml must write a file");
    let stdout = text(&run_in(&dir, &["generate", "policy.yaml", "--allow-unpinned"]).stdout);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), stdout);
    // Again: overwritten (it is ours).
    let out = run_in(
        &dir,
        &[
            "generate",
            "policy.yaml",
            "--allow-unpinned",
            "--out",
            "manifests.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run_in(
        &dir,
        &[
            "generate",
            "policy.yaml",
            "--allow-unpinned",
            "--out",
            "m.json",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--format json"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.join("m.json").exists());
    let out = run_in(
        &dir,
        &[
            "generate",
            "policy.yaml",
            "--allow-unpinned",
            "--format",
            "json",
            "--out",
            "m.json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("m.json")).unwrap()).unwrap();
    assert_eq!(v["kind"], "List");
    let _ = std::fs::remove_dir_all(&dir);
}

// === Labels, prune and staged roll-out (the library) ===

fn variants() -> Vec<Options> {
    let base = Options {
        wasm: WasmOptions {
            allow_unpinned: true,
            ..Default::default()
        },
        ..Default::default()
    };
    vec![
        base.clone(),
        Options {
            selection: Selection::EnvoyFilter,
            ..base.clone()
        },
        Options {
            emit_root_default: true,
            audit_sidecars: AuditSidecars::Open,
            wasm: WasmOptions {
                scope: WasmScope::Namespace,
                ..base.wasm.clone()
            },
            ..base.clone()
        },
    ]
}

fn load_example(name: &str) -> PolicySpec {
    let text =
        std::fs::read_to_string(repo().join("istio/examples").join(name).join("policy.yaml"))
            .unwrap();
    tenant_egress_config::yaml::from_str(&text).unwrap()
}

const EXAMPLES: [&str; 3] = [
    "helloworld-ports",
    "prod-uat-dev-cockroachdb",
    "vendor-multi-namespace",
];

#[test]
fn every_generated_object_carries_the_managed_by_label() {
    for ex in EXAMPLES {
        let spec = load_example(ex);
        for opts in variants() {
            let g = manifest::generate(&spec, &opts).unwrap();
            assert!(!g.docs.is_empty());
            for d in &g.docs {
                let v = d.value.to_json();
                assert_eq!(
                    v["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY,
                    "{ex}: {v}"
                );
            }
        }
    }
}

#[test]
fn a_removed_tenant_leaves_nothing_in_the_output() {
    for ex in EXAMPLES {
        let spec = load_example(ex);
        for opts in variants() {
            for (t, tenant) in spec.tenants.iter().enumerate() {
                let mut without = spec.clone();
                without.tenants.remove(t);
                let g = manifest::generate(&without, &opts).unwrap();
                for d in &g.docs {
                    let v = d.value.to_json();
                    let ns = v["metadata"]["namespace"].as_str().unwrap();
                    assert!(
                        !tenant.namespaces.iter().any(|n| n == ns),
                        "{ex}: tenant {} removed, but {v}",
                        tenant.name
                    );
                    assert_ne!(
                        v["metadata"]["labels"]["tenant-egress/tenant"],
                        json!(tenant.name)
                    );
                }
            }
        }
    }
}

#[test]
fn staged_rollout_puts_the_plugin_in_the_chosen_namespaces_only() {
    let spec = load_example("prod-uat-dev-cockroachdb");
    let staged = |namespaces: &[&str], scope: WasmScope, selection: Selection| Options {
        selection,
        wasm: WasmOptions {
            scope,
            namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
            allow_unpinned: true,
            ..Default::default()
        },
        ..Default::default()
    };
    for selection in [Selection::WasmPlugin, Selection::EnvoyFilter] {
        let g = manifest::generate(
            &spec,
            &staged(&["uat", "prod"], WasmScope::Namespace, selection),
        )
        .unwrap();
        let placed: BTreeSet<(String, String)> = g
            .docs
            .iter()
            .filter(|d| d.kind != DocKind::Sidecar)
            .map(|d| {
                let v = d.value.to_json();
                (
                    v["metadata"]["namespace"].as_str().unwrap().to_owned(),
                    v["metadata"]["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let want: BTreeSet<(String, String)> = match selection {
            // Both ends (the default) in each chosen namespace, and no other: the caller's HTTP
            // and NETWORK plugins (the policy declares TCP port 26257), the destination's, and
            // (the example is enforced) the STRICT PeerAuthentication.
            Selection::WasmPlugin => ["prod", "uat"]
                .iter()
                .flat_map(|ns| {
                    [
                        "tenant-egress",
                        "tenant-egress-tcp",
                        "tenant-egress-inbound",
                        "tenant-egress-inbound-tcp",
                        "tenant-egress-strict",
                    ]
                    .map(|n| ((*ns).to_owned(), n.to_owned()))
                })
                .collect(),
            _ => ["prod", "uat"]
                .iter()
                .map(|ns| ((*ns).to_owned(), "tenant-egress".to_owned()))
                .collect(),
        };
        assert_eq!(placed, want, "{selection:?}");
    }
    for (namespaces, scope, what) in [
        (&["prod"][..], WasmScope::Mesh, "add --wasm-scope namespace"),
        (
            &["istio-system"][..],
            WasmScope::Namespace,
            "not a namespace of any tenant",
        ),
    ] {
        let e =
            manifest::generate(&spec, &staged(namespaces, scope, Selection::Default)).unwrap_err();
        assert!(e.to_string().contains(what), "{e}");
    }
}

// === import, explain, validate ===

#[test]
fn import_is_audit_mode_and_says_so() {
    let dir = scratch("import");
    let out = run_in(&dir, &["import", today_path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let policy = text(&out.stdout);
    assert!(policy.contains("\nmode: audit\n"), "{policy}");
    assert!(
        !policy
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("mode: enforce")),
        "{policy}"
    );
    assert!(policy.contains("in audit mode"), "{policy}");
    assert!(policy.contains("one tenant at a time"), "{policy}");
    // Generating it FAIL_CLOSE is noted: a module failure would fail requests in audit mode.
    std::fs::write(dir.join("imported.yaml"), &policy).unwrap();
    let sum = "ab".repeat(32);
    let out = run_in(&dir, &["generate", "imported.yaml", "--sha256", &sum]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .contains("note: every tenant is in audit mode but the plugin is FAIL_CLOSE"),
        "{}",
        text(&out.stderr)
    );
    let out = run_in(
        &dir,
        &[
            "generate",
            "imported.yaml",
            "--sha256",
            &sum,
            "--fail-strategy",
            "FAIL_OPEN",
        ],
    );
    assert!(
        !text(&out.stderr).contains("FAIL_CLOSE"),
        "{}",
        text(&out.stderr)
    );
    // A hand-written Sidecar whose name the generated one does not take over is named for
    // deletion.
    let renamed = std::fs::read_to_string(today_path()).unwrap().replace(
        "{name: default, namespace: foo}",
        "{name: foo-egress, namespace: foo}",
    );
    std::fs::write(dir.join("renamed.yaml"), renamed).unwrap();
    let out = run_in(&dir, &["import", "renamed.yaml"]);
    assert!(
        text(&out.stderr).contains("kubectl -n foo delete sidecar foo-egress"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_in_a_gateway_namespace_says_gateways_are_not_enforced() {
    let dir = scratch("explain-gw");
    std::fs::write(
        dir.join("policy.yaml"),
        "apiVersion: tenant-egress/v1\nunknownSource: deny\n\
         tenants: [{name: team-01, namespaces: [team-01], egress: [{hosts: [\"./*\"]}]}]\n",
    )
    .unwrap();
    let out = run_in(
        &dir,
        &[
            "explain",
            "policy.yaml",
            "--source-namespace",
            "istio-system",
            "--authority",
            "api.team-01:8080",
        ],
    );
    let s = text(&out.stdout);
    assert!(s.contains("reason:      no-tenant"), "{s}");
    assert!(
        s.contains(
            "Istio gateway proxies (ingress/egress gateways, node id router~...) are not enforced"
        ),
        "{s}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_names_the_enforcement_point_and_validate_warns_about_uncovered_tcp() {
    let dir = scratch("coverage");
    let write = |name: &str, v: Value| {
        std::fs::write(dir.join(name), v.to_string()).unwrap();
    };
    write(
        "no-tcp.json",
        json!({"apiVersion": "tenant-egress/v1",
               "tenants": [{"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["./*"]}]}]}),
    );
    write(
        "tcp.json",
        json!({"apiVersion": "tenant-egress/v1",
               "tenants": [{"name": "prod", "namespaces": ["prod"],
                 "egress": [{"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["./*"]},
                            {"hosts": ["./*"]}]}]}),
    );
    let explain = |file: &str, extra: &[&str]| {
        let mut args = vec!["explain", file, "--source-namespace", "prod", "--json"];
        args.extend(extra);
        let out = run_in(&dir, &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let db = [
        "--protocol",
        "tcp",
        "--cluster",
        "outbound|26257||cockroachdb.uat.svc.cluster.local",
    ];
    let v = explain("no-tcp.json", &db);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["enforcedBy"]["point"], "sidecar-only", "{v}");
    assert!(v["enforcedBy"]["detail"]
        .as_str()
        .unwrap()
        .contains("generate emits no NETWORK plugin"));
    assert_eq!(
        explain("tcp.json", &db)["enforcedBy"]["point"],
        "network-plugin"
    );
    let other = [
        "--protocol",
        "tcp",
        "--cluster",
        "outbound|5432||pg.uat.svc.cluster.local",
    ];
    assert_eq!(
        explain("tcp.json", &other)["enforcedBy"]["point"],
        "sidecar-only"
    );
    let pass = [
        "--protocol",
        "tcp",
        "--cluster",
        "PassthroughCluster",
        "--destination-address",
        "10.1.2.3:5432",
    ];
    assert_eq!(
        explain("tcp.json", &pass)["enforcedBy"]["point"],
        "sidecar-only"
    );
    write(
        "allow-any.json",
        json!({"apiVersion": "tenant-egress/v1",
               "tenants": [{"name": "prod", "namespaces": ["prod"],
                 "outboundTrafficPolicy": "ALLOW_ANY", "egress": [{"hosts": ["./*"]}]}]}),
    );
    assert_eq!(
        explain("allow-any.json", &pass)["enforcedBy"]["point"],
        "nothing"
    );
    let http = [
        "--authority",
        "api.uat:8080",
        "--cluster",
        "outbound|8080||api.uat.svc.cluster.local",
    ];
    let v = explain("no-tcp.json", &http);
    assert_eq!(v["enforcedBy"]["point"], "http-plugin");
    // Both ends are generate's default: the verdict is decided again at the destination.
    assert!(
        v["enforcedBy"]["detail"]
            .as_str()
            .unwrap()
            .contains("the destination end decides it again, on the caller's mTLS identity"),
        "{v}"
    );
    assert!(!explain("tcp.json", &pass)["enforcedBy"]["detail"]
        .as_str()
        .unwrap()
        .contains("again"));
    // The text output has the line too.
    let out = run_in(
        &dir,
        &[
            "explain",
            "no-tcp.json",
            "--source-namespace",
            "prod",
            db[0],
            db[1],
            db[2],
            db[3],
        ],
    );
    assert!(
        text(&out.stdout).contains("\nenforced by: nothing enforces this verdict on port 26257")
    );

    for (file, needle) in [
        (
            "no-tcp.json",
            "raw TCP on every port (its portless entry; the policy declares no TCP port",
        ),
        (
            "tcp.json",
            "raw TCP on every port but 26257 (its portless entry)",
        ),
    ] {
        for cmd in [
            &["validate", file][..],
            &["generate", file, "--allow-unpinned"][..],
        ] {
            let out = run_in(&dir, cmd);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            let err = text(&out.stderr);
            // validate names every warning's line and tenant (the document is one line).
            let expected = match cmd[0] {
                "validate" => format!("warning: {file}:1: tenants[0] (tenant prod): {needle}"),
                _ => format!("warning: {file}: tenants[0] (prod): {needle}"),
            };
            assert!(err.contains(&expected), "{cmd:?}: {err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn imported_allow_any_tenants_are_warned_about_passthrough_tcp() {
    let imported = import::import(
        &[(
            "today".into(),
            std::fs::read_to_string(today_path()).unwrap(),
        )],
        "istio-system",
    )
    .unwrap();
    let gaps = manifest::coverage::tcp_gaps(&imported.spec);
    let prod = gaps
        .iter()
        .find(|g| g.contains("(prod)"))
        .unwrap_or_else(|| panic!("{gaps:?}"));
    assert!(prod.contains("ALLOW_ANY"), "{prod}");
    // foo is REGISTRY_ONLY with an HTTP-only port: nothing uncovered.
    assert!(!gaps.iter().any(|g| g.contains("(foo)")), "{gaps:?}");
}
