//! The demo's topology: every service, every sidecar (one per source identity) and every
//! fixed port, in one place. The Envoy configurations ([`render`](mod@super::render)), `demo/ports.env`
//! (which `scripts/demo.sh` sources) and the request table ([`super::requests`]) all follow it.

use std::collections::BTreeMap;

use crate::config::{upstream_stat_prefix, EnvoyConfig, RegistryPort};
use crate::standalone::{StandalonePorts, Upstream};

/// A Kubernetes service of the demo: (name, namespace, port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoService {
    pub name: &'static str,
    pub namespace: &'static str,
    pub port: u16,
}

/// The mesh's services. Each is played by one listener of the mesh Envoy ("the pods").
pub const SERVICES: [DemoService; 7] = [
    svc("cockroachdb", "prod", 26257),
    svc("cockroachdb", "uat", 26257),
    svc("cockroachdb", "dev", 26257),
    svc("api", "prod", 8080),
    svc("api", "uat", 8080),
    svc("api", "dev", 8080),
    svc("logcatcher", "logmonkey", 80),
];

const fn svc(name: &'static str, namespace: &'static str, port: u16) -> DemoService {
    DemoService {
        name,
        namespace,
        port,
    }
}

/// A wildcard ServiceEntry (resolution NONE in a real mesh) for external hosts, declared by
/// the platform team in `istio-system`: (hosts pattern, namespace, port).
pub const EXTERNAL: (&str, &str, u16) = ("*.example.com", "istio-system", 80);

/// One sidecar Envoy per source identity (the filter reads the source from node metadata).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sidecar {
    /// The file is `demo/sidecar-<name>.yaml`, the compose service `sidecar-<name>`.
    pub name: &'static str,
    /// `NAMESPACE` node metadata; `None`: left out (a proxy configured by hand).
    pub namespace: Option<&'static str>,
    /// The node id's pod and the `NAME` metadata.
    pub pod: &'static str,
    /// The node cluster's app.
    pub app: &'static str,
    /// `LABELS` node metadata.
    pub labels: &'static [(&'static str, &'static str)],
    /// One line for the file's header.
    pub about: &'static str,
}

/// The sidecars, in the order of every port range.
pub const SIDECARS: [Sidecar; 6] = [
    Sidecar {
        name: "prod",
        namespace: Some("prod"),
        pod: "orders-5d8f7c9b6-x2x7q",
        app: "orders",
        labels: &[("app.kubernetes.io/name", "orders"), ("version", "v1")],
        about: "a pod of the orders app in namespace prod (tenant prod)",
    },
    Sidecar {
        name: "prod-batman",
        namespace: Some("prod"),
        pod: "batman-app-6b9d4f5c7-k8m2p",
        app: "batman-app",
        labels: &[("app.kubernetes.io/name", "batman-app"), ("version", "v2")],
        about: "a batman-app pod in namespace prod: tenant prod plus the workload exception \
                permit-logs-to-logmonkey",
    },
    Sidecar {
        name: "uat",
        namespace: Some("uat"),
        pod: "orders-7c6b5d4f8-p4q9r",
        app: "orders",
        labels: &[("app.kubernetes.io/name", "orders"), ("version", "v2")],
        about: "a pod of the orders app in namespace uat (tenant uat)",
    },
    Sidecar {
        name: "dev",
        namespace: Some("dev"),
        pod: "orders-8d7c6b5f9-z1w3e",
        app: "orders",
        labels: &[("app.kubernetes.io/name", "orders"), ("version", "v3")],
        about: "a pod of the orders app in namespace dev (tenant dev, ALLOW_ANY)",
    },
    Sidecar {
        name: "nometa",
        namespace: None,
        pod: "legacy-job-0",
        app: "legacy-job",
        labels: &[],
        about: "a proxy without NAMESPACE node metadata (configured by hand, not by Istio): \
                the filter cannot tell who is calling and denies everything",
    },
    Sidecar {
        name: "staging",
        namespace: Some("staging"),
        pod: "orders-9e8d7c6b5-s5t6u",
        app: "orders",
        labels: &[("app.kubernetes.io/name", "orders"), ("version", "v4")],
        about: "a pod of the orders app in namespace staging (tenant staging, audit mode)",
    },
];

/// The sidecar called `name`.
pub fn sidecar(name: &str) -> Option<&'static Sidecar> {
    SIDECARS.iter().find(|s| s.name == name)
}

/// The SPIFFE trust domain of the demo's mesh (Istio's default; `demo/policy/` names no
/// other, so the filter accepts this one only).
pub const TRUST_DOMAIN: &str = "cluster.local";

/// The service behind the destination's sidecar ([`Role::Destination`]): prod's database.
pub const DB_SERVICE: DemoService = SERVICES[0];

/// [`DB_SERVICE`]'s port as the kit's registry has it: its FQDN (`host`), outbound cluster
/// (`cluster()`) and mesh label (`label()`), named once, by the kit.
pub fn db_registry() -> RegistryPort {
    let registry = sidecar_config(&SIDECARS[0], "", WASM_RELATIVE).registry();
    registry
        .into_iter()
        .find(|r| {
            !r.service_entry
                && r.name == DB_SERVICE.name
                && r.namespace == DB_SERVICE.namespace
                && r.port == DB_SERVICE.port
        })
        .unwrap_or_else(|| panic!("{DB_SERVICE:?} is not in the registry: SERVICES changed"))
}

/// What an Envoy of the both-ends part is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The sidecar of [`DB_SERVICE`]'s pod, its inbound side: deciding each connection on the
    /// caller's mTLS identity.
    Destination,
    /// A caller of [`DB_SERVICE`] over mesh mTLS, with the filter at its own end or without.
    Caller { filter: bool },
}

/// One Envoy of the both-ends part: prod's database behind its own sidecar, and the callers that
/// reach it over mesh mTLS, each with a workload certificate made at demo time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    /// The file is `demo/sidecar-<name>.yaml`, the compose service `sidecar-<name>`.
    pub name: &'static str,
    /// The workload's namespace (`NAMESPACE` node metadata, and its SPIFFE id).
    pub namespace: &'static str,
    /// Its service account (`SERVICE_ACCOUNT` node metadata, and its SPIFFE id).
    pub service_account: &'static str,
    pub pod: &'static str,
    pub app: &'static str,
    /// `LABELS` node metadata.
    pub labels: &'static [(&'static str, &'static str)],
    pub role: Role,
    /// One line for the file's header.
    pub about: &'static str,
}

impl End {
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub fn spiffe_id(&self) -> String {
        crate::mtls::workload_files(
            std::path::Path::new(""),
            TRUST_DOMAIN,
            self.namespace,
            self.service_account,
        )
        .spiffe_id
    }
}

/// The both-ends Envoys, in the order of their port ranges.
pub const ENDS: [End; 3] = [
    End {
        name: "prod-db",
        namespace: "prod",
        service_account: "cockroachdb",
        pod: "cockroachdb-0",
        app: "cockroachdb",
        labels: &[("app.kubernetes.io/name", "cockroachdb")],
        role: Role::Destination,
        about: "the sidecar of prod's CockroachDB pod, its INBOUND side: the filter at the \
                destination's end, deciding each connection on the caller's verified mTLS \
                identity, in front of the database (the mesh's cockroachdb.prod:26257 listener)",
    },
    End {
        name: "prod-tcp",
        namespace: "prod",
        service_account: "orders",
        pod: "orders-5d8f7c9b6-x2x7q",
        app: "orders",
        labels: &[("app.kubernetes.io/name", "orders"), ("version", "v1")],
        role: Role::Caller { filter: true },
        about: "the TCP side of prod's orders pod's sidecar: its outbound listener for \
                cockroachdb.prod:26257 with the filter (the caller's end), then Istio's mesh \
                mTLS with prod's certificate to prod's database sidecar",
    },
    End {
        name: "uat-bypass",
        namespace: "uat",
        service_account: "orders",
        pod: "orders-7c6b5d4f8-p4q9r",
        app: "orders",
        labels: &[("app.kubernetes.io/name", "orders"), ("version", "v2")],
        role: Role::Caller { filter: false },
        about: "the bypass: uat's orders pod with a proxy of its own that has NO tenant-egress \
                filter (the tenant controls its pod spec), presenting uat's valid workload \
                certificate with Istio's SNI for cockroachdb.prod:26257",
    },
];

/// The both-ends Envoy called `name`.
pub fn end(name: &str) -> Option<&'static End> {
    ENDS.iter().find(|e| e.name == name)
}

/// Where the workload certificates are, relative to the Envoys' working directory (as the
/// filter is, [`WASM_RELATIVE`]). Made at demo time (`tenant-egress-demo certs`); never
/// committed.
pub const PKI_RELATIVE: &str = "./pki";

/// The label of the mesh listener that plays "the internet": where PassthroughCluster sends a
/// request whose Host matches no virtual host.
pub const INTERNET: &str = "internet";

/// The file name of the filter, relative to the Envoys' working directory: `target/demo/`
/// (`scripts/demo.sh` copies the module there) or `/work` (where docker compose mounts
/// `target/dist/`).
pub const WASM_RELATIVE: &str = "./tenant_egress_filter.wasm";

/// The sidecar `sc` as a kit [`EnvoyConfig`]: its identity, every service and the external
/// ServiceEntry, and the filter (loading `wasm`) with `policy_json`.
pub fn sidecar_config(sc: &Sidecar, policy_json: &str, wasm: &str) -> EnvoyConfig {
    let mut cfg = EnvoyConfig::new(sc.namespace.unwrap_or("unknown"))
        .pod(sc.pod)
        .app(sc.app);
    if sc.namespace.is_none() {
        cfg = cfg.without_namespace_metadata();
    }
    for (k, v) in sc.labels {
        cfg = cfg.label(k, v);
    }
    for s in &SERVICES {
        cfg = cfg.service(s.name, s.namespace, &[s.port]);
    }
    let (host, ns, port) = EXTERNAL;
    cfg.service_entry(host, ns, &[port])
        .wasm_filter(policy_json)
        .wasm_file(wasm)
}

/// Every port the demo uses, all on 127.0.0.1.
///
/// The fixed ones ([`Ports::fixed`]) are in the 15xxx range, avoiding the ports Istio's own
/// proxy uses (15000, 15001, 15004, 15006, 15008, 15020, 15021, 15090):
///
/// ```text
///   15100        mesh admin
///   15101-15107  the mesh's services (one listener each: "the pods" behind the service)
///   15108        the external wildcard ServiceEntry *.example.com:80
///   15109        "the internet": where PassthroughCluster sends unknown destinations
///   15201-15206  one outbound listener per sidecar (what the application talks to)
///   15301-15306  the admin port of each sidecar (/stats, /ready, /logging, ...)
///   15401-15403  both ends: prod-db's inbound listener (mTLS, and plaintext to be refused),
///                prod-tcp's and uat-bypass's listeners for cockroachdb.prod:26257
///   15501-15503  their admin ports
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ports {
    pub mesh_admin: u16,
    /// One per [`SERVICES`] entry, then the external ServiceEntry's.
    pub upstreams: Vec<u16>,
    pub internet: u16,
    /// (listener, admin) per [`SIDECARS`] entry.
    pub sidecars: Vec<(u16, u16)>,
    /// (listener, admin) per [`ENDS`] entry.
    pub ends: Vec<(u16, u16)>,
}

impl Ports {
    /// The demo's fixed ports (see the type's docs).
    pub fn fixed() -> Ports {
        let n = SERVICES.len() as u16;
        Ports {
            mesh_admin: 15100,
            upstreams: (15101..15101 + n + 1).collect(),
            internet: 15101 + n + 1,
            sidecars: (0..SIDECARS.len() as u16)
                .map(|i| (15201 + i, 15301 + i))
                .collect(),
            ends: (0..ENDS.len() as u16)
                .map(|i| (15401 + i, 15501 + i))
                .collect(),
        }
    }

    /// Free ports (for tests, which must not use fixed ones).
    pub fn free() -> Ports {
        let mut free = crate::free_ports(Ports::fixed().all().len()).into_iter();
        let mut next = || free.next().unwrap_or_default();
        let fixed = Ports::fixed();
        Ports {
            mesh_admin: next(),
            upstreams: fixed.upstreams.iter().map(|_| next()).collect(),
            internet: next(),
            sidecars: fixed.sidecars.iter().map(|_| (next(), next())).collect(),
            ends: fixed.ends.iter().map(|_| (next(), next())).collect(),
        }
    }

    /// Every port with what uses it, in a stable order.
    pub fn all(&self) -> Vec<(u16, String)> {
        let mut out = vec![(self.mesh_admin, "mesh admin".to_string())];
        for u in self.upstreams() {
            out.push((u.port, format!("mesh upstream {}", u.label)));
        }
        for (sc, &(listener, admin)) in SIDECARS.iter().zip(&self.sidecars) {
            out.push((listener, format!("sidecar-{} listener", sc.name)));
            out.push((admin, format!("sidecar-{} admin", sc.name)));
        }
        for (e, &(listener, admin)) in ENDS.iter().zip(&self.ends) {
            out.push((listener, format!("sidecar-{} listener", e.name)));
            out.push((admin, format!("sidecar-{} admin", e.name)));
        }
        out
    }

    /// The ports of sidecar `name`.
    pub fn sidecar(&self, name: &str) -> Option<StandalonePorts> {
        let i = SIDECARS.iter().position(|s| s.name == name)?;
        let &(listener, admin) = self.sidecars.get(i)?;
        Some(StandalonePorts {
            listener,
            admin,
            passthrough: self.internet,
        })
    }

    /// The (listener, admin) ports of both-ends Envoy `name`.
    pub fn end(&self, name: &str) -> Option<(u16, u16)> {
        let i = ENDS.iter().position(|e| e.name == name)?;
        self.ends.get(i).copied()
    }

    /// The mesh's listeners: every registry entry of a sidecar (labelled as the kit labels
    /// upstreams, `<svc>.<ns>:<port>` or `<host>:<port>`), then [`INTERNET`].
    pub fn upstreams(&self) -> Vec<Upstream> {
        let registry = sidecar_config(&SIDECARS[0], "", WASM_RELATIVE).registry();
        let mut out: Vec<Upstream> = registry
            .iter()
            .zip(&self.upstreams)
            .map(|(r, &port)| Upstream {
                label: r.label(),
                port,
                stat_prefix: upstream_stat_prefix(&r.name, &r.namespace, r.port),
            })
            .collect();
        out.push(Upstream {
            label: INTERNET.into(),
            port: self.internet,
            stat_prefix: format!("upstream_{INTERNET}"),
        });
        out
    }

    /// The mesh port playing [`DB_SERVICE`]'s pods: the application behind the destination's
    /// sidecar.
    pub fn db_port(&self) -> u16 {
        self.upstream_port(&db_registry())
    }

    /// The mesh port playing registry entry `r`.
    pub fn upstream_port(&self, r: &RegistryPort) -> u16 {
        let label = r.label();
        self.upstreams()
            .into_iter()
            .find(|u| u.label == label)
            .map(|u| u.port)
            .unwrap_or(self.internet)
    }

    /// `demo/ports.env`: the ports as shell variables, for `scripts/demo.sh`.
    pub fn to_env(&self) -> String {
        let mut out = String::from(
            "# GENERATED by `tenant-egress-demo render` from tests/src/demo/topology.rs: the demo's\n\
             # fixed ports, all on 127.0.0.1. Sourced by scripts/demo.sh.\n",
        );
        out.push_str(&format!("MESH_ADMIN={}\n", self.mesh_admin));
        let mesh: Vec<String> = self
            .upstreams()
            .iter()
            .map(|u| u.port.to_string())
            .collect();
        out.push_str(&format!("MESH_PORTS=\"{}\"\n", mesh.join(" ")));
        out.push_str(&format!("INTERNET={}\n", self.internet));
        let names: Vec<&str> = SIDECARS.iter().map(|s| s.name).collect();
        out.push_str(&format!("SIDECARS=\"{}\"\n", names.join(" ")));
        for (sc, (listener, admin)) in SIDECARS.iter().zip(&self.sidecars) {
            let key = sc.name.replace('-', "_");
            out.push_str(&format!("LISTENER_{key}={listener}\nADMIN_{key}={admin}\n"));
        }
        let names: Vec<&str> = ENDS.iter().map(|e| e.name).collect();
        out.push_str(&format!("ENDS=\"{}\"\n", names.join(" ")));
        for (e, (listener, admin)) in ENDS.iter().zip(&self.ends) {
            let key = e.name.replace('-', "_");
            out.push_str(&format!("LISTENER_{key}={listener}\nADMIN_{key}={admin}\n"));
        }
        out
    }

    /// Reads [`to_env`](Self::to_env)'s format back (e.g. a copy with other ports).
    pub fn from_env(text: &str) -> Result<Ports, String> {
        let env: BTreeMap<&str, &str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let port = |key: &str| -> Result<u16, String> {
            env.get(key)
                .ok_or_else(|| format!("no {key}"))?
                .parse()
                .map_err(|e| format!("{key}: {e}"))
        };
        let mesh: Vec<u16> = env
            .get("MESH_PORTS")
            .ok_or("no MESH_PORTS")?
            .split_whitespace()
            .map(|p| p.parse().map_err(|e| format!("MESH_PORTS: {e}")))
            .collect::<Result<_, String>>()?;
        let internet = port("INTERNET")?;
        let upstreams: Vec<u16> = mesh.into_iter().filter(|&p| p != internet).collect();
        if upstreams.len() != SERVICES.len() + 1 {
            return Err(format!(
                "MESH_PORTS: {} service ports, the topology has {}",
                upstreams.len(),
                SERVICES.len() + 1
            ));
        }
        let pair = |name: &str| -> Result<(u16, u16), String> {
            let key = name.replace('-', "_");
            Ok((
                port(&format!("LISTENER_{key}"))?,
                port(&format!("ADMIN_{key}"))?,
            ))
        };
        let sidecars = SIDECARS
            .iter()
            .map(|sc| pair(sc.name))
            .collect::<Result<_, String>>()?;
        let ends = ENDS
            .iter()
            .map(|e| pair(e.name))
            .collect::<Result<_, String>>()?;
        Ok(Ports {
            mesh_admin: port("MESH_ADMIN")?,
            upstreams,
            internet,
            sidecars,
            ends,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_ports_are_distinct_and_round_trip_through_ports_env() {
        let fixed = Ports::fixed();
        let all = fixed.all();
        let mut ports: Vec<u16> = all.iter().map(|(p, _)| *p).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), all.len(), "{all:?}");
        assert_eq!(ports.len(), 28);
        assert_eq!((ports[0], ports[27]), (15100, 15503));
        assert_eq!(Ports::from_env(&fixed.to_env()), Ok(fixed.clone()));
        let free = Ports::free();
        assert_eq!(Ports::from_env(&free.to_env()), Ok(free));
        assert!(Ports::from_env("MESH_ADMIN=1").is_err());
    }

    #[test]
    fn every_registry_entry_has_its_own_mesh_listener() {
        let ports = Ports::fixed();
        let labels: Vec<String> = ports.upstreams().into_iter().map(|u| u.label).collect();
        assert_eq!(labels.len(), SERVICES.len() + 2);
        assert_eq!(labels[0], "cockroachdb.prod:26257");
        assert_eq!(labels[7], "*.example.com:80");
        assert_eq!(labels[8], INTERNET);
        let cfg = sidecar_config(&SIDECARS[0], "{}", WASM_RELATIVE);
        for r in cfg.registry() {
            assert_ne!(ports.upstream_port(&r), ports.internet, "{r:?}");
        }
    }
}
