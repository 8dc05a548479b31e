//! Issue 15 as a user meets it: `explain` on a passthrough (HTTP and TLS), the cluster's
//! networks, and `import --service-cidr/--pod-cidr`.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tenant-egress");

/// The demo's `dev` tenant, with the cluster's networks declared.
const POLICY: &str = r#"
apiVersion: tenant-egress/v1
clusterNetworks: [10.96.0.0/12, 10.244.0.0/16]
tenants:
  - name: dev
    namespaces: [dev]
    outboundTrafficPolicy: ALLOW_ANY
    egress:
      - port: {number: 26257, protocol: TCP}
        hosts: ["./*"]
      - hosts: ["./*", "uat/*", "*/*.example.com", "~/secret.example.com"]
  - name: uat
    namespaces: [uat]
    egress: [{hosts: ["./*"]}]
"#;

fn policy_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("tenant-egress-pt-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// `explain --json` for source namespace dev; returns the report.
fn explain(policy: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["explain", policy, "--source-namespace", "dev", "--json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn exclusion_spellings_are_excluded_on_http_and_tls_passthrough() {
    let p = policy_file("dev.yaml", POLICY);
    for host in [
        "secret.example.com",
        "secret.example.com.",
        "secret.example.com:8080",
        "SECRET.example.com.:80",
    ] {
        let v = explain(
            &p,
            &[
                "--authority",
                host,
                "--cluster",
                "PassthroughCluster",
                "--destination-address",
                "93.184.216.34:80",
            ],
        );
        assert_eq!(v["reason"], "excluded", "{host}: {v}");
        assert_eq!(v["rule"]["text"], "~/secret.example.com", "{host}");
        assert_eq!(v["destination"]["host"], "secret.example.com");
        assert_eq!(
            v["destination"]["port"], 80,
            "the port is where the bytes go"
        );
        assert_eq!(v["destination"]["address"], "93.184.216.34:80");
    }
    let v = explain(
        &p,
        &[
            "--authority",
            "secret.example.com:00080",
            "--cluster",
            "PassthroughCluster",
            "--destination-address",
            "93.184.216.34:80",
        ],
    );
    assert_eq!(v["reason"], "malformed-authority", "{v}");
    let v = explain(
        &p,
        &[
            "--protocol",
            "tcp",
            "--authority",
            "secret.example.com",
            "--cluster",
            "PassthroughCluster",
            "--destination-address",
            "140.82.112.5:443",
        ],
    );
    assert_eq!(v["reason"], "excluded", "TLS SNI: {v}");
}

#[test]
fn tls_and_http_agree_on_a_public_name() {
    let p = policy_file("agree.yaml", POLICY);
    for protocol in ["http", "tcp"] {
        for cluster in [None, Some("PassthroughCluster")] {
            let mut args = vec![
                "--protocol",
                protocol,
                "--authority",
                "api.github.com",
                "--destination-address",
                "140.82.112.5:443",
            ];
            if let Some(c) = cluster {
                args.extend(["--cluster", c]);
            }
            let v = explain(&p, &args);
            assert_eq!(v["reason"], "allow-any", "{protocol} {cluster:?}: {v}");
            let why = v["explanation"].as_str().unwrap();
            assert!(
                why.contains("outside the service registry and the cluster's networks"),
                "{why}"
            );
        }
    }
}

#[test]
fn public_names_are_not_service_aliases() {
    let p = policy_file("public.yaml", POLICY);
    for host in [
        "go.dev",
        "web.dev:80",
        "intranet",
        "localhost:8080",
        "foo_bar.example.org",
    ] {
        let v = explain(
            &p,
            &[
                "--authority",
                host,
                "--cluster",
                "PassthroughCluster",
                "--destination-address",
                "216.239.32.21:80",
            ],
        );
        assert_eq!(v["decision"], "allow", "{host}: {v}");
        assert_eq!(v["reason"], "allow-any", "{host}: {v}");
    }
}

#[test]
fn in_cluster_destinations_need_an_import() {
    let p = policy_file("incluster.yaml", POLICY);
    let inside = "inside the cluster's networks (10.96.0.0/12, 10.244.0.0/16)";
    for (host, address, why) in [
        (
            "10-0-0-4.prod.pod.cluster.local:8080",
            "10.244.0.4:8080",
            "is in-cluster: the request names a pod (*.pod.cluster.local)",
        ),
        ("x.test", "10.96.3.4:80", inside),
        ("x.test", "10.244.1.7:80", inside),
    ] {
        let v = explain(
            &p,
            &[
                "--authority",
                host,
                "--cluster",
                "PassthroughCluster",
                "--destination-address",
                address,
            ],
        );
        assert_eq!(v["reason"], "not-allowed", "{host} -> {address}: {v}");
        let ip = address.split(':').next().unwrap();
        assert_eq!(v["destination"]["host"], ip, "decided on the address");
        let explanation = v["explanation"].as_str().unwrap();
        assert!(explanation.contains(why), "{explanation}");
        assert!(explanation.contains("\"*/*\""), "{explanation}");
    }
    // The human form names the original destination.
    let out = run(&[
        "explain",
        &p,
        "--source-namespace",
        "dev",
        "--authority",
        "go.dev",
        "--cluster",
        "PassthroughCluster",
        "--destination-address",
        "216.239.32.21:443",
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("go.dev:443 (original destination 216.239.32.21:443)"),
        "{s}"
    );
}

#[test]
fn validate_warns_and_import_fills_the_networks() {
    let no_networks = POLICY.replace("clusterNetworks: [10.96.0.0/12, 10.244.0.0/16]\n", "");
    assert_ne!(no_networks, POLICY);
    let p = policy_file("nonets.yaml", &no_networks);
    let out = run(&["validate", &p]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("clusterNetworks: not set, and tenant(s) dev use ALLOW_ANY"),
        "{err}"
    );

    let sidecar = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: dev}
spec:
  outboundTrafficPolicy: {mode: ALLOW_ANY}
  egress: [{hosts: ["./*"]}]
"#;
    let s = policy_file("sidecar.yaml", sidecar);
    let out = run(&["import", &s]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("service-cluster-ip-range"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("clusterNetworks"));
    let out = run(&[
        "import",
        &s,
        "--service-cidr",
        "10.96.0.0/12",
        "--pod-cidr",
        "10.244.0.0/16",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("clusterNetworks:"), "{yaml}");
    assert!(
        yaml.contains("clusterNetworks:\n- 10.96.0.0/12\n- 10.244.0.0/16\n"),
        "{yaml}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("service-cluster-ip-range"),
        "no warning once declared"
    );
    let out = run(&["import", &s, "--service-cidr", "10.96.0.1/12"]);
    assert_eq!(out.status.code(), Some(1), "a bad CIDR does not validate");
    assert!(String::from_utf8_lossy(&out.stderr).contains("host bits set"));
}
