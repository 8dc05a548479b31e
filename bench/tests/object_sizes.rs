//! The objects `generate` emits for the 100,000-rule policy (`gen-policy 100000`: 754
//! tenants, 1,482 namespaces), sharded and at both ends as by default: under the default
//! `--max-object-bytes` (256 KiB) its largest tenant (tenant-0, about 24,000 hosts) alone does
//! not fit, and is refused by name and size; up to etcd's 1.5 MiB every object fits, and every
//! destination shard fits the default 256 KiB; the whole policy in one plugin (`--shard none`)
//! does not fit even that. `scripts/test.sh` runs it in a release build.
//! Sizes only: the time `generate` takes is measured in a release build, never here.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tenant_egress_bench::{generate_policy, DEFAULT_SEED};
use tenant_egress_config::manifest::{self, shard, DocKind, Options, Shard};
use tenant_egress_core::PolicySpec;

fn spec_100k() -> PolicySpec {
    let doc = generate_policy(100_000, DEFAULT_SEED);
    tenant_egress_core::validate::validate_value(doc).unwrap().0
}

fn options() -> Options {
    let mut opts = Options::default();
    opts.wasm.url = "file:///var/local/lib/wasm/tenant_egress_filter.wasm".into();
    opts
}

const SLOW: &str =
    "generates the 100,000-rule policy's ~3,000 objects three times (a few seconds in a \
     release build, minutes in a debug one): cargo test --release -p tenant-egress-bench \
     --test object_sizes -- --ignored";

#[test]
#[ignore = "slow; see SLOW"]
fn the_100k_rule_policy_fits_etcd_sharded_and_its_largest_tenant_is_named() {
    let _ = SLOW;
    let spec = spec_100k();
    let namespaces: usize = spec.tenants.iter().map(|t| t.namespaces.len()).sum();
    // Default limit (256 KiB): tenant-0 (about 24,000 hosts) alone is too large for one
    // Sidecar; refused by name and size, nothing emitted.
    let e = manifest::generate(&spec, &options())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tenant \"tenant-0\" alone does not fit one object")
            && e.contains("over the limit of 262144 bytes"),
        "{e}"
    );
    // Up to etcd's limit, every object fits.
    let opts = Options {
        max_object_bytes: shard::ETCD_MAX_OBJECT_BYTES,
        ..options()
    };
    let g = manifest::generate(&spec, &opts).unwrap();
    let mut plugins = 0;
    let mut destination_plugins = 0;
    let mut over_256k = 0;
    for doc in &g.docs {
        let size = serde_json::to_vec(&doc.value).unwrap().len();
        assert!(
            size <= shard::ETCD_MAX_OBJECT_BYTES,
            "{size} bytes: {:?}",
            doc.value.to_json()["metadata"]
        );
        if size > shard::DEFAULT_MAX_OBJECT_BYTES {
            over_256k += 1;
        }
        if doc.kind == DocKind::WasmPlugin {
            plugins += 1;
            let json = doc.value.to_json();
            if json["spec"]["match"][0]["mode"] == "SERVER" {
                destination_plugins += 1;
                assert!(
                    size <= shard::DEFAULT_MAX_OBJECT_BYTES,
                    "a destination shard of {size} bytes: {:?}",
                    json["metadata"]
                );
            }
        }
    }
    // At the caller's end one HTTP and one NETWORK plugin per tenant namespace plus the
    // fallback pair; at the destination's one of each per tenant namespace.
    assert_eq!(
        destination_plugins,
        2 * namespaces,
        "{namespaces} namespaces"
    );
    assert_eq!(plugins, 2 * (namespaces + 1) + 2 * namespaces);
    eprintln!("{} objects, {over_256k} over 256 KiB", g.docs.len());
    // The whole policy in one plugin does not fit even etcd's limit.
    let mut none = opts.clone();
    none.wasm.shard = Shard::None;
    let e = manifest::generate(&spec, &none).unwrap_err().to_string();
    assert!(
        e.contains("WasmPlugin istio-system/tenant-egress is ")
            && e.contains("over the limit of 1572864 bytes")
            && e.contains("the whole policy (--shard none)"),
        "{e}"
    );
}

#[test]
fn a_limit_over_etcds_is_refused() {
    let spec = tenant_egress_core::validate::validate_value(generate_policy(10, DEFAULT_SEED))
        .unwrap()
        .0;
    let e = manifest::generate(
        &spec,
        &Options {
            max_object_bytes: 2_000_000,
            ..options()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("--max-object-bytes 2000000 is not in 1..=1572864"),
        "{e}"
    );
}
