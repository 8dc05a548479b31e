//! Envoys that run on their own: bootstraps with FIXED ports, written to a file and started by
//! a script or by docker compose rather than by a test (the demo, `demo/`).
//!
//! The same [`EnvoyConfig`] describes such a sidecar as a test's, and the same code renders its
//! node, virtual hosts (Istio's aliases, [`istio_domains`](crate::istio_domains)), clusters,
//! catch-all and filter chain; only the layout differs:
//!
//! - one outbound listener holds the virtual hosts of every service port (the application's
//!   `Host` header says which port it "dialled"), where a test's Envoy has one listener per port
//!   as Istio does (there iptables hands each connection to the listener of its port);
//! - the services' "pods" are listeners of another Envoy ([`upstreams_bootstrap`], the demo's
//!   mesh), not of the sidecar itself;
//! - the access log goes to standard output.
//!
//! [`EnvoyConfig::route`] says which virtual host Envoy picks for a `Host`, so a caller can
//! predict the cluster a request is routed to (and check it against `x-upstream`).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use crate::config::{
    blackhole_cluster, outbound_listener, passthrough_cluster, socket, stdout_access_log,
    upstream_listener, EnvoyConfig, RegistryPort,
};

/// The fixed ports of a sidecar rendered by [`EnvoyConfig::render_standalone`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandalonePorts {
    /// 127.0.0.1 port of the one outbound listener.
    pub listener: u16,
    /// 127.0.0.1 port of the admin interface.
    pub admin: u16,
    /// Where a request the catch-all passes through goes unless it names another address in
    /// `x-envoy-original-dst-host` (ALLOW_ANY only).
    pub passthrough: u16,
}

/// Name, stat_prefix and route table name of the one outbound listener of a standalone sidecar.
pub const STANDALONE_LISTENER: &str = "outbound_http";

impl EnvoyConfig {
    /// Renders a sidecar that runs on its own: fixed `ports`, one outbound listener with the
    /// virtual hosts of every port, and clusters that send each registry entry to
    /// 127.0.0.1:`upstream(entry)` (another Envoy's listener). See the module docs.
    pub fn render_standalone(
        &self,
        ports: &StandalonePorts,
        upstream: &dyn Fn(&RegistryPort) -> u16,
    ) -> Value {
        let mut used = BTreeSet::new();
        let mut vhosts = self.virtual_hosts(None, &mut used);
        vhosts.push(self.catch_all(ports.passthrough));
        let listener = outbound_listener(
            STANDALONE_LISTENER,
            ports.listener,
            STANDALONE_LISTENER,
            // One listener for every port: the `:port` domains tell the ports apart.
            false,
            vhosts,
            // ECDS (if configured) would read ./xds/ecds.json relative to Envoy's working
            // directory.
            self.http_filters(Path::new(".")),
            stdout_access_log(STANDALONE_LISTENER),
            STANDALONE_LISTENER,
        );
        let mut clusters = self.registry_clusters(upstream);
        clusters.push(passthrough_cluster());
        clusters.push(blackhole_cluster());
        json!({
            "node": self.node(),
            "admin": {"address": socket(ports.admin)},
            "static_resources": {"listeners": [listener], "clusters": clusters},
        })
    }

    /// The registry entry whose virtual host Envoy picks for `authority` on the outbound
    /// listener of service port `port` (`None`: the one listener of
    /// [`render_standalone`](Self::render_standalone)), or `None` when only the catch-all
    /// (`*`) matches.
    ///
    /// Envoy's virtual host selection, for the domains Istio generates: an exact domain
    /// (case-insensitive, port included) first, then the longest `*.suffix` wildcard that
    /// leaves at least one character for the `*`. A per-port listener's route table ignores
    /// the port (`ignore_port_in_host_matching`, Istio 1.20+): the Host's `:port` is dropped
    /// before matching, as Envoy does.
    pub fn route(&self, port: Option<u16>, authority: &str) -> Option<RegistryPort> {
        let mut host = authority.to_ascii_lowercase();
        if port.is_some() {
            // `name:port` or `[v6]:port`; a bare IPv6 literal's colons are not a port.
            if let Some((h, p)) = host.rsplit_once(':') {
                let bracketed_or_named = h.ends_with(']') || !h.contains(':');
                if bracketed_or_named && p.bytes().all(|b| b.is_ascii_digit()) {
                    host = h.to_owned();
                }
            }
        }
        let mut used = BTreeSet::new();
        let mut best: Option<(usize, RegistryPort)> = None;
        for r in self.registry() {
            if port.is_some_and(|p| p != r.port) {
                continue;
            }
            // The same de-duplication as the rendered route table: a domain belongs to the
            // first entry that claims it.
            let domains: Vec<String> = r
                .domains(Some(self.namespace()), port.is_none())
                .into_iter()
                .filter(|d| used.insert(d.clone()))
                .collect();
            for d in domains {
                let d = d.to_ascii_lowercase();
                if d == host {
                    return Some(r);
                }
                if let Some(suffix) = d.strip_prefix('*') {
                    let longer = best.as_ref().is_none_or(|(len, _)| suffix.len() > *len);
                    if host.len() > suffix.len() && host.ends_with(suffix) && longer {
                        best = Some((suffix.len(), r.clone()));
                    }
                }
            }
        }
        best.map(|(_, r)| r)
    }
}

/// One upstream listener of [`upstreams_bootstrap`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// What it answers with: header `x-upstream: <label>`, body `upstream=<label>`.
    pub label: String,
    /// 127.0.0.1 port.
    pub port: u16,
    /// Its HCM stat_prefix: the requests it answered are `http.<prefix>.downstream_rq_total`.
    pub stat_prefix: String,
}

/// An Envoy that plays upstream services: one listener per [`Upstream`], each answering 200
/// with `upstream=<label>` and the headers `x-upstream`, `x-upstream-authority` and
/// `x-upstream-path` (what it received), like a test Envoy's own upstream listeners.
pub fn upstreams_bootstrap(node: &str, admin: u16, upstreams: &[Upstream]) -> Value {
    let listeners: Vec<Value> = upstreams
        .iter()
        .map(|u| {
            upstream_listener(
                &format!("upstream_{}", u.label),
                u.port,
                &u.stat_prefix,
                &u.label,
            )
        })
        .collect();
    json!({
        "node": {"id": node, "cluster": node},
        "admin": {"address": socket(admin)},
        "static_resources": {"listeners": listeners},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EnvoyConfig {
        EnvoyConfig::new("a")
            .service("web", "a", &[80])
            .service("db", "b", &[5432])
            .service_entry("*.example.com", "istio-system", &[80])
            .service_entry("*.api.example.com", "istio-system", &[80])
    }

    #[test]
    fn route_follows_envoy_domain_matching() {
        let c = cfg();
        let host = |a: &str| c.route(None, a).map(|r| r.label());
        assert_eq!(host("web").as_deref(), Some("web.a:80"));
        assert_eq!(host("WEB.a.svc:80").as_deref(), Some("web.a:80"));
        assert_eq!(host("db.b:5432").as_deref(), Some("db.b:5432"));
        // No short name for another namespace's service, no alias for another port.
        assert_eq!(host("db:5432"), None);
        assert_eq!(host("db.b:80"), None);
        // Wildcards: the longest suffix wins; the `*` matches at least one character.
        assert_eq!(host("en.example.com").as_deref(), Some("*.example.com:80"));
        assert_eq!(
            host("v1.api.example.com").as_deref(),
            Some("*.api.example.com:80")
        );
        assert_eq!(host(".example.com"), None);
        assert_eq!(host("example.org"), None);
        // Per listener: only that port's virtual hosts.
        assert_eq!(c.route(Some(5432), "web"), None);
    }

    #[test]
    fn standalone_sidecar_has_one_listener_and_the_given_ports() {
        let c = cfg().wasm_filter("{}").wasm_file("./f.wasm");
        let ports = StandalonePorts {
            listener: 1001,
            admin: 1002,
            passthrough: 1003,
        };
        let v = c.render_standalone(&ports, &|r| 2000 + r.port);
        assert_eq!(v["admin"]["address"]["socket_address"]["port_value"], 1002);
        let listeners = v["static_resources"]["listeners"].as_array().unwrap();
        assert_eq!(listeners.len(), 1);
        let hcm = &listeners[0]["filter_chains"][0]["filters"][0]["typed_config"];
        let names: Vec<&str> = hcm["route_config"]["virtual_hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "web.a.svc.cluster.local:80",
                "db.b.svc.cluster.local:5432",
                "*.example.com:80",
                "*.api.example.com:80",
                "allow_any"
            ]
        );
        // After the metadata-exchange stand-in, as Istio orders them.
        assert_eq!(hcm["http_filters"][0]["name"], crate::METADATA_EXCHANGE);
        let filter = &hcm["http_filters"][1]["typed_config"]["config"];
        assert_eq!(filter["vm_config"]["code"]["local"]["filename"], "./f.wasm");
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        let entry = clusters
            .iter()
            .find(|c| c["name"] == "outbound|80||*.example.com")
            .unwrap();
        assert_eq!(
            entry["metadata"]["filter_metadata"]["istio"]["services"][0]["namespace"],
            "istio-system"
        );
        assert_eq!(
            entry["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"],
            2080
        );
    }
}
