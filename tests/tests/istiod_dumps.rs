//! The filter on Envoy configuration that istiod generated, not on configuration we wrote: three
//! real sidecar config dumps (Istio 1.9.1, 1.18.2, 1.22.3; `../shared/reference/
//! istio-config-dumps/SOURCES.md`) converted by `tenant_egress_tests::istiod` and run in Envoy
//! 1.40, each inside a private network namespace where the dump's ClusterIPs live on `lo` and the
//! listeners bind their real addresses: a test dials `10.98.24.100:3333` and lands where iptables
//! would have sent it. The WasmPlugins are what `tenant-egress generate` emits for each dump's
//! policy, translated as istiod does. Every scenario asserts status, which upstream answered (or
//! that none did), the filter's counters and log lines, and Envoy's access log.
//!
//! The dumps are not in the repository; without them these tests FAIL (they never skip).
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use serde_json::{json, Value};
use tenant_egress_tests::istiod::*;
use tenant_egress_tests::*;

/// A destination outside the mesh (TEST-NET-3, RFC 5737), put on `lo` for passthrough.
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// The request reached the upstream of `cluster`, through the metadata-exchange stand-in.
#[track_caller]
fn assert_routed_to(r: &Response, cluster: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: expected 200, got {r:?}");
    assert_eq!(r.header("x-upstream"), Some(cluster), "{what}: {r:?}");
    assert_eq!(r.body, format!("upstream={cluster}\n"), "{what}");
    assert_eq!(r.header("x-tenant-egress-denied"), None, "{what}");
    assert_eq!(
        r.header("x-upstream-stand-in"),
        Some("1"),
        "{what}: the request skipped the metadata-exchange stand-in"
    );
}

/// What one sweep over a dump's HTTP routes did.
#[derive(Default, Debug)]
struct Sweep {
    allowed: u64,
    denied: u64,
    /// Cluster -> requests its upstream must have answered.
    expected_hits: BTreeMap<String, u64>,
    own_routes: usize,
    other_routes: usize,
}

/// Every HTTP route of the dump, by every alias its virtual host lists (ClusterIP included):
/// the services of `own` namespaces answer, every other namespace's are denied `not-allowed`.
fn sweep_http_routes(rep: &Replay, src_ns: &str, own: &[&str]) -> Sweep {
    let mut s = Sweep::default();
    for route in rep.dump.http_routes() {
        let allowed = own.contains(&route.namespace.as_str());
        let hits = s.expected_hits.entry(route.cluster.clone()).or_default();
        if allowed {
            s.own_routes += 1;
        } else {
            s.other_routes += 1;
        }
        for alias in route.aliases(src_ns) {
            let what = format!(
                "{} {src_ns} -> Host {alias} dialled at {} (listener {}, route {}, cluster {})",
                rep.dump.which.version(),
                route.dial,
                route.listener,
                route.route_config,
                route.cluster
            );
            let r = get_at(route.dial, &alias);
            if allowed {
                assert_routed_to(&r, &route.cluster, &what);
                *hits += 1;
                s.allowed += 1;
            } else {
                assert_denied(&r, "not-allowed", &what);
                assert!(
                    r.body.contains(&format!("via {}", route.cluster)),
                    "{what}: {}",
                    r.body
                );
                s.denied += 1;
            }
        }
    }
    let hits = rep.upstream_requests_all();
    for (cluster, &n) in &s.expected_hits {
        assert_eq!(
            hits.get(cluster).copied().unwrap_or(0),
            n,
            "requests that reached the upstream of {cluster}"
        );
    }
    s
}

/// The filter loaded the policy in every VM it runs in, under the ECDS names of this Istio.
/// (Which kind it serves as, it learns from Envoy at its first stream; tests/tests/kind.rs
/// covers that.)
fn assert_plugins_loaded(rep: &Replay, src_ns: &str) {
    for p in &rep.plugins {
        let kind = if p.network { "network" } else { "HTTP" };
        assert!(
            rep.envoy
                .wait_for_log(&format!("loaded policy (root id \"{}\")", p.name), WAIT),
            "{kind} plugin {} did not load",
            p.name
        );
    }
    assert!(rep
        .envoy
        .wait_for_log(&format!("source namespace={src_ns} tenant="), WAIT));
    // Envoy's config dump lists the HTTP and network ECDS resources in separate sections.
    let ecds = rep.envoy.admin_get("/config_dump?include_eds=false");
    for p in &rep.plugins {
        assert!(
            ecds.contains(&format!("\"name\": \"{}\"", p.ecds_name)),
            "ECDS resource {} not active: {ecds}",
            p.ecds_name
        );
    }
}

fn policy_1_22_3() -> String {
    let tenant = |name: &str, nss: &[&str]| json!({"name": name, "namespaces": nss, "egress": [{"hosts": ["./*"]}]});
    json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [
            // The sidecar's namespace. Ports 3333 (the apps) and 9988 (the hostagents) are
            // declared TCP, so `generate` also emits the NETWORK plugin for them, and the sniffing
            // VIP listeners' TCP chains get it.
            {"name": "default", "namespaces": ["default"], "outboundTrafficPolicy": "ALLOW_ANY", "egress": [
                {"port": {"number": 3333, "protocol": "TCP", "name": "tcp-app"}, "hosts": ["./*"]},
                {"port": {"number": 9988, "protocol": "TCP", "name": "tcp-agent"}, "hosts": ["./*"]},
                {"hosts": ["./*"]}
            ]},
            tenant("mplb", &["mplb-system"]),
            tenant("calico", &["calico-system", "calico-apiserver"]),
            tenant("kube", &["kube-system"]),
        ]
    })
    .to_string()
}

#[test]
fn istio_1_22_3_wasmplugin_slot_vip_listeners_and_clusterip_hosts() {
    if !in_private_netns() {
        return;
    }
    let rep = Replay::start(IstioDump::V1_22_3, &policy_1_22_3(), &[EXTERNAL_IP]);
    assert_plugins_loaded(&rep, "default");
    assert_eq!(
        rep.plugins
            .iter()
            .map(|p| p.ecds_name.as_str())
            .collect::<Vec<_>>(),
        [
            "extenstions.istio.io/wasmplugin/istio-system.tenant-egress",
            "extenstions.istio.io/wasmplugin/istio-system.tenant-egress-tcp"
        ]
    );

    // Own namespace by every alias (ClusterIP included), every other namespace denied.
    let s = sweep_http_routes(&rep, "default", &["default"]);
    assert!(s.own_routes >= 3 && s.other_routes >= 20, "{s:?}");

    // The issue's case: a ClusterIP Host on the service's sniffing VIP listener.
    let app3 = "outbound|3333||app3.default.svc.cluster.local";
    let vip = SocketAddrV4::new(Ipv4Addr::new(10, 98, 24, 100), 3333);
    // (This dump configures no access log: Istio 1.22's default Telemetry has none.)
    let r = get_at(vip, "10.98.24.100:3333");
    assert_routed_to(&r, app3, "ClusterIP Host");
    assert_eq!(r.header("x-upstream-authority"), Some("10.98.24.100:3333"));
    // Spoofed: another IP than the one dialled (app2's ClusterIP, an unknown one).
    for spoof in [
        "10.96.60.213:3333",
        "10.98.24.101:3333",
        "10.98.24.100:3334",
    ] {
        assert_denied(
            &get_at(vip, spoof),
            "authority-mismatch",
            &format!("Host {spoof} dialled at {vip}"),
        );
    }
    // Another namespace's ClusterIP on a per-port listener: consistent, and still not allowed.
    let ingress_vip = SocketAddrV4::new(Ipv4Addr::new(10, 96, 12, 203), 80);
    let r = get_at(ingress_vip, "10.96.12.203");
    assert_denied(&r, "not-allowed", "istio-ingressgateway by its ClusterIP");

    // The sniffing VIP listener's TCP side (default_filter_chain): the NETWORK plugin decides.
    assert!(rep
        .converted
        .tcp_filtered_listeners
        .contains("10.98.24.100_3333"));
    let hello = mongo_hello();
    let before = rep.upstream_connections(app3);
    assert_eq!(
        tcp_exchange_at(vip, &hello),
        hello,
        "TCP to app3 (own namespace)"
    );
    assert!(rep.upstream_connections(app3) > before);
    let agent = "outbound|9988||hostagent-node0.mplb-system.svc.cluster.local";
    let agent_route = rep
        .dump
        .tcp_routes()
        .into_iter()
        .find(|t| t.cluster == agent && t.default_chain)
        .expect("hostagent-node0's sniffing VIP listener");
    assert!(
        tcp_exchange_at(agent_route.dial, &hello).is_empty(),
        "bytes came back from mplb-system"
    );
    assert_eq!(rep.cluster_tx_bytes(agent), 0, "bytes reached mplb-system");
    assert_counter(&rep.envoy, "connections.allowed", 1);
    assert_counter(&rep.envoy, "connections.denied.not_allowed", 1);
    assert!(rep.envoy.wait_for_log(
        "denied connection source=default tenant=default destination=hostagent-node0.mplb-system.svc.cluster.local:9988",
        WAIT
    ));

    // Passthrough (ALLOW_ANY): Envoy sends an unknown host to the IP the app dialled.
    let ext = SocketAddrV4::new(EXTERNAL_IP, 80);
    let r = get_at(ext, "downloads.example.org");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-upstream"), Some("passthrough"));
    assert_eq!(
        r.header("x-upstream-local"),
        Some(format!("{EXTERNAL_IP}:{CANARY_PORT}").as_str()),
        "ORIGINAL_DST kept the dialled IP"
    );
    // Host spoofing on a request dialled elsewhere: an allowed service's FQDN (no route on the
    // port, so a passthrough), or a ClusterIP that Envoy routes to its service (Istio lists the
    // VIP among the virtual host's domains) while the app dialled another address: refused.
    for spoof in ["app3.default.svc.cluster.local:80", "10.96.12.203"] {
        assert_denied(
            &get_at(ext, spoof),
            "authority-mismatch",
            &format!("Host {spoof} to {ext}"),
        );
    }
    // A short name as the Host of a request dialled to an external address is not a mesh name
    // (issue 15: the decision does not guess from a name's shape): Envoy passes it through to
    // the dialled external address, never to app3, so ALLOW_ANY lets it out.
    let r = get_at(ext, "app3");
    assert_eq!(r.status, 200, "Host app3 to {ext}: {r:?}");
    assert_eq!(
        r.header("x-upstream-local"),
        Some(format!("{EXTERNAL_IP}:{CANARY_PORT}").as_str()),
        "Host app3: went to the dialled address, not to app3"
    );
    assert_eq!(
        rep.canary_requests(),
        2,
        "the two passthroughs, to the dialled address"
    );

    let allowed = s.allowed + 3; // + the ClusterIP request, + the two passthroughs
    assert_counter(&rep.envoy, "allowed", allowed);
    assert_counter(&rep.envoy, "denied.not_allowed", s.denied + 1);
    assert_counter(&rep.envoy, "denied.authority_mismatch", 5);
    assert_counter(&rep.envoy, "denied", s.denied + 6);
}

fn policy_1_18_2() -> String {
    let tenant = |ns: &str| {
        json!({"name": ns, "namespaces": [ns], "egress": [
            {"port": {"number": 27017, "protocol": "MONGO", "name": "mongo"}, "hosts": ["./*"]},
            {"hosts": ["./*"]}
        ]})
    };
    json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [tenant("hotel-res"), tenant("hr2"), tenant("social-network")]
    })
    .to_string()
}

#[test]
fn istio_1_18_2_mongodb_of_three_namespaces_on_one_port() {
    if !in_private_netns() {
        return;
    }
    let rep = Replay::start(IstioDump::V1_18_2, &policy_1_18_2(), &[EXTERNAL_IP]);
    assert_plugins_loaded(&rep, "hr2");

    // The seed problem as istiod generated it: 18 MongoDB services on 27017, each behind its own
    // VIP listener with tcp_proxy, in three namespaces.
    let mongo: Vec<TcpRoute> = rep
        .dump
        .tcp_routes()
        .into_iter()
        .filter(|t| t.port == 27017)
        .collect();
    assert_eq!(mongo.len(), 18);
    let hello = mongo_hello();
    let (mut own, mut other) = (0, 0);
    for t in &mongo {
        assert!(rep.converted.tcp_filtered_listeners.contains(&t.listener));
        let got = tcp_exchange_at(t.dial, &hello);
        if t.namespace == "hr2" {
            assert_eq!(got, hello, "hr2 -> {} ({})", t.cluster, t.dial);
            assert!(rep.cluster_tx_bytes(&t.cluster) >= hello.len() as u64);
            own += 1;
        } else {
            assert!(got.is_empty(), "hr2 -> {}: bytes came back", t.cluster);
            assert_eq!(
                rep.cluster_tx_bytes(&t.cluster),
                0,
                "a byte reached {}",
                t.cluster
            );
            other += 1;
        }
    }
    assert_eq!((own, other), (6, 12));
    assert_counter(&rep.envoy, "connections.allowed", 6);
    assert_counter(&rep.envoy, "connections.denied.not_allowed", 12);
    for dest in [
        "mongodb-geo.hotel-res.svc.cluster.local:27017",
        "media-mongodb.social-network.svc.cluster.local:27017",
    ] {
        assert!(rep.envoy.wait_for_log(
            &format!("denied connection source=hr2 tenant=hr2 destination={dest}"),
            WAIT
        ));
    }

    // HTTP: own namespace by every alias, the other namespaces denied.
    let s = sweep_http_routes(&rep, "hr2", &["hr2"]);
    assert!(s.own_routes >= 5 && s.other_routes >= 40, "{s:?}");

    // Passthrough under REGISTRY_ONLY, and Host spoofing onto a passthrough.
    let ext = SocketAddrV4::new(EXTERNAL_IP, 80);
    assert_denied(
        &get_at(ext, "downloads.example.org"),
        "not-in-registry",
        "passthrough",
    );
    assert_denied(
        &get_at(ext, "rate.hr2.svc.cluster.local"),
        "authority-mismatch",
        "own service's name on a passthrough",
    );
    assert_eq!(rep.canary_requests(), 0);
    assert_counter(&rep.envoy, "allowed", s.allowed);
    assert_counter(&rep.envoy, "denied.not_in_registry", 1);
    assert_counter(&rep.envoy, "denied.authority_mismatch", 1);
    assert_counter(&rep.envoy, "denied.not_allowed", s.denied);
}

fn policy_1_9_1() -> String {
    json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [
            {"name": "bookinfo", "namespaces": ["default"], "egress": [{"hosts": ["./*"]}]},
            {"name": "slime", "namespaces": ["mesh-operator"], "egress": [{"hosts": ["./*"]}]}
        ]
    })
    .to_string()
}

#[test]
fn istio_1_9_1_port_domains_and_a_replaced_catch_all() {
    if !in_private_netns() {
        return;
    }
    let rep = Replay::start(IstioDump::V1_9_1, &policy_1_9_1(), &[EXTERNAL_IP]);
    assert_plugins_loaded(&rep, "default");

    // The older shape: `:port` variants and `svc.ns.svc.cluster` among the domains.
    let details = rep
        .dump
        .http_routes()
        .into_iter()
        .find(|r| r.cluster == "outbound|9080||details.default.svc.cluster.local")
        .expect("details");
    assert!(details
        .domains
        .contains(&"details.default.svc.cluster:9080".to_owned()));
    let s = sweep_http_routes(&rep, "default", &["default"]);
    assert!(s.own_routes >= 3 && s.other_routes >= 10, "{s:?}");

    // A third-party EnvoyFilter replaced `allow_any` on 9080 with a catch-all to a service
    // (`to_global_sidecar`): an unknown Host routed there does not name that service.
    let gs = "outbound|9080||global-sidecar.default.svc.cluster.local";
    let before = rep.upstream_requests(gs);
    let port_9080 = SocketAddrV4::new(EXTERNAL_IP, 9080);
    assert_denied(
        &get_at(port_9080, "downloads.example.org"),
        "authority-mismatch",
        "unknown host caught by to_global_sidecar",
    );
    assert_eq!(rep.upstream_requests(gs), before);
    assert!(rep
        .wait_for_access_line(&["\"downloads.example.org\"", gs, " 403 "], WAIT)
        .is_some());

    // Passthrough on 80 (allow_any) under REGISTRY_ONLY.
    assert_denied(
        &get_at(SocketAddrV4::new(EXTERNAL_IP, 80), "downloads.example.org"),
        "not-in-registry",
        "passthrough",
    );
    assert_eq!(rep.canary_requests(), 0);
    assert_counter(&rep.envoy, "allowed", s.allowed);
    assert_counter(&rep.envoy, "denied.not_allowed", s.denied);
    assert_counter(&rep.envoy, "denied.authority_mismatch", 1);
    assert_counter(&rep.envoy, "denied.not_in_registry", 1);
}

/// `generate --api trafficextension`: the same plugins as Istio 1.30+ TrafficExtensions, turned
/// into Envoy filters as Istio 1.30 does (the module from `spec.wasm`, ECDS
/// `extensions.istio.io/trafficextension/<ns>.<name>`, Envoy plugin `<ns>.<name>`), decide the
/// 1.9.1 dump's routes exactly as the WasmPlugin form does; only the names Envoy shows change.
#[test]
fn istio_1_30_trafficextension_form_decides_as_the_wasmplugin_form() {
    if !in_private_netns() {
        return;
    }
    let rep = Replay::start_as(
        IstioDump::V1_9_1,
        &policy_1_9_1(),
        &[EXTERNAL_IP],
        PluginApi::TrafficExtension,
    );
    let names: Vec<&str> = rep.plugins.iter().map(|p| p.ecds_name.as_str()).collect();
    assert_eq!(
        names,
        ["extensions.istio.io/trafficextension/istio-system.tenant-egress"],
        "the TrafficExtension's ECDS name, not a translated WasmPlugin's"
    );
    assert_plugins_loaded(&rep, "default");
    let s = sweep_http_routes(&rep, "default", &["default"]);
    // Envoy prefixes the filter's per-request log lines with the plugin's name and root id: under
    // a TrafficExtension `<ns>.<name>`, what a `grep` of proxy logs finds (a translated
    // WasmPlugin would be `<ns>.<name>~istio-translated-wasmplugin`).
    assert!(
        rep.envoy.wait_for_log(
            "wasm log istio-system.tenant-egress tenant-egress: denied source=default ",
            WAIT
        ),
        "no denial logged under the TrafficExtension's plugin name"
    );
    assert!(
        !rep.envoy.log().contains("~istio-translated-wasmplugin"),
        "a translated WasmPlugin's name in a TrafficExtension replay"
    );
    assert!(s.own_routes >= 3 && s.other_routes >= 10, "{s:?}");
    assert_denied(
        &get_at(SocketAddrV4::new(EXTERNAL_IP, 80), "downloads.example.org"),
        "not-in-registry",
        "passthrough",
    );
    assert_eq!(rep.canary_requests(), 0);
    assert_counter(&rep.envoy, "allowed", s.allowed);
    assert_counter(&rep.envoy, "denied.not_allowed", s.denied);
    assert_counter(&rep.envoy, "denied.not_in_registry", 1);
}

// === The conversion itself (no Envoy) ===

fn hcm_filter_names(listener: &Value) -> Vec<String> {
    listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["filters"].as_array().into_iter().flatten())
        .filter(|f| f["name"] == "envoy.filters.network.http_connection_manager")
        .flat_map(|f| {
            f["typed_config"]["http_filters"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .map(|h| h["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Where the plugin sits, per dump: in the WasmPlugin's slot (1.22.3), else right after
/// `istio.metadata_exchange`; and nothing Istio-only is left.
#[test]
fn the_plugin_takes_istios_place_in_every_outbound_http_chain() {
    for which in IstioDump::ALL {
        let dump = Dump::load(which);
        let policy = match which {
            IstioDump::V1_9_1 => policy_1_9_1(),
            IstioDump::V1_18_2 => policy_1_18_2(),
            IstioDump::V1_22_3 => policy_1_22_3(),
        };
        let plugins = plan_plugins(which, &policy, Path::new("/x/tenant_egress_filter.wasm"));
        let http = plugins.iter().find(|p| !p.network).unwrap();
        assert_eq!(http.typed_config["config"]["root_id"], "tenant-egress");
        assert_eq!(
            http.typed_config["config"]["name"].as_str(),
            http.ecds_name.rsplit('/').next(),
            "the Envoy plugin name is the ECDS name's last segment"
        );
        assert!(http.ecds_name.contains("istio-system.tenant-egress"));
        let spec = |text: &str| {
            tenant_egress_core::validate::validate_json(text.as_bytes())
                .unwrap()
                .0
        };
        assert_eq!(
            spec(
                http.typed_config["config"]["configuration"]["value"]
                    .as_str()
                    .unwrap()
            ),
            spec(&policy),
            "the plugin configuration is the policy"
        );
        let conv = convert(&dump, &plugins, Path::new("/x"));
        let listeners = conv.bootstrap["static_resources"]["listeners"]
            .as_array()
            .unwrap();
        let mut chains = 0;
        for (orig, l) in dump.outbound_listeners().iter().zip(listeners) {
            assert_eq!(orig["name"], l["name"]);
            assert_eq!(orig["address"], l["address"]);
            assert_eq!(orig["use_original_dst"], l["use_original_dst"]);
            assert_eq!(orig["listener_filters"], l["listener_filters"]);
            let names = hcm_filter_names(l);
            if names.is_empty() {
                continue;
            }
            chains += 1;
            let mx = names.iter().position(|n| n == METADATA_EXCHANGE).unwrap();
            assert_eq!(
                names[mx + 1],
                http.ecds_name,
                "{}: {names:?}",
                which.version()
            );
            assert_eq!(names.last().unwrap(), "envoy.filters.http.router");
            assert!(
                !names
                    .iter()
                    .any(|n| n.starts_with("istio.") && n != METADATA_EXCHANGE),
                "{names:?}"
            );
            // Istio's own order, less the Istio-only filters, with the plugin in its slot.
            let mut expected = hcm_filter_names(orig);
            expected
                .retain(|n| !matches!(n.as_str(), "istio.alpn" | "istio.stats" | "istio_authn"));
            match expected.iter().position(|n| n.contains("wasmplugin")) {
                Some(i) => expected[i] = http.ecds_name.clone(),
                None => expected.insert(mx + 1, http.ecds_name.clone()),
            }
            assert_eq!(names, expected, "{}", which.version());
        }
        assert!(chains >= 10, "{}: {chains} HTTP listeners", which.version());
        // Clusters keep their names and metadata.
        let clusters = conv.bootstrap["static_resources"]["clusters"]
            .as_array()
            .unwrap();
        for c in clusters {
            let orig = dump.cluster(c["name"].as_str().unwrap()).unwrap();
            assert_eq!(orig["metadata"], c["metadata"]);
        }
        let pass = clusters
            .iter()
            .find(|c| c["name"] == "PassthroughCluster")
            .unwrap();
        assert_eq!(pass["type"], "ORIGINAL_DST");
    }
}

#[test]
fn the_1_22_3_dump_delivers_its_own_wasmplugin_by_ecds_under_the_1_21_name() {
    let dump = Dump::load(IstioDump::V1_22_3);
    let ecds = dump.ecds_filters();
    assert_eq!(ecds.len(), 1);
    assert_eq!(
        ecds[0]["name"],
        "extenstions.istio.io/wasmplugin/default.mplb-wasm-plugin"
    );
    // Its Envoy plugin name is `<ns>.<name>`, and no root id: only `pluginName` would set one.
    assert_eq!(
        ecds[0]["typed_config"]["config"]["name"],
        "default.mplb-wasm-plugin"
    );
    assert_eq!(
        IstioDump::V1_22_3.wasm_plugin_ecds_name("default", "mplb-wasm-plugin"),
        ecds[0]["name"].as_str().unwrap()
    );
}

#[test]
fn a_missing_dump_fails_loudly() {
    let err = std::panic::catch_unwind(|| {
        Dump::load_from(
            Path::new("/nonexistent/istio-config-dumps"),
            IstioDump::V1_18_2,
        )
    })
    .expect_err("a missing dump must fail the test");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("config dump is missing"), "{msg}");
    assert!(msg.contains("fail rather than skip"), "{msg}");
}

// === The kit's own Istio-shaped configuration, against the 1.22.3 dump ===

fn hcm_of(listener: &Value) -> &Value {
    listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["filters"].as_array().into_iter().flatten())
        .find(|f| f["name"] == "envoy.filters.network.http_connection_manager")
        .map(|f| &f["typed_config"])
        .expect("an HTTP connection manager")
}

fn vhost<'a>(rc: &'a Value, name: &str) -> &'a Value {
    rc["virtual_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no virtual host {name}: {rc}"))
}

/// The configuration the other integration tests run on (`EnvoyConfig`) has the shapes Istio
/// 1.22 generates, checked against the real 1.22.3 dump so the two cannot drift apart: listener
/// and route names, `ignore_port_in_host_matching` and no `:port` domain variants, the service
/// virtual host's domains, the `allow_any` catch-all to an ORIGINAL_DST `PassthroughCluster`,
/// the plugin right after the metadata exchange (by ECDS), the router last, and the cluster
/// metadata the filter reads.
#[test]
fn the_kits_istio_shaped_configs_match_the_1_22_3_dump() {
    let dump = Dump::load(IstioDump::V1_22_3);
    let real = dump
        .outbound_listeners()
        .into_iter()
        .find(|l| l["name"] == "0.0.0.0_80")
        .unwrap();
    let real_hcm = hcm_of(real);
    let real_rc = dump
        .route_config(real_hcm["rds"]["route_config_name"].as_str().unwrap())
        .unwrap();
    let cfg = EnvoyConfig::new("default")
        .service("tracing", "istio-system", &[80])
        .wasm_filter_ecds(r#"{"apiVersion": "tenant-egress/v1", "tenants": []}"#)
        .wasm_file("/x/tenant_egress_filter.wasm");
    let kit = cfg.render(&cfg.allocate(), Path::new("/x"));
    let kit_l = kit["static_resources"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == real["name"])
        .expect("the kit's 0.0.0.0_80");
    let kit_hcm = hcm_of(kit_l);
    let kit_rc = &kit_hcm["route_config"];

    // Listener and HCM.
    assert_eq!(kit_l["traffic_direction"], real["traffic_direction"]);
    assert_eq!(kit_hcm["stat_prefix"], real_hcm["stat_prefix"]);
    assert_eq!(
        kit_hcm["use_remote_address"],
        real_hcm["use_remote_address"]
    );
    assert_eq!(kit_hcm["upgrade_configs"], real_hcm["upgrade_configs"]);

    // Route configuration.
    assert_eq!(kit_rc["name"], real_rc["name"]);
    for key in ["ignore_port_in_host_matching", "validate_clusters"] {
        assert_eq!(kit_rc[key], real_rc[key], "{key}");
    }
    assert_eq!(kit_rc["ignore_port_in_host_matching"], true);
    for rc in [kit_rc, real_rc] {
        for vh in rc["virtual_hosts"].as_array().unwrap() {
            for d in vh["domains"].as_array().unwrap() {
                assert!(!d.as_str().unwrap().contains(':'), "a :port domain: {d}");
            }
        }
    }
    let name = "tracing.istio-system.svc.cluster.local:80";
    let (kit_vh, real_vh) = (vhost(kit_rc, name), vhost(real_rc, name));
    let real_names: Vec<&Value> = real_vh["domains"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d.as_str().unwrap().parse::<Ipv4Addr>().is_err())
        .collect();
    assert_eq!(
        kit_vh["domains"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        real_names,
        "service domains, less the ClusterIP the kit has none of"
    );
    for key in ["name", "match"] {
        assert_eq!(kit_vh["routes"][0][key], real_vh["routes"][0][key], "{key}");
    }
    assert_eq!(
        kit_vh["routes"][0]["route"]["cluster"],
        real_vh["routes"][0]["route"]["cluster"]
    );
    let (kit_any, real_any) = (vhost(kit_rc, "allow_any"), vhost(real_rc, "allow_any"));
    assert_eq!(kit_any["domains"], real_any["domains"]);
    assert_eq!(kit_any["routes"][0]["name"], real_any["routes"][0]["name"]);
    assert_eq!(
        kit_any["routes"][0]["route"]["cluster"],
        real_any["routes"][0]["route"]["cluster"]
    );

    // HTTP filters: the metadata exchange, the plugin by ECDS right after it, ..., the router.
    let order = |hcm: &Value| -> Vec<(String, bool)> {
        hcm["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_owned(),
                    h["config_discovery"].is_object(),
                )
            })
            .collect()
    };
    for (who, filters) in [("kit", order(kit_hcm)), ("1.22.3", order(real_hcm))] {
        assert_eq!(filters[0].0, METADATA_EXCHANGE, "{who}: {filters:?}");
        assert!(
            filters[1].1,
            "{who}: the plugin by ECDS after it: {filters:?}"
        );
        assert_eq!(
            filters.last().unwrap().0,
            "envoy.filters.http.router",
            "{who}"
        );
    }

    // Clusters: the catch-all and the metadata the filter reads.
    let kit_cluster = |name: &str| {
        kit["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("kit cluster {name}"))
            .clone()
    };
    let real_pass = dump.cluster("PassthroughCluster").unwrap();
    let kit_pass = kit_cluster("PassthroughCluster");
    for key in ["type", "lb_policy"] {
        assert_eq!(kit_pass[key], real_pass[key], "PassthroughCluster {key}");
    }
    let svc = "outbound|80||tracing.istio-system.svc.cluster.local";
    assert_eq!(
        kit_cluster(svc)["metadata"]["filter_metadata"]["istio"]["services"],
        dump.cluster(svc).unwrap()["metadata"]["filter_metadata"]["istio"]["services"]
    );
}

/// REGISTRY_ONLY as Istio 1.22 writes it (not in any of the dumps): unknown hosts hit the
/// `block_all` virtual host, a direct 502 with no cluster at all. The filter runs first and, with
/// no cluster to go by, decides on the authority alone: an unknown name is no service the policy
/// imports (`not-allowed`), the source's own service passes to Envoy's 502 (a name the Sidecar
/// does not route), and nothing is sent anywhere.
#[test]
fn block_all_has_no_cluster_and_the_authority_decides() {
    let policy = json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [
            {"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["./*"]}]},
            {"name": "uat", "namespaces": ["uat"], "egress": [{"hosts": ["./*"]}]}
        ]
    })
    .to_string();
    let envoy = EnvoyConfig::new("prod")
        .service("web", "prod", &[80])
        .registry_only()
        .wasm_filter(&policy)
        .start();
    let port = envoy.listener_port(80);
    assert_denied(
        &get(port, "downloads.example.org", "/"),
        "not-allowed",
        "unknown host",
    );
    assert_denied(
        &get(port, "api.uat.svc.cluster.local", "/"),
        "not-allowed",
        "another tenant's service the Sidecar does not route",
    );
    let r = get(port, "api.prod.svc.cluster.local", "/");
    assert_eq!(
        r.status, 502,
        "own namespace, unrouted: block_all's 502: {r:?}"
    );
    assert_eq!(r.header("x-tenant-egress-denied"), None);
    assert_eq!(envoy.canary_hits(), 0);
    assert_eq!(envoy.upstream_hits("web", "prod", 80), 0);
    assert_counter(&envoy, "denied.not_allowed", 2);
    assert_counter(&envoy, "allowed", 1);
    assert!(envoy.wait_for_access_log("route=block_all", WAIT));
}
