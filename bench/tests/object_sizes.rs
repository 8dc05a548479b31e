//! Every object `generate` emits for the 100,000-rule policy (`gen-policy 100000`: 754
//! tenants, 1,482 namespaces) fits the default `--max-object-bytes` (256 KiB, what client-side
//! `kubectl apply` can keep in its annotation), sharded as by default; the whole policy in one
//! plugin (`--shard none`) is refused with a message that names the object and its size.
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

#[test]
fn every_object_of_the_100k_rule_policy_fits_sharded() {
    let spec = spec_100k();
    let namespaces: usize = spec.tenants.iter().map(|t| t.namespaces.len()).sum();
    let g = manifest::generate(&spec, &options()).unwrap();
    let mut plugins = 0;
    let mut largest = 0;
    for doc in &g.docs {
        let size = serde_json::to_vec(&doc.value).unwrap().len();
        assert!(
            size <= shard::DEFAULT_MAX_OBJECT_BYTES,
            "{size} bytes: {:?}",
            doc.value.to_json()["metadata"]
        );
        largest = largest.max(size);
        if doc.kind == DocKind::WasmPlugin {
            plugins += 1;
        }
    }
    // One HTTP plugin per tenant namespace plus the fallback (and as many NETWORK ones when
    // the policy has TCP ports).
    assert!(
        plugins == namespaces + 1 || plugins == 2 * (namespaces + 1),
        "{plugins} plugins for {namespaces} namespaces"
    );
    eprintln!(
        "{} objects, {plugins} WasmPlugins, the largest {largest} bytes",
        g.docs.len()
    );
}

#[test]
fn the_whole_100k_rule_policy_in_one_plugin_is_refused_by_name_and_size() {
    let spec = spec_100k();
    let mut opts = options();
    opts.wasm.shard = Shard::None;
    let e = manifest::generate(&spec, &opts).unwrap_err().to_string();
    assert!(
        e.contains("WasmPlugin istio-system/tenant-egress is ")
            && e.contains("over the limit of 262144 bytes")
            && e.contains("the whole policy (--shard none)"),
        "{e}"
    );
    // Even etcd's own limit is too small for it.
    opts.max_object_bytes = shard::ETCD_MAX_OBJECT_BYTES;
    let e = manifest::generate(&spec, &opts).unwrap_err().to_string();
    assert!(e.contains("over the limit of 1572864 bytes"), "{e}");
}

#[test]
fn one_tenant_over_the_limit_is_named() {
    let spec = spec_100k();
    let mut opts = options();
    // A limit below the largest shard: the message names that tenant.
    opts.max_object_bytes = 4096;
    let e = manifest::generate(&spec, &opts).unwrap_err().to_string();
    assert!(e.contains("alone does not fit one object"), "{e}");
    assert!(e.contains("tenant \""), "{e}");
    assert!(manifest::generate(
        &spec,
        &Options {
            max_object_bytes: 2_000_000,
            ..options()
        }
    )
    .unwrap_err()
    .to_string()
    .contains("--max-object-bytes 2000000 is not in 1..=1572864"),);
}
