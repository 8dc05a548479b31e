//! The benchmark's configurations (one sidecar Envoy each) and the traffic each is measured
//! with: the cells of the report.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tenant_egress_bench::{
    generate_policy, DEFAULT_SEED, IMPORTED_NAMESPACE, PROBE_NAMESPACE, UNLISTED_NAMESPACE,
};
use tenant_egress_core::PolicySpec;
use tenant_egress_tests::EnvoyConfig;

use crate::{io_err, rbac, report, Args, LoadError};

/// The service port every sidecar serves (its listener `0.0.0.0_80`).
pub const SVC_PORT: u16 = 80;

/// The generated policies' fixed names (bench/src/lib.rs).
pub const GEN_ALLOWED: (&str, &str) = ("svc-0", IMPORTED_NAMESPACE);
pub const GEN_DENIED: (&str, &str) = ("svc-0", UNLISTED_NAMESPACE);
/// The example policy (`crdb` of config/core/testdata/vectors.json: prod/uat/dev/logmonkey).
pub const EXAMPLE_POLICY: &str = "crdb";
pub const EXAMPLE_SOURCE_NS: &str = "prod";
pub const EXAMPLE_ALLOWED: (&str, &str) = ("cockroachdb", "prod");
pub const EXAMPLE_DENIED: (&str, &str) = ("cockroachdb", "uat");

/// Traffic kinds: a bare request to the allowed service, the same with realistic headers
/// ([`crate::client::realistic_headers`]), a bare request to the denied service.
pub const ALLOWED: &str = "allowed";
pub const REALISTIC: &str = "realistic";
pub const DENIED: &str = "denied";

/// The HTTP filter of a configuration.
pub enum Filter {
    None,
    Wasm { file: PathBuf, config: String },
    Typed(Value),
}

/// One sidecar configuration.
pub struct Config {
    /// Short name (`te-1k`), the first part of its cells' names.
    pub key: String,
    /// What the report calls it.
    pub label: String,
    pub filter: Filter,
    /// The sidecar's namespace.
    pub source_ns: String,
    /// (service, namespace) of the allowed and the denied traffic.
    pub allowed: (String, String),
    pub denied: (String, String),
    /// Whether denied traffic gets a denial (403); otherwise it is proxied like allowed traffic.
    pub blocks: bool,
    /// The traffic kinds it is measured with, in cell order.
    pub traffics: Vec<&'static str>,
    /// A line for the report's list of configurations (empty: none).
    pub note: String,
}

impl Config {
    fn new(key: &str, label: &str, filter: Filter) -> Config {
        Config {
            key: key.into(),
            label: label.into(),
            filter,
            source_ns: PROBE_NAMESPACE.into(),
            allowed: owned(GEN_ALLOWED),
            denied: owned(GEN_DENIED),
            blocks: false,
            traffics: vec![ALLOWED],
            note: String::new(),
        }
    }

    /// Blocks denied traffic, and is measured with denied traffic too.
    fn blocking(mut self) -> Config {
        self.blocks = true;
        self.traffics.push(DENIED);
        self
    }

    fn note(mut self, note: impl Into<String>) -> Config {
        self.note = note.into();
        self
    }

    pub fn envoy_config(&self) -> EnvoyConfig {
        let cfg = EnvoyConfig::new(&self.source_ns)
            .service(&self.allowed.0, &self.allowed.1, &[SVC_PORT])
            .service(&self.denied.0, &self.denied.1, &[SVC_PORT]);
        match &self.filter {
            Filter::None => cfg,
            Filter::Wasm { file, config } => cfg.wasm_file(file).wasm_filter(config),
            Filter::Typed(v) => cfg.typed_filter(v.clone()),
        }
    }

    pub fn host(&self, traffic: &str) -> String {
        let (svc, ns) = if traffic == DENIED {
            &self.denied
        } else {
            &self.allowed
        };
        format!("{svc}.{ns}.svc.cluster.local")
    }

    /// The status a cell of this traffic must answer: 403 for denied traffic when the filter
    /// blocks, else 200.
    pub fn expect(&self, traffic: &str) -> u16 {
        if traffic == DENIED && self.blocks {
            403
        } else {
            200
        }
    }

    /// The request a cell of this traffic sends: `Host` only, or the realistic headers.
    pub fn request(&self, traffic: &str) -> Vec<u8> {
        let extra = if traffic == REALISTIC {
            crate::client::realistic_headers()
        } else {
            Vec::new()
        };
        crate::client::request_bytes(&self.host(traffic), &extra)
    }
}

fn owned((a, b): (&str, &str)) -> (String, String) {
    (a.into(), b.into())
}

/// `te-1k` for 1,000, `te-1500` for 1,500.
pub fn size_key(prefix: &str, n: usize) -> String {
    if n > 0 && n.is_multiple_of(1000) {
        format!("{prefix}-{}k", n / 1000)
    } else {
        format!("{prefix}-{n}")
    }
}

pub fn configs(
    args: &Args,
    filter_wasm: &Path,
    noop_wasm: &Path,
) -> Result<Vec<Config>, LoadError> {
    let vectors = tenant_egress_core::vectors::load()
        .map_err(|e| LoadError::Input(format!("config/core/testdata/vectors.json: {e}")))?;
    let example = vectors
        .policies
        .get(EXAMPLE_POLICY)
        .ok_or_else(|| LoadError::Input(format!("vectors.json has no policy {EXAMPLE_POLICY:?}")))?
        .to_string();
    let tenant_egress = |policy: String| Filter::Wasm {
        file: filter_wasm.to_path_buf(),
        config: policy,
    };
    let noop = |calls: &str| Filter::Wasm {
        file: noop_wasm.to_path_buf(),
        config: calls.into(),
    };
    let mut out = vec![
        Config::new("none", "no filter", Filter::None),
        Config::new("noop-wasm", "no-op wasm filter", noop("")),
        // The floor of any filter deciding on the routed destination (issue 14): it must at
        // least fetch these two inputs from the host.
        Config::new(
            "floor",
            "floor: `:authority` + cluster name, decides nothing",
            noop("authority,cluster"),
        )
        .note(
            "the no-op filter fetching only the `:authority` value and `xds.cluster_name`, the \
             two inputs of a decision on the routed destination, and deciding nothing",
        ),
        Config {
            source_ns: EXAMPLE_SOURCE_NS.into(),
            allowed: owned(EXAMPLE_ALLOWED),
            denied: owned(EXAMPLE_DENIED),
            ..Config::new(
                "te-example",
                "tenant-egress, example policy",
                tenant_egress(example),
            )
            .blocking()
            .note("config/core/testdata/vectors.json `crdb` (4 tenants, 13 host entries)")
        },
    ];
    for &n in &args.sizes {
        let policy = generate_policy(n, DEFAULT_SEED).to_string();
        out.push(
            Config::new(
                &size_key("te", n),
                &format!("tenant-egress, {} rules", report::thousands(n as f64)),
                tenant_egress(policy),
            )
            .blocking()
            .note(format!("gen-policy {n}")),
        );
    }
    if args.diagnostics {
        out.push(
            Config::new(
                "noop-map+cluster",
                "no-op wasm + header-map + cluster host calls",
                noop("header-map,cluster"),
            )
            .note(
                "the whole request header map + `xds.cluster_name`: what fetching every header \
                 instead of one costs",
            ),
        );
    }
    for (i, alt) in args.alt_filter_wasm.iter().enumerate() {
        let n = if args.sizes.contains(&1000) {
            1000
        } else {
            args.sizes.first().copied().unwrap_or(1000)
        };
        let name = alt
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = fs::metadata(alt)
            .map_err(io_err(format!("{}", alt.display())))?
            .len();
        out.push(
            Config::new(
                &format!("te-1k-alt{}", i + 1),
                &format!(
                    "tenant-egress ({name}), {} rules",
                    report::thousands(n as f64)
                ),
                Filter::Wasm {
                    file: alt.clone(),
                    config: generate_policy(n, DEFAULT_SEED).to_string(),
                },
            )
            .blocking()
            .note(format!(
                "gen-policy {n} with {} ({} bytes)",
                alt.display(),
                report::thousands(bytes as f64)
            )),
        );
    }
    let rk = args.rbac_rules;
    let spec: PolicySpec = serde_json::from_value(generate_policy(rk, DEFAULT_SEED))
        .map_err(|e| LoadError::Input(format!("generated policy {rk}: {e}")))?;
    let allowed_host = format!("{}.{}.svc.cluster.local", GEN_ALLOWED.0, GEN_ALLOWED.1);
    let (rbac, note) = rbac::filter(&spec, &allowed_host, rk).map_err(LoadError::Input)?;
    out.push(
        Config::new(
            &size_key("rbac", rk),
            &format!(
                "Envoy RBAC, {} :authority rules",
                report::thousands(rk as f64)
            ),
            Filter::Typed(rbac),
        )
        .blocking()
        .note(note),
    );
    if !args.only.is_empty() {
        out.retain(|c| c.key == "none" || args.only.contains(&c.key));
    }
    if !args.bare_only {
        for c in &mut out {
            c.traffics.insert(1, REALISTIC);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn keys() {
        assert_eq!(size_key("te", 1000), "te-1k");
        assert_eq!(size_key("te", 10_000), "te-10k");
        assert_eq!(size_key("rbac", 1500), "rbac-1500");
    }

    #[test]
    fn default_cells() {
        let args = Args::parse_from(["load", "--sizes", "1000"]);
        let c = configs(&args, Path::new("f.wasm"), Path::new("n.wasm")).unwrap();
        let keys: Vec<&str> = c.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "none",
                "noop-wasm",
                "floor",
                "te-example",
                "te-1k",
                "rbac-1k"
            ]
        );
        assert_eq!(c[0].traffics, [ALLOWED, REALISTIC]);
        assert_eq!(c[4].traffics, [ALLOWED, REALISTIC, DENIED]);
        assert_eq!(c[3].host(ALLOWED), "cockroachdb.prod.svc.cluster.local");
        assert_eq!(c[4].host(REALISTIC), "svc-0.tenant-1-a.svc.cluster.local");
        assert_eq!(c[4].host(DENIED), "svc-0.unlisted.svc.cluster.local");
        assert!(
            c[5].note.contains("1000 `:authority` permissions"),
            "{}",
            c[5].note
        );
        let args = Args::parse_from(["load", "--only", "te-1k", "--diagnostics", "--bare-only"]);
        let c = configs(&args, Path::new("f.wasm"), Path::new("n.wasm")).unwrap();
        let keys: Vec<&str> = c.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["none", "te-1k"]);
        assert_eq!(c[1].traffics, [ALLOWED, DENIED]);
    }
}
