//! Bootstraps for the Envoy load benchmark (`bench/load`, binary `load` of the bench crate).
//!
//! The benchmark measures a sidecar's own CPU per request, so the sidecar must not also serve
//! the services: [`EnvoyConfig::render`] puts one upstream listener per service (and the
//! canary) into the same process, which would add the upstream's work to every figure. Here
//! the same Istio-shaped sidecar is rendered (listener `0.0.0.0_<port>`, Istio's domain
//! aliases, `outbound|<port>||<fqdn>` clusters with `istio.services` metadata,
//! `PassthroughCluster`, `BlackHoleCluster`, node metadata: one definition, in
//! [`crate::config`]) and then:
//! - every cluster, and the passthrough default, points at ONE separate upstream Envoy
//!   ([`upstream_bootstrap`]), which the benchmark pins to another CPU;
//! - the harness's upstream and canary listeners are left out;
//! - the harness's access log is left out, as Istio's default has none (it would add a file
//!   write per request to every cell).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::config::{EnvoyConfig, Topology};

/// The sidecar of `cfg` for the load benchmark: its outbound listener for service port
/// `service_port` binds 127.0.0.1:`listener_port`, and every service (and the passthrough
/// default) is served by the Envoy on 127.0.0.1:`upstream_port`. `dir` is where Envoy would
/// keep files (nothing is written there: no access log, no ECDS).
pub fn sidecar_bootstrap(
    cfg: &EnvoyConfig,
    service_port: u16,
    listener_port: u16,
    upstream_port: u16,
    dir: &Path,
) -> Value {
    let topo = Topology {
        listeners: BTreeMap::from([(service_port, listener_port)]),
        upstreams: cfg
            .services()
            .iter()
            .flat_map(|s| {
                s.ports
                    .iter()
                    .map(|&p| ((s.name.clone(), s.namespace.clone(), p), upstream_port))
            })
            .collect(),
        canary: upstream_port,
    };
    let mut bootstrap = cfg.render(&topo, dir);
    if let Some(listeners) = bootstrap["static_resources"]["listeners"].as_array_mut() {
        // The outbound listeners are Istio's `0.0.0.0_<port>`; the rest are the harness's
        // upstream and canary listeners, replaced here by the separate upstream Envoy.
        listeners.retain(|l| {
            l["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("0.0.0.0_"))
        });
        for l in listeners.iter_mut() {
            for chain in l["filter_chains"].as_array_mut().into_iter().flatten() {
                for f in chain["filters"].as_array_mut().into_iter().flatten() {
                    if let Some(hcm) = f["typed_config"].as_object_mut() {
                        hcm.remove("access_log");
                    }
                }
            }
        }
    }
    bootstrap
}

/// The upstream Envoy of the load benchmark: one listener on 127.0.0.1:`port` answering every
/// request with 200 (`direct_response`). It is the harness's canary listener rendered alone
/// (an [`EnvoyConfig`] without services), so the upstream's shape is defined once.
pub fn upstream_bootstrap(port: u16, dir: &Path) -> Value {
    let topo = Topology {
        listeners: BTreeMap::new(),
        upstreams: BTreeMap::new(),
        canary: port,
    };
    EnvoyConfig::new("upstream").render(&topo, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners(v: &Value) -> Vec<&Value> {
        v["static_resources"]["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .collect()
    }

    #[test]
    fn sidecar_has_only_the_outbound_listener_and_points_at_the_upstream() {
        let cfg = EnvoyConfig::new("a")
            .service("web", "a", &[80])
            .service("db", "b", &[80]);
        let v = sidecar_bootstrap(&cfg, 80, 10_001, 10_002, Path::new("/tmp/x"));
        let ls = listeners(&v);
        assert_eq!(ls.len(), 1);
        assert_eq!(ls[0]["name"], "0.0.0.0_80");
        assert_eq!(
            ls[0]["address"]["socket_address"]["port_value"],
            serde_json::json!(10_001)
        );
        let hcm = &ls[0]["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(hcm["stat_prefix"], "outbound_0.0.0.0_80");
        assert!(hcm.get("access_log").is_none());
        let text = v.to_string();
        assert!(!text.contains("access.log"), "{text}");
        for c in v["static_resources"]["clusters"].as_array().unwrap() {
            if let Some(eps) = c["load_assignment"]["endpoints"].as_array() {
                let port = &eps[0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                    ["port_value"];
                assert_eq!(port, &serde_json::json!(10_002), "{c}");
            }
        }
        // The passthrough default targets the upstream, never the listener itself.
        assert!(text.contains("127.0.0.1:10002"), "{text}");
        // Istio's aliases come from the one definition (short name only in the own namespace).
        let domains = hcm["route_config"]["virtual_hosts"][0]["domains"].to_string();
        assert!(domains.contains("\"web\""), "{domains}");
    }

    #[test]
    fn upstream_is_one_direct_response_listener() {
        let v = upstream_bootstrap(10_003, Path::new("/tmp/x"));
        let ls = listeners(&v);
        assert_eq!(ls.len(), 1);
        assert_eq!(
            ls[0]["address"]["socket_address"]["port_value"],
            serde_json::json!(10_003)
        );
        let route = &ls[0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
            ["virtual_hosts"][0]["routes"][0];
        assert_eq!(route["direct_response"]["status"], serde_json::json!(200));
    }
}
