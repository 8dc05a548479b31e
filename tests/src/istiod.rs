//! Replays Envoy configuration that istiod generated: a real sidecar `/config_dump` turned into
//! a runnable Envoy 1.40 bootstrap, with the filter in the WasmPlugin's place.
//!
//! The dumps are reference data outside the repository (`<repo>/../shared/reference/
//! istio-config-dumps/`, or `$TENANT_EGRESS_ISTIO_DUMPS`); `SOURCES.md` there says where each
//! comes from. They are never committed, and a missing dump FAILS the test that wants it.
//!
//! What the conversion ([`convert`]) keeps as istiod made it: every OUTBOUND listener
//! (`virtualOutbound`, `0.0.0.0_<port>`, the per-VIP `<ClusterIP>_<port>` listeners) with its
//! name, address, `use_original_dst`, listener filters (tls/http inspector: protocol sniffing),
//! filter chains and their matches, the `default_filter_chain`, HCM settings, route
//! configurations (RDS made inline: virtual hosts, domains, `ignore_port_in_host_matching`,
//! `allow_any`), and clusters with their names, types, metadata (`istio.services`,
//! `default_original_port`) and LB settings.
//!
//! What it changes, and why:
//! - **Traffic capture.** No iptables here: the replay runs in a private network namespace
//!   ([`in_private_netns`]) whose `lo` carries every ClusterIP of the dump, and the listeners
//!   bind their real addresses (istiod sets `bind_to_port: false` on all but `virtualOutbound`,
//!   which hands connections over by original destination; binding them directly lets the
//!   kernel pick the same listener Envoy's hand-off would: the exact `<VIP>:<port>` first,
//!   then `0.0.0.0:<port>`). A test that dials `10.98.24.100:3333` reaches listener
//!   `10.98.24.100_3333` and `destination.address` is that VIP, as under Istio.
//! - **Endpoints.** EDS (and headless ORIGINAL_DST) service clusters become STATIC with one
//!   endpoint, a local upstream per cluster on `127.1.x.y:<service port>` ([`Upstream`]): it
//!   answers HTTP with body `upstream=<cluster>` and headers `x-upstream: <cluster>`,
//!   `x-upstream-authority` (the Host it got), `x-upstream-local` (the address it was reached
//!   on) and `x-upstream-stand-in` (see below), and echoes any other bytes.
//! - **Passthrough.** `PassthroughCluster` stays `ORIGINAL_DST`, but Envoy uses a connection's
//!   local address as the original destination only when a listener filter restored it (under
//!   Istio: `virtualOutbound`'s `use_original_dst` after iptables' REDIRECT; here nothing
//!   redirects, so `SO_ORIGINAL_DST` has nothing to say). So the cluster takes it from
//!   `x-envoy-original-dst-host` (`use_http_header`), which every virtual host routing to
//!   PassthroughCluster (`allow_any`) sets to the IP the app dialled with port [`CANARY_PORT`],
//!   where the canary listens on every address (the dialled port itself would be Envoy's own
//!   `0.0.0.0:<port>` listener). TCP passthrough (the catch-all chains, which carry no Wasm
//!   under Istio either) has no such header and finds no host.
//! - **Istio-only extensions** (not in upstream Envoy) are removed: `istio.stats` (HTTP and
//!   network), `istio.alpn` (ALPN for mTLS upstreams), `istio_authn`, the TCP
//!   `istio.metadata_exchange` network and cluster filters; mesh mTLS
//!   (`transport_socket_matches` with SDS) is dropped, so upstream connections are plaintext.
//!   The HTTP `istio.metadata_exchange` (Istio's `peer_metadata` filter in 1.22, a null-VM Wasm
//!   filter in 1.9 and 1.18) keeps its name and place with a pass-through stand-in
//!   ([`METADATA_EXCHANGE_STAND_IN`]): Envoy's `header_mutation` filter adding
//!   `x-istio-metadata-exchange-stand-in: 1`, which upstreams echo back, so a test proves the
//!   chain ran in Istio's order.
//! - **The plugin.** The WasmPlugin(s) come from `tenant-egress generate` (the library call
//!   behind the CLI, [`plan_plugins`]) and are turned into Envoy filters the way istiod does
//!   (`pilot/pkg/model/extensions.go`): Envoy `name` `<ns>.<name>` (the last segment of the
//!   ECDS name), `root_id` = `pluginName`,
//!   `configuration` = the JSON of `pluginConfig`, `failStrategy` -> `failure_policy`, delivered
//!   by ECDS under the resource name Istio of the dump's version gives a WasmPlugin
//!   ([`IstioDump::wasm_plugin_ecds_name`]). Generated as TrafficExtensions
//!   ([`plan_plugins_as`], `generate --api trafficextension`), the same filter from `spec.wasm`,
//!   under Istio 1.30's ECDS name `extensions.istio.io/trafficextension/<ns>.<name>`
//!   ([`traffic_extension_to_envoy`]). The HTTP plugin (phase AUTHZ) takes the slot of the
//!   dump's own WasmPlugin where there is one (1.22.3), else the place right after
//!   `istio.metadata_exchange`; the NETWORK plugin goes first in the TCP chains of the ports it
//!   matches that `tcp_proxy` to a service (Istio attaches no Wasm to the catch-all chains).
//! - Inbound listeners and clusters are dropped (the filter is outbound-only; the 1.18.2 dump's
//!   `virtualInbound` is broken anyway), as are the bootstrap's own static resources (xDS, SDS,
//!   Prometheus); access logs go to `access.log` in the run directory, in Istio's format.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::envoy::{new_run_dir, write_atomically, Envoy};
use crate::http::{Http1Conn, Response};

/// Overrides where the dumps are read from.
pub const DUMPS_ENV: &str = "TENANT_EGRESS_ISTIO_DUMPS";

/// Set in the child process that [`in_private_netns`] starts inside `unshare -n`.
pub const NETNS_ENV: &str = "TENANT_EGRESS_IN_NETNS";

/// Port of the passthrough canary (the port of every HTTP passthrough's original destination); no
/// dump has a listener on it (checked by [`convert`]).
pub const CANARY_PORT: u16 = 15999;

pub use crate::config::{METADATA_EXCHANGE, METADATA_EXCHANGE_STAND_IN};
pub use tenant_egress_config::manifest::PluginApi;

const HCM: &str = "envoy.filters.network.http_connection_manager";
const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
const HTTP_WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const NETWORK_WASM: &str = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";

/// One of the three real sidecar dumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IstioDump {
    /// slime-io/scout, sidecar `productpage-v1` in `default`: `:port` domains,
    /// `default_original_port`, null-VM metadata exchange in a TypedStruct.
    V1_9_1,
    /// TZ-Zephrus/DeathStarBench, sidecar `geo` in `hr2`: three application namespaces, 18
    /// MongoDB services on 27017, each on its own VIP listener.
    V1_18_2,
    /// ServiceLayerNetworking/multiparty-lb, sidecar `app1-0` in `default`: a WasmPlugin by
    /// ECDS, sniffing VIP listeners, `ignore_port_in_host_matching`, ClusterIPs among domains.
    V1_22_3,
}

impl IstioDump {
    pub const ALL: [IstioDump; 3] = [IstioDump::V1_9_1, IstioDump::V1_18_2, IstioDump::V1_22_3];

    /// Istio's version.
    pub fn version(self) -> &'static str {
        match self {
            IstioDump::V1_9_1 => "1.9.1",
            IstioDump::V1_18_2 => "1.18.2",
            IstioDump::V1_22_3 => "1.22.3",
        }
    }

    /// File name inside [`dumps_dir`].
    pub fn file_name(self) -> &'static str {
        match self {
            IstioDump::V1_9_1 => "slime-scout_config_dump.istio-1.9.1.json",
            IstioDump::V1_18_2 => "deathstarbench-fork_config_dump.istio-1.18.2.json",
            IstioDump::V1_22_3 => "multiparty-lb_envoy_config_dump.istio-1.22.3.json",
        }
    }

    /// The ECDS resource (and filter) name for WasmPlugin `ns/name` in this replay: what Istio of
    /// the dump's version names it, `<ns>.<name>` up to 1.20 and
    /// `extenstions.istio.io/wasmplugin/<ns>.<name>` (Istio's spelling) in 1.21 to 1.25. Istio 1.9
    /// had no WasmPlugin (an EnvoyFilter names its ECDS resource freely), so its replay takes the
    /// name of Istio 1.30 and later, where a WasmPlugin becomes a synthetic TrafficExtension:
    /// `extensions.istio.io/trafficextension/<ns>.<name>~istio-translated-wasmplugin` (an assumed
    /// shape, from Istio's `translate.go`). Three spellings across the replays; the filter keys
    /// nothing on any of them.
    pub fn wasm_plugin_ecds_name(self, ns: &str, name: &str) -> String {
        match self {
            IstioDump::V1_18_2 => format!("{ns}.{name}"),
            IstioDump::V1_22_3 => format!("extenstions.istio.io/wasmplugin/{ns}.{name}"),
            IstioDump::V1_9_1 => format!(
                "extensions.istio.io/trafficextension/{ns}.{name}~istio-translated-wasmplugin"
            ),
        }
    }
}

/// `$TENANT_EGRESS_ISTIO_DUMPS`, else `<repo>/../shared/reference/istio-config-dumps`.
pub fn dumps_dir() -> PathBuf {
    match std::env::var_os(DUMPS_ENV) {
        Some(p) => PathBuf::from(p),
        None => crate::workspace_root().join("../shared/reference/istio-config-dumps"),
    }
}

/// A parsed `/config_dump`.
#[derive(Clone, Debug)]
pub struct Dump {
    pub which: IstioDump,
    pub path: PathBuf,
    json: Value,
}

impl Dump {
    /// Reads the dump from [`dumps_dir`]; panics (never skips) when it is missing or not JSON.
    pub fn load(which: IstioDump) -> Dump {
        Self::load_from(&dumps_dir(), which)
    }

    /// [`load`](Self::load) from `dir`.
    pub fn load_from(dir: &Path, which: IstioDump) -> Dump {
        let path = dir.join(which.file_name());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the Istio {} config dump is missing: {}: {e}. The dump replays need \
                 shared/reference/istio-config-dumps/ beside the repository (a fresh CI clone \
                 has it at <repo>/../shared/), or {DUMPS_ENV}=/dir/with/the/dumps; see its \
                 SOURCES.md. These tests fail rather than skip.",
                which.version(),
                path.display()
            )
        });
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        Dump { which, path, json }
    }

    fn section(&self, kind: &str) -> &Value {
        let suffix = format!(".{kind}");
        self.json["configs"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|s| s["@type"].as_str().is_some_and(|t| t.ends_with(&suffix)))
            })
            .unwrap_or(&Value::Null)
    }

    /// The bootstrap's `node`.
    pub fn node(&self) -> &Value {
        &self.section("BootstrapConfigDump")["bootstrap"]["node"]
    }

    /// The sidecar's namespace (`node.metadata.NAMESPACE`).
    pub fn namespace(&self) -> String {
        self.node()["metadata"]["NAMESPACE"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no node.metadata.NAMESPACE", self.path.display()))
            .to_owned()
    }

    /// Every listener that has an active state, as istiod sent it.
    pub fn listeners(&self) -> Vec<&Value> {
        array(&self.section("ListenersConfigDump")["dynamic_listeners"])
            .iter()
            .map(|l| &l["active_state"]["listener"])
            .filter(|l| l.is_object())
            .collect()
    }

    /// The OUTBOUND listeners (what the filter runs on).
    pub fn outbound_listeners(&self) -> Vec<&Value> {
        self.listeners()
            .into_iter()
            .filter(|l| l["traffic_direction"] == "OUTBOUND")
            .collect()
    }

    /// Route configuration `name`.
    pub fn route_config(&self, name: &str) -> Option<&Value> {
        self.route_configs().into_iter().find(|r| r["name"] == name)
    }

    /// Every dynamic route configuration.
    pub fn route_configs(&self) -> Vec<&Value> {
        array(&self.section("RoutesConfigDump")["dynamic_route_configs"])
            .iter()
            .map(|r| &r["route_config"])
            .collect()
    }

    /// Every dynamic cluster.
    pub fn clusters(&self) -> Vec<&Value> {
        array(&self.section("ClustersConfigDump")["dynamic_active_clusters"])
            .iter()
            .map(|c| &c["cluster"])
            .collect()
    }

    /// Cluster `name`.
    pub fn cluster(&self, name: &str) -> Option<&Value> {
        self.clusters().into_iter().find(|c| c["name"] == name)
    }

    /// The ECDS filters in the dump (the WasmPlugins istiod delivered).
    pub fn ecds_filters(&self) -> Vec<&Value> {
        array(&self.section("EcdsConfigDump")["ecds_filters"])
            .iter()
            .map(|f| &f["ecds_filter"])
            .collect()
    }

    /// The namespace of a service cluster: its `istio.services` metadata, as the filter reads it.
    pub fn cluster_namespace(&self, cluster: &str) -> Option<String> {
        self.cluster(cluster)?["metadata"]["filter_metadata"]["istio"]["services"][0]["namespace"]
            .as_str()
            .map(str::to_owned)
    }

    /// Every HTTP route to a service: which virtual host of which listener sends what to which
    /// cluster, and where a test dials to get there.
    ///
    /// A virtual host of a `0.0.0.0_<port>` listener is left out when its ClusterIP has its own
    /// `<VIP>_<port>` listener (connections to the VIP go there, in Istio as here), or when it
    /// has no ClusterIP among its domains or is a `*` catch-all (nothing to dial that reaches
    /// exactly it).
    pub fn http_routes(&self) -> Vec<HttpRoute> {
        let bound: BTreeSet<(Ipv4Addr, u16)> = self
            .outbound_listeners()
            .into_iter()
            .filter_map(listener_address)
            .collect();
        let mut out = Vec::new();
        for l in self.outbound_listeners() {
            let Some((addr, port)) = listener_address(l) else {
                continue;
            };
            for chain in chains(l) {
                for f in array(&chain["filters"]) {
                    if f["name"] != HCM {
                        continue;
                    }
                    let Some(rc) = f["typed_config"]["rds"]["route_config_name"]
                        .as_str()
                        .and_then(|n| self.route_config(n))
                    else {
                        continue;
                    };
                    for vh in array(&rc["virtual_hosts"]) {
                        let Some(cluster) = vh["routes"][0]["route"]["cluster"].as_str() else {
                            continue;
                        };
                        let Some((svc_port, host)) = outbound_cluster(cluster) else {
                            continue;
                        };
                        let domains: Vec<String> = array(&vh["domains"])
                            .iter()
                            .filter_map(|d| d.as_str().map(str::to_owned))
                            .collect();
                        let vip = if addr.is_unspecified() {
                            let Some(vip) = domains.iter().find_map(|d| d.parse::<Ipv4Addr>().ok())
                            else {
                                continue;
                            };
                            if bound.contains(&(vip, port)) {
                                continue;
                            }
                            Some(vip)
                        } else {
                            Some(addr)
                        };
                        out.push(HttpRoute {
                            listener: l["name"].as_str().unwrap_or_default().to_owned(),
                            route_config: rc["name"].as_str().unwrap_or_default().to_owned(),
                            cluster: cluster.to_owned(),
                            host: host.to_owned(),
                            namespace: self
                                .cluster_namespace(cluster)
                                .unwrap_or_else(|| namespace_of_fqdn(host)),
                            port: svc_port,
                            vip,
                            dial: SocketAddrV4::new(vip.unwrap_or(Ipv4Addr::LOCALHOST), port),
                            domains,
                            sniffing: l["default_filter_chain"].is_object(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every TCP chain that `tcp_proxy`s to a service, with where a test dials to get there.
    pub fn tcp_routes(&self) -> Vec<TcpRoute> {
        let mut out = Vec::new();
        for l in self.outbound_listeners() {
            let Some((addr, port)) = listener_address(l) else {
                continue;
            };
            if addr.is_unspecified() {
                continue; // per-port TCP listeners are selected by SNI/destination, not here
            }
            for (chain, default_chain) in chains(l)
                .into_iter()
                .map(|c| (c, false))
                .chain(std::iter::once((&l["default_filter_chain"], true)))
            {
                for f in array(&chain["filters"]) {
                    let Some(cluster) = (f["name"] == TCP_PROXY)
                        .then(|| f["typed_config"]["cluster"].as_str())
                        .flatten()
                    else {
                        continue;
                    };
                    let Some((svc_port, host)) = outbound_cluster(cluster) else {
                        continue;
                    };
                    out.push(TcpRoute {
                        listener: l["name"].as_str().unwrap_or_default().to_owned(),
                        cluster: cluster.to_owned(),
                        namespace: self
                            .cluster_namespace(cluster)
                            .unwrap_or_else(|| namespace_of_fqdn(host)),
                        port: svc_port,
                        dial: SocketAddrV4::new(addr, port),
                        default_chain,
                    });
                }
            }
        }
        out
    }
}

/// An HTTP route of the dump to a service cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute {
    pub listener: String,
    pub route_config: String,
    pub cluster: String,
    /// The service FQDN (from the cluster name).
    pub host: String,
    /// The service namespace (cluster metadata).
    pub namespace: String,
    /// The service port (from the cluster name).
    pub port: u16,
    /// The ClusterIP: the VIP listener's address, or the IP literal among the domains.
    pub vip: Option<Ipv4Addr>,
    /// Where a test connects (`<VIP>:<listener port>`, or 127.0.0.1 for a service without VIP).
    pub dial: SocketAddrV4,
    /// The virtual host's domains as istiod wrote them.
    pub domains: Vec<String>,
    /// The listener sniffs the protocol (HTTP chain plus a `tcp_proxy` default chain).
    pub sniffing: bool,
}

impl HttpRoute {
    /// Every Host a client in `src_ns` may use that the real route sends to this cluster: the
    /// domains as listed (and, where istiod relies on `ignore_port_in_host_matching` instead of
    /// `:port` variants, each with `:port` too), or for a VIP listener whose only domain is `*`,
    /// Istio's aliases of the service (`svc` in its own namespace, `svc.ns`, `svc.ns.svc`, the
    /// FQDN) and the ClusterIP, each bare and with `:port`. Wildcard domains are left out.
    pub fn aliases(&self, src_ns: &str) -> Vec<String> {
        let mut names: Vec<String> = if self.domains.iter().all(|d| d == "*") {
            let rest = self
                .host
                .strip_suffix(".svc.cluster.local")
                .unwrap_or(&self.host);
            let svc = rest.split('.').next().unwrap_or(rest);
            let mut n = vec![self.host.clone(), format!("{rest}.svc"), rest.to_owned()];
            if self.namespace == src_ns {
                n.push(svc.to_owned());
            }
            n.extend(self.vip.map(|v| v.to_string()));
            n
        } else {
            self.domains
                .iter()
                .filter(|d| !d.starts_with('*'))
                .cloned()
                .collect()
        };
        let with_port: Vec<String> = names
            .iter()
            .filter(|n| !n.contains(':'))
            .map(|n| format!("{n}:{}", self.port))
            .collect();
        for n in with_port {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }
}

/// A TCP chain of the dump to a service cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpRoute {
    pub listener: String,
    pub cluster: String,
    pub namespace: String,
    pub port: u16,
    pub dial: SocketAddrV4,
    /// The listener's `default_filter_chain` (a sniffing listener's TCP side).
    pub default_chain: bool,
}

// ---------------------------------------------------------------------------------------------
// The plugin, as `tenant-egress generate` emits it and istiod translates it.

/// One WasmPlugin of `generate`, as the Envoy filter istiod makes of it.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginPlan {
    /// WasmPlugin `metadata.name` (and `pluginName`, the root id).
    pub name: String,
    /// `NETWORK` (else HTTP).
    pub network: bool,
    /// `match[].ports` of mode CLIENT (empty: every outbound port).
    pub ports: Vec<u16>,
    /// The ECDS resource name for the dump's Istio version.
    pub ecds_name: String,
    /// The `TypedExtensionConfig.typed_config` istiod sends.
    pub typed_config: Value,
}

/// The WasmPlugins `tenant-egress generate` emits for `policy_json` (default options, the module
/// at `wasm` as the agent leaves it after download), translated as istiod does for Istio `which`.
pub fn plan_plugins(which: IstioDump, policy_json: &str, wasm: &Path) -> Vec<PluginPlan> {
    plan_plugins_as(which, policy_json, wasm, PluginApi::WasmPlugin)
}

/// [`plan_plugins`], the plugins generated as `api` (`generate --api`): with
/// `PluginApi::TrafficExtension`, the TrafficExtensions, translated as Istio 1.30+ does.
pub fn plan_plugins_as(
    which: IstioDump,
    policy_json: &str,
    wasm: &Path,
    api: PluginApi,
) -> Vec<PluginPlan> {
    use tenant_egress_config::manifest::{self, DocKind, Options, Selection};
    let (spec, _warnings) = tenant_egress_core::validate::validate_json(policy_json.as_bytes())
        .unwrap_or_else(|e| panic!("test policy is invalid: {e}\n{policy_json}"));
    // The module as the agent hands it to Envoy: a local file (so pinning by digest, which
    // `generate` requires of a remote FAIL_CLOSE module, is moot here).
    let mut opts = Options {
        selection: Selection::WasmPlugin,
        api,
        ..Options::default()
    };
    opts.wasm.url = format!("file://{}", wasm.display());
    let generated = manifest::generate(&spec, &opts)
        .unwrap_or_else(|e| panic!("tenant-egress generate refused the test policy: {e}"));
    let plans: Vec<PluginPlan> = generated
        .docs
        .iter()
        .filter_map(|d| {
            let doc = serde_json::to_value(&d.value).expect("plugin as JSON");
            match d.kind {
                DocKind::WasmPlugin => Some(wasm_plugin_to_envoy(which, &doc, wasm)),
                DocKind::TrafficExtension => Some(traffic_extension_to_envoy(&doc, wasm)),
                _ => None,
            }
        })
        .collect();
    assert!(
        !plans.is_empty(),
        "generate --api {api:?} emitted no plugin"
    );
    plans
}

/// istiod's translation of one WasmPlugin (`pilot/pkg/model/extensions.go: buildWasmConfig`):
/// the Envoy plugin name is `<ns>.<name>`, the root id `pluginName`, the
/// configuration the JSON text of `pluginConfig` (a `StringValue`), the VM a V8 VM loading the
/// file the agent downloaded.
pub fn wasm_plugin_to_envoy(which: IstioDump, doc: &Value, wasm: &Path) -> PluginPlan {
    let name = doc["metadata"]["name"].as_str().expect("WasmPlugin name");
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .expect("WasmPlugin namespace");
    let spec = &doc["spec"];
    let ecds_name = which.wasm_plugin_ecds_name(ns, name);
    plugin_plan(name, spec, spec, ecds_name, wasm)
}

/// Istio 1.30+'s translation of one TrafficExtension (`pilot/pkg/model/extensions.go:
/// TrafficExtensionWrapper.buildWasmConfig`): the same Envoy filter as a WasmPlugin's, from the
/// module settings under `spec.wasm`, delivered by ECDS as
/// `extensions.istio.io/trafficextension/<ns>.<name>` (`TrafficExtensionResourceNamePrefix`),
/// the Envoy plugin named `<ns>.<name>`.
pub fn traffic_extension_to_envoy(doc: &Value, wasm: &Path) -> PluginPlan {
    assert_eq!(doc["kind"], "TrafficExtension", "{doc}");
    let name = doc["metadata"]["name"]
        .as_str()
        .expect("TrafficExtension name");
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .expect("TrafficExtension namespace");
    let ecds_name = format!("extensions.istio.io/trafficextension/{ns}.{name}");
    plugin_plan(name, &doc["spec"], &doc["spec"]["wasm"], ecds_name, wasm)
}

/// The Envoy filter of one plugin: targeting (`match`) from `spec`, the module from `module`
/// (the WasmPlugin's spec itself, or a TrafficExtension's `spec.wasm`).
fn plugin_plan(
    name: &str,
    spec: &Value,
    module: &Value,
    ecds_name: String,
    wasm: &Path,
) -> PluginPlan {
    let network = module["type"] == "NETWORK";
    let failure_policy = match module["failStrategy"].as_str() {
        Some("FAIL_OPEN") => "FAIL_OPEN",
        Some("FAIL_RELOAD") => "FAIL_RELOAD",
        _ => "FAIL_CLOSED",
    };
    let ports: Vec<u16> = array(&spec["match"])
        .iter()
        .filter(|m| m["mode"] == "CLIENT")
        .flat_map(|m| array(&m["ports"]).iter())
        .filter_map(|p| p["number"].as_u64().and_then(|n| u16::try_from(n).ok()))
        .collect();
    // The Envoy plugin name is the ECDS name's last segment (`<ns>.<name>` in the 1.22.3 dump).
    let plugin_name = ecds_name
        .rsplit('/')
        .next()
        .unwrap_or(&ecds_name)
        .to_owned();
    let typed_config = json!({
        "@type": if network { NETWORK_WASM } else { HTTP_WASM },
        "config": {
            "name": plugin_name,
            "root_id": module["pluginName"].as_str().expect("pluginName"),
            "failure_policy": failure_policy,
            "vm_config": {
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": wasm.display().to_string()}},
            },
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": module["pluginConfig"].to_string(),
            },
        },
    });
    PluginPlan {
        name: name.to_owned(),
        network,
        ports,
        ecds_name,
        typed_config,
    }
}

// ---------------------------------------------------------------------------------------------
// The conversion.

/// A local upstream standing in for one service cluster's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub addr: SocketAddrV4,
    /// Index: its HCM stat prefix and listener stat prefix are `up_<index>`.
    pub index: usize,
}

/// The result of [`convert`].
#[derive(Clone, Debug)]
pub struct Converted {
    pub bootstrap: Value,
    /// ECDS files to write before start: path -> DiscoveryResponse.
    pub ecds_files: BTreeMap<PathBuf, Value>,
    /// Addresses to put on `lo`: every listener VIP and ClusterIP route domain.
    pub addresses: BTreeSet<Ipv4Addr>,
    /// Service cluster -> its upstream.
    pub upstreams: BTreeMap<String, Upstream>,
    /// Listeners whose TCP chains got the NETWORK plugin.
    pub tcp_filtered_listeners: BTreeSet<String>,
    /// Names of the filters removed, with how many times.
    pub removed: BTreeMap<String, usize>,
}

/// Converts `dump` into a runnable bootstrap; ECDS files and the access log live in `dir`.
pub fn convert(dump: &Dump, plugins: &[PluginPlan], dir: &Path) -> Converted {
    let mut conv = Converted {
        bootstrap: Value::Null,
        ecds_files: BTreeMap::new(),
        addresses: BTreeSet::new(),
        upstreams: BTreeMap::new(),
        tcp_filtered_listeners: BTreeSet::new(),
        removed: BTreeMap::new(),
    };
    let access_log = dir.join("access.log");
    for p in plugins {
        let path = dir.join("xds").join(format!("{}.json", p.name));
        let body = json!({
            "version_info": "1",
            "resources": [{
                "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "name": p.ecds_name,
                "typed_config": p.typed_config,
            }],
        });
        conv.ecds_files.insert(path, body);
    }
    let ecds_path = |p: &PluginPlan| dir.join("xds").join(format!("{}.json", p.name));

    // Clusters: upstreams first, so listeners can be checked against them.
    let mut clusters = Vec::new();
    let mut index = 0usize;
    for c in dump.clusters() {
        let name = c["name"].as_str().unwrap_or_default();
        if name.starts_with("inbound|") || name.starts_with("InboundPassthroughCluster") {
            continue;
        }
        let mut c = c.clone();
        let obj = c.as_object_mut().expect("cluster object");
        obj.remove("@type");
        obj.remove("transport_socket_matches");
        obj.remove("transport_socket");
        if obj.remove("filters").is_some() {
            *conv
                .removed
                .entry(format!("{METADATA_EXCHANGE} (cluster)"))
                .or_default() += 1;
        }
        // Envoy 1.17-era fields (1.9.1) that Envoy 1.40 no longer takes, in their typed form.
        let h2 = obj.remove("http2_protocol_options");
        let downstream = obj
            .remove("protocol_selection")
            .is_some_and(|v| v == "USE_DOWNSTREAM_PROTOCOL");
        if h2.is_some() || downstream {
            let config = if downstream {
                json!({"use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": {}}})
            } else {
                json!({"explicit_http_config": {"http2_protocol_options": {}}})
            };
            obj.insert(
                "typed_extension_protocol_options".into(),
                json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": merge(
                    json!({"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"}),
                    config)}),
            );
        }
        if name == "PassthroughCluster" {
            // Without iptables Envoy has no restored original destination (see the module
            // docs): the passthrough virtual hosts name it in a header instead.
            obj.insert(
                "original_dst_lb_config".into(),
                json!({"use_http_header": true}),
            );
        } else if let Some((port, _)) = outbound_cluster(name) {
            index += 1;
            let addr = SocketAddrV4::new(
                Ipv4Addr::new(127, 1, (index / 250) as u8, (index % 250) as u8 + 1),
                port,
            );
            conv.upstreams
                .insert(name.to_owned(), Upstream { addr, index });
            for k in [
                "eds_cluster_config",
                "dns_lookup_family",
                "dns_refresh_rate",
                "respect_dns_ttl",
            ] {
                obj.remove(k);
            }
            // A headless service (ORIGINAL_DST, CLUSTER_PROVIDED): Istio sends to the pod IP
            // dialled; here, to the service's upstream like every other service cluster.
            if obj
                .get("lb_policy")
                .is_some_and(|p| p == "CLUSTER_PROVIDED")
            {
                obj.remove("lb_policy");
            }
            let obj = c.as_object_mut().expect("cluster object");
            obj.insert("type".into(), json!("STATIC"));
            obj.insert(
                "load_assignment".into(),
                json!({"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": sock(addr)}}]}]}),
            );
        }
        clusters.push(c);
    }

    // ClusterIPs that are only route domains (per-port listeners): dialled by tests too.
    for rc in dump.route_configs() {
        for vh in array(&rc["virtual_hosts"]) {
            for d in array(&vh["domains"]).iter().filter_map(Value::as_str) {
                let ip = d.split(':').next().unwrap_or(d);
                conv.addresses.extend(ip.parse::<Ipv4Addr>().ok());
            }
        }
    }
    let mut listeners = Vec::new();
    for l in dump.outbound_listeners() {
        let name = l["name"].as_str().unwrap_or_default().to_owned();
        let Some((addr, port)) = listener_address(l) else {
            panic!("listener {name}: no IPv4 socket address");
        };
        assert_ne!(
            port, CANARY_PORT,
            "the dump has a listener on the canary port"
        );
        if !addr.is_unspecified() {
            conv.addresses.insert(addr);
        }
        let mut l = l.clone();
        let obj = l.as_object_mut().expect("listener object");
        obj.remove("@type");
        obj.remove("bind_to_port"); // bind the real address (see the module docs)
        obj.remove("deprecated_v1"); // 1.9.1: {bind_to_port: false}
        if let Some(logs) = obj.get_mut("access_log") {
            redirect_access_logs(logs, &access_log);
        }
        let network_plugins: Vec<&PluginPlan> = plugins
            .iter()
            .filter(|p| p.network && (p.ports.is_empty() || p.ports.contains(&port)))
            .collect();
        let http_plugins: Vec<&PluginPlan> = plugins
            .iter()
            .filter(|p| !p.network && (p.ports.is_empty() || p.ports.contains(&port)))
            .collect();
        let mut chain_keys = vec![];
        if let Some(chains) = obj.get("filter_chains").and_then(Value::as_array) {
            chain_keys.extend((0..chains.len()).map(Some));
        }
        if obj.contains_key("default_filter_chain") {
            chain_keys.push(None);
        }
        for key in chain_keys {
            let chain = match key {
                Some(i) => &mut obj["filter_chains"][i],
                None => obj.get_mut("default_filter_chain").expect("default chain"),
            };
            let filters = chain["filters"].as_array().cloned().unwrap_or_default();
            let mut out = Vec::new();
            for f in filters {
                let fname = f["name"].as_str().unwrap_or_default();
                match fname {
                    "istio.stats" | METADATA_EXCHANGE => {
                        *conv
                            .removed
                            .entry(format!("{fname} (network)"))
                            .or_default() += 1;
                    }
                    HCM => out.push(convert_hcm(
                        dump,
                        &f,
                        &http_plugins,
                        &ecds_path,
                        &access_log,
                        &mut conv.removed,
                    )),
                    TCP_PROXY => {
                        let to_service = f["typed_config"]["cluster"]
                            .as_str()
                            .is_some_and(|c| outbound_cluster(c).is_some());
                        if to_service && !network_plugins.is_empty() {
                            // Phase AUTHZ of a NETWORK WasmPlugin: first in the chain.
                            let mut with = Vec::new();
                            for p in &network_plugins {
                                with.push(ecds_filter(p, &ecds_path(p), NETWORK_WASM));
                            }
                            with.append(&mut out);
                            out = with;
                            conv.tcp_filtered_listeners.insert(name.clone());
                        }
                        out.push(f);
                    }
                    _ => out.push(f),
                }
            }
            chain["filters"] = Value::Array(out);
        }
        listeners.push(l);
    }

    // The upstreams and the passthrough canary.
    for (cluster, up) in &conv.upstreams {
        listeners.push(upstream_listener(
            &format!("up_{}", up.index),
            sock(up.addr),
            cluster,
        ));
    }
    listeners.push(upstream_listener(
        "canary",
        sock(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CANARY_PORT)),
        "passthrough",
    ));

    let node = dump.node();
    conv.bootstrap = json!({
        "node": {
            "id": node["id"],
            "cluster": node["cluster"],
            "metadata": node["metadata"],
        },
        "admin": {"address": sock(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    });
    conv
}

fn convert_hcm(
    dump: &Dump,
    f: &Value,
    plugins: &[&PluginPlan],
    ecds_path: &dyn Fn(&PluginPlan) -> PathBuf,
    access_log: &Path,
    removed: &mut BTreeMap<String, usize>,
) -> Value {
    let mut f = f.clone();
    let tc = f["typed_config"].as_object_mut().expect("HCM typed_config");
    if let Some(rds) = tc.remove("rds") {
        let name = rds["route_config_name"].as_str().unwrap_or_default();
        let mut rc = dump
            .route_config(name)
            .unwrap_or_else(|| panic!("{}: no route configuration {name:?}", dump.path.display()))
            .clone();
        if let Some(o) = rc.as_object_mut() {
            o.remove("@type");
        }
        type_untyped_extensions(&mut rc);
        if let Some(vhosts) = rc["virtual_hosts"].as_array_mut() {
            for vh in vhosts {
                let passthrough = array(&vh["routes"])
                    .iter()
                    .any(|r| r["route"]["cluster"] == "PassthroughCluster");
                if passthrough {
                    vh["request_headers_to_add"] = json!([{
                        "header": {
                            "key": "x-envoy-original-dst-host",
                            "value": format!("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%:{CANARY_PORT}"),
                        },
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }]);
                }
            }
        }
        tc.insert("route_config".into(), rc);
    }
    if let Some(logs) = tc.get_mut("access_log") {
        redirect_access_logs(logs, access_log);
    }
    let filters = tc
        .get("http_filters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ours = |out: &mut Vec<Value>| {
        for p in plugins {
            out.push(ecds_filter(p, &ecds_path(p), HTTP_WASM));
        }
    };
    let has_slot = filters.iter().any(is_wasm_plugin_slot);
    let mut out = Vec::new();
    for h in filters {
        let name = h["name"].as_str().unwrap_or_default();
        if is_wasm_plugin_slot(&h) {
            ours(&mut out);
            *removed
                .entry(format!("{name} (replaced by tenant-egress)"))
                .or_default() += 1;
            continue;
        }
        match name {
            METADATA_EXCHANGE => {
                out.push(crate::config::metadata_exchange_stand_in());
                if !has_slot {
                    ours(&mut out);
                }
            }
            "istio.stats" | "istio.alpn" | "istio_authn" => {
                *removed.entry(name.to_owned()).or_default() += 1;
            }
            _ => out.push(h),
        }
    }
    tc.insert("http_filters".into(), Value::Array(out));
    f
}

/// Envoy 1.17 (Istio 1.9) accepted extensions named without a `typed_config`; Envoy 1.40
/// finds them by type URL only. Gives the ones in the dumps their type.
fn type_untyped_extensions(v: &mut Value) {
    const TYPES: [(&str, &str); 1] = [(
        "envoy.retry_host_predicates.previous_hosts",
        "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
    )];
    match v {
        Value::Object(o) => {
            let typed = o
                .get("name")
                .and_then(Value::as_str)
                .and_then(|n| TYPES.iter().find(|(name, _)| *name == n))
                .map(|(_, t)| *t);
            if let (Some(t), false) = (typed, o.contains_key("typed_config")) {
                o.insert("typed_config".into(), json!({"@type": t}));
            }
            o.values_mut().for_each(type_untyped_extensions);
        }
        Value::Array(a) => a.iter_mut().for_each(type_untyped_extensions),
        _ => {}
    }
}

/// The dump's own WasmPlugin: an ECDS filter carrying a Wasm type URL.
fn is_wasm_plugin_slot(h: &Value) -> bool {
    array(&h["config_discovery"]["type_urls"])
        .iter()
        .any(|t| t == HTTP_WASM)
}

fn ecds_filter(p: &PluginPlan, path: &Path, type_url: &str) -> Value {
    json!({
        "name": p.ecds_name,
        "config_discovery": {
            "config_source": {
                "path_config_source": {"path": path.display().to_string()},
                "initial_fetch_timeout": "0s",
                "resource_api_version": "V3",
            },
            "type_urls": [type_url],
        },
    })
}

fn redirect_access_logs(logs: &mut Value, path: &Path) {
    if let Some(list) = logs.as_array_mut() {
        for l in list {
            if l["typed_config"]["path"].is_string() {
                l["typed_config"]["path"] = json!(path.display().to_string());
            }
            // Istio logs only NR (no route) responses on some listeners; log every request here.
            if let Some(o) = l.as_object_mut() {
                o.remove("filter");
            }
        }
    }
}

/// An upstream: HTTP (sniffed) answers `upstream=<marker>` with headers saying what it received
/// and on which address; any other bytes are echoed.
fn upstream_listener(stat: &str, address: Value, marker: &str) -> Value {
    json!({
        "name": stat,
        "stat_prefix": stat,
        "address": address,
        "listener_filters": [{
            "name": "envoy.filters.listener.http_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"},
        }],
        "filter_chains": [{
            "filter_chain_match": {"application_protocols": ["http/1.1", "h2c"]},
            "filters": [{
                "name": HCM,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": stat,
                    "codec_type": "AUTO",
                    "route_config": {"virtual_hosts": [{
                        "name": stat,
                        "domains": ["*"],
                        "routes": [{
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": format!("upstream={marker}\n")}},
                            "response_headers_to_add": [
                                {"header": {"key": "x-upstream", "value": marker}},
                                {"header": {"key": "x-upstream-authority", "value": "%REQ(:AUTHORITY)%"}},
                                {"header": {"key": "x-upstream-local", "value": "%DOWNSTREAM_LOCAL_ADDRESS%"}},
                                {"header": {"key": "x-upstream-stand-in", "value": format!("%REQ({METADATA_EXCHANGE_STAND_IN})%")}},
                            ],
                        }],
                    }]},
                    "http_filters": [{
                        "name": "envoy.filters.http.router",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                    }],
                },
            }],
        }],
        "default_filter_chain": {"filters": [{
            "name": "envoy.filters.network.echo",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"},
        }]},
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn sock(a: SocketAddrV4) -> Value {
    json!({"socket_address": {"address": a.ip().to_string(), "port_value": a.port()}})
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn chains(l: &Value) -> Vec<&Value> {
    let mut out: Vec<&Value> = array(&l["filter_chains"]).iter().collect();
    if l["default_filter_chain"].is_object() {
        out.push(&l["default_filter_chain"]);
    }
    out
}

fn listener_address(l: &Value) -> Option<(Ipv4Addr, u16)> {
    let sa = &l["address"]["socket_address"];
    let ip = sa["address"].as_str()?.parse().ok()?;
    let port = u16::try_from(sa["port_value"].as_u64()?).ok()?;
    Some((ip, port))
}

/// `outbound|<port>|<subset>|<host>` -> (port, host).
pub fn outbound_cluster(name: &str) -> Option<(u16, &str)> {
    let mut parts = name.split('|');
    (parts.next()? == "outbound").then_some(())?;
    let port = parts.next()?.parse().ok()?;
    let _subset = parts.next()?;
    Some((port, parts.next()?))
}

fn namespace_of_fqdn(host: &str) -> String {
    host.strip_suffix(".svc.cluster.local")
        .and_then(|r| r.rsplit('.').next())
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// The private network namespace.

/// Runs the calling test inside a private network namespace, where the dump's ClusterIPs can
/// live on `lo` and nothing leaves the machine. In the test process it re-runs this very test
/// (by its thread name, `--exact`) under `unshare -n` and asserts that it passed there; it then
/// returns `false` and the caller returns. Inside, it brings `lo` up and returns `true`.
/// Never a skip: without `unshare` or the privilege for it, the test fails saying so.
pub fn in_private_netns() -> bool {
    if std::env::var_os(NETNS_ENV).is_some() {
        run_ip(&["link", "set", "lo", "up"]);
        return true;
    }
    let name = std::thread::current()
        .name()
        .expect("a test thread has the test's name")
        .to_owned();
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new("unshare")
        .args(["-n", "--"])
        .arg(&exe)
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(NETNS_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `unshare -n` ({e}): the Istio dump replays need a private network \
                 namespace (util-linux unshare, run as root or with CAP_SYS_ADMIN)"
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} failed inside `unshare -n` ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    false
}

fn run_ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e} (iproute2 needed)", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Puts `addrs` on `lo` (inside the private namespace only).
pub fn add_loopback_addresses(addrs: &BTreeSet<Ipv4Addr>) {
    assert!(
        std::env::var_os(NETNS_ENV).is_some(),
        "refusing to change addresses outside the private network namespace"
    );
    let mut batch = String::new();
    for a in addrs {
        batch.push_str(&format!("address add {a}/32 dev lo\n"));
    }
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip -batch");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(batch.as_bytes())
        .expect("write ip batch");
    let out = child.wait_with_output().expect("ip -batch");
    assert!(
        out.status.success(),
        "ip -batch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// A running replay.

/// A dump running in Envoy 1.40 with the filter; see the module docs.
pub struct Replay {
    pub dump: Dump,
    pub envoy: Envoy,
    pub converted: Converted,
    pub plugins: Vec<PluginPlan>,
    dir: PathBuf,
}

impl Replay {
    /// Converts `which` with the WasmPlugins `generate` makes of `policy_json`, puts the
    /// ClusterIPs (and `extra` addresses, e.g. passthrough destinations) on `lo`, and starts
    /// Envoy. Must run inside [`in_private_netns`].
    pub fn start(which: IstioDump, policy_json: &str, extra: &[Ipv4Addr]) -> Replay {
        Replay::start_as(which, policy_json, extra, PluginApi::WasmPlugin)
    }

    /// [`Replay::start`] with the plugins generated as `api` (`generate --api`).
    pub fn start_as(
        which: IstioDump,
        policy_json: &str,
        extra: &[Ipv4Addr],
        api: PluginApi,
    ) -> Replay {
        let dump = Dump::load(which);
        let plugins = plan_plugins_as(which, policy_json, &crate::wasm_path(), api);
        let dir = new_run_dir();
        let converted = convert(&dump, &plugins, &dir);
        for (path, body) in &converted.ecds_files {
            write_atomically(path, &serde_json::to_vec_pretty(body).unwrap_or_default());
        }
        let mut addrs = converted.addresses.clone();
        addrs.extend(extra.iter().copied());
        add_loopback_addresses(&addrs);
        let bootstrap = serde_json::to_string_pretty(&converted.bootstrap).expect("bootstrap");
        std::fs::write(dir.join("bootstrap.json"), &bootstrap).expect("write bootstrap copy");
        let envoy = Envoy::start(&bootstrap);
        Replay {
            dump,
            envoy,
            converted,
            plugins,
            dir,
        }
    }

    /// The upstream of service cluster `cluster`.
    pub fn upstream(&self, cluster: &str) -> Upstream {
        *self
            .converted
            .upstreams
            .get(cluster)
            .unwrap_or_else(|| panic!("no upstream for cluster {cluster}"))
    }

    /// Counters and gauges whose names match `regex` (Envoy's admin `filter`): with hundreds
    /// of listeners and clusters, the whole `/stats` is too slow to fetch per assertion.
    pub fn stats_matching(&self, regex: &str) -> BTreeMap<String, u64> {
        let encoded: String = regex
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let body = self
            .envoy
            .admin_get(&format!("/stats?format=json&filter={encoded}"));
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("/stats: {e}"));
        array(&v["stats"])
            .iter()
            .filter_map(|s| Some((s["name"].as_str()?.to_owned(), s["value"].as_u64()?)))
            .collect()
    }

    fn stat(&self, name: &str) -> u64 {
        let escaped: String = name
            .chars()
            .flat_map(|c| {
                let special = !c.is_ascii_alphanumeric() && c != '_' && c != '-';
                special
                    .then_some('\\')
                    .into_iter()
                    .chain(std::iter::once(c))
            })
            .collect();
        self.stats_matching(&format!("^{escaped}$"))
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// HTTP requests that reached the upstream of each service cluster.
    pub fn upstream_requests_all(&self) -> BTreeMap<String, u64> {
        let stats = self.stats_matching(r"^http\.up_[0-9]+\.downstream_rq_total$");
        self.converted
            .upstreams
            .iter()
            .map(|(c, up)| {
                let n = stats
                    .get(&format!("http.up_{}.downstream_rq_total", up.index))
                    .copied()
                    .unwrap_or(0);
                (c.clone(), n)
            })
            .collect()
    }

    /// HTTP requests that reached the upstream of `cluster`.
    pub fn upstream_requests(&self, cluster: &str) -> u64 {
        let up = self.upstream(cluster);
        self.stat(&format!("http.up_{}.downstream_rq_total", up.index))
    }

    /// Connections the upstream of `cluster` accepted (HTTP or not).
    pub fn upstream_connections(&self, cluster: &str) -> u64 {
        let up = self.upstream(cluster);
        self.stat(&format!("listener.up_{}.downstream_cx_total", up.index))
    }

    /// Bytes Envoy sent upstream on `cluster`.
    pub fn cluster_tx_bytes(&self, cluster: &str) -> u64 {
        self.stat(&format!("cluster.{cluster}.upstream_cx_tx_bytes_total"))
    }

    /// Requests the passthrough canary answered.
    pub fn canary_requests(&self) -> u64 {
        self.stat("http.canary.downstream_rq_total")
    }

    /// The access log of the replayed listeners (Istio's format).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Waits (bounded) until the access log contains every needle on one line.
    pub fn wait_for_access_line(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let log = self.access_log();
            if let Some(l) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return Some(l.to_owned());
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "replay dir (ECDS files, bootstrap copy, access.log): {}\n--- access.log (tail) ---\n{}",
                self.dir.display(),
                self.access_log()
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `GET /` with `Host: host` to `addr` (connection close).
pub fn get_at(addr: SocketAddrV4, host: &str) -> Response {
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    Http1Conn::connect_addr(SocketAddr::V4(addr))
        .and_then(|mut c| c.request(req.as_bytes()))
        .unwrap_or_else(|e| panic!("GET http://{addr}/ (Host: {host}) failed: {e}"))
}

/// A MongoDB `OP_MSG` carrying `{hello: 1, $db: "admin"}` (MongoDB wire protocol: a 16-byte
/// header with opCode 2013, flag bits, one body section of kind 0 holding a BSON document): what
/// a driver sends first on a new connection, so the bytes a NETWORK filter must hold are real.
pub fn mongo_hello() -> Vec<u8> {
    let mut doc = Vec::new();
    doc.push(0x10); // int32
    doc.extend_from_slice(b"hello\0");
    doc.extend_from_slice(&1i32.to_le_bytes());
    doc.push(0x02); // string
    doc.extend_from_slice(b"$db\0");
    doc.extend_from_slice(&6i32.to_le_bytes());
    doc.extend_from_slice(b"admin\0");
    doc.push(0);
    let mut bson = ((doc.len() + 4) as i32).to_le_bytes().to_vec();
    bson.extend_from_slice(&doc);
    let mut body = 0u32.to_le_bytes().to_vec(); // flagBits
    body.push(0); // section kind 0
    body.extend_from_slice(&bson);
    let mut msg = ((body.len() + 16) as i32).to_le_bytes().to_vec();
    msg.extend_from_slice(&1i32.to_le_bytes()); // requestID
    msg.extend_from_slice(&0i32.to_le_bytes()); // responseTo
    msg.extend_from_slice(&2013i32.to_le_bytes()); // OP_MSG
    msg.extend_from_slice(&body);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_cluster_names() {
        assert_eq!(
            outbound_cluster("outbound|27017||mongodb-geo.hr2.svc.cluster.local"),
            Some((27017, "mongodb-geo.hr2.svc.cluster.local"))
        );
        assert_eq!(
            outbound_cluster("outbound|80|v1|web.prod.svc.cluster.local"),
            Some((80, "web.prod.svc.cluster.local"))
        );
        assert_eq!(outbound_cluster("PassthroughCluster"), None);
        assert_eq!(outbound_cluster("inbound|8083||"), None);
        assert_eq!(outbound_cluster("outbound|x||a.b"), None);
    }

    fn route(domains: &[&str], namespace: &str) -> HttpRoute {
        HttpRoute {
            listener: "l".into(),
            route_config: "r".into(),
            cluster: "outbound|3333||app3.default.svc.cluster.local".into(),
            host: "app3.default.svc.cluster.local".into(),
            namespace: namespace.into(),
            port: 3333,
            vip: Some(Ipv4Addr::new(10, 98, 24, 100)),
            dial: SocketAddrV4::new(Ipv4Addr::new(10, 98, 24, 100), 3333),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            sniffing: true,
        }
    }

    #[test]
    fn aliases_of_a_star_vhost_are_istios_and_the_clusterip() {
        let r = route(&["*"], "default");
        assert_eq!(
            r.aliases("default"),
            [
                "app3.default.svc.cluster.local",
                "app3.default.svc",
                "app3.default",
                "app3",
                "10.98.24.100",
                "app3.default.svc.cluster.local:3333",
                "app3.default.svc:3333",
                "app3.default:3333",
                "app3:3333",
                "10.98.24.100:3333",
            ]
        );
        // No short name from another namespace.
        assert!(!r.aliases("other").iter().any(|a| a == "app3"));
    }

    #[test]
    fn aliases_of_listed_domains_add_missing_port_variants_and_skip_wildcards() {
        let r = route(&["a.ns", "a.ns:3333", "*.a.ns", "10.0.0.1"], "ns");
        assert_eq!(
            r.aliases("ns"),
            ["a.ns", "a.ns:3333", "10.0.0.1", "10.0.0.1:3333"]
        );
    }

    #[test]
    fn ecds_names_per_istio() {
        assert_eq!(
            IstioDump::V1_18_2.wasm_plugin_ecds_name("istio-system", "tenant-egress"),
            "istio-system.tenant-egress"
        );
        assert_eq!(
            IstioDump::V1_22_3.wasm_plugin_ecds_name("istio-system", "tenant-egress"),
            "extenstions.istio.io/wasmplugin/istio-system.tenant-egress"
        );
        assert_eq!(
            IstioDump::V1_9_1.wasm_plugin_ecds_name("istio-system", "tenant-egress"),
            "extensions.istio.io/trafficextension/istio-system.tenant-egress~istio-translated-wasmplugin"
        );
    }

    #[test]
    fn mongo_hello_is_a_well_formed_op_msg() {
        let m = mongo_hello();
        let len = i32::from_le_bytes(m[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, m.len());
        assert_eq!(i32::from_le_bytes(m[12..16].try_into().unwrap()), 2013);
        let doc = &m[21..];
        let doc_len = i32::from_le_bytes(doc[0..4].try_into().unwrap()) as usize;
        assert_eq!(doc_len, doc.len());
        assert_eq!(doc.last(), Some(&0));
    }
}
