//! Private network namespaces, for tests whose addresses matter: an original destination
//! inside or outside the cluster's networks must be a real address Envoy accepts a connection
//! on, so `destination.address` is that address and `PassthroughCluster` (ORIGINAL_DST) really
//! connects to it.
//!
//! [`in_private_netns`] re-executes the current test binary, with only the calling test
//! selected, under `unshare --net` (a new network namespace holding only a loopback device;
//! needs root or CAP_SYS_ADMIN). Inside, it brings `lo` up, adds the test's addresses to it and
//! runs the body: Envoy, its upstreams and the client all live in the namespace, and nothing
//! reaches the host's network. The outer test passes only if the inner run ran exactly that one
//! test and it passed; its output is shown either way.

use std::process::Command;

/// Set in the re-executed test process: the body runs (instead of re-executing again).
pub const IN_NETNS_ENV: &str = "TENANT_EGRESS_IN_NETNS";

/// Runs `body` inside a fresh network namespace with `addresses` (CIDR form, `10.96.3.4/32`) on
/// `lo`. `test` is the calling test's name as libtest knows it (its function name in an
/// integration test file).
pub fn in_private_netns(test: &str, addresses: &[&str], body: impl FnOnce()) {
    if std::env::var_os(IN_NETNS_ENV).is_some() {
        ip(&["link", "set", "lo", "up"]);
        for a in addresses {
            ip(&["addr", "add", a, "dev", "lo"]);
        }
        body();
        return;
    }
    let exe = std::env::current_exe().expect("current test executable");
    let out = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(IN_NETNS_ENV, "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare (util-linux) for {test}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- {test} in a private network namespace ---\n{stdout}{stderr}");
    assert!(
        out.status.success(),
        "{test} failed inside its network namespace ({}); output above",
        out.status
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{test} did not run inside the namespace (is the name exact?); output above"
    );
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?} (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
