//! Both ends: prod's database behind its own sidecar, which decides every connection on the
//! caller's verified mTLS identity, and the connections that show what that adds. The caller's
//! own sidecar runs in a pod its tenant controls, so the tenant can switch its filter off
//! (`sidecar.istio.io/inject: "false"`, `excludeOutboundPorts`, a proxy of its own); the
//! destination's sidecar is where it cannot.
//!
//! - [`render_end`]: the Envoys of [`ENDS`] (the destination's inbound listener, and the two
//!   callers that reach it over mesh mTLS), from the test kit's pieces ([`crate::mtls`],
//!   [`crate::tcp`]) as `tests/tests/both_ends.rs` wires them;
//! - [`CONNECTIONS`] and [`run`]: each connection checked, like the request table's rows,
//!   against the policy (the core's decision at each end it crosses) and the running Envoys
//!   (what came back, the deciding Envoys' `tenant_egress.*` counters, and the bytes that
//!   reached the database through the destination's `inbound|26257||` cluster).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tenant_egress_core::decision::Protocol;
use tenant_egress_core::inbound::{istio_sni_for_cluster, Inbound};
use tenant_egress_core::{Policy, Reason, Request, Source, Target};

use super::requests::{counted_since, filter_counters, Outcome, COUNTER_WAIT};
use super::topology::{db_registry, end, End, Ports, Role, DB_SERVICE, ENDS, TRUST_DOMAIN};
use crate::envoy::{admin_stats, stat};
use crate::mtls::{ca_file, downstream_tls, upstream_tls, workload_files};
use crate::tcp::{network_wasm_filter_file, tcp_proxy_filter};

/// The destination's inbound cluster (Istio's `inbound|<target port>||`): the database itself.
pub fn inbound_cluster() -> String {
    format!("inbound|{}||", DB_SERVICE.port)
}

/// The database's FQDN, as the SNI and `istio.services` name it.
pub fn db_fqdn() -> String {
    db_registry().host
}

/// The outbound cluster a caller's sidecar routes the database's port to.
pub fn db_outbound_cluster() -> String {
    db_registry().cluster()
}

/// The database's label in the mesh (`x-upstream`, `upstream=<label>`).
pub fn db_label() -> String {
    db_registry().label()
}

/// The SNI Istio's client sidecar sets for the database's service port (the kit's, which is the
/// core's: one copy of Istio's grammar).
pub fn db_sni() -> String {
    istio_sni_for_cluster(&db_outbound_cluster()).unwrap_or_default()
}

/// Root ids of the network filter at each end (as on Istio's TCP chains, a NETWORK plugin).
pub const INBOUND_ROOT_ID: &str = "tenant-egress-inbound-tcp";
pub const OUTBOUND_ROOT_ID: &str = "tenant-egress-tcp";

fn socket(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

fn istio_services() -> Value {
    json!({"filter_metadata": {"istio": {"services": [{
        "host": db_fqdn(), "name": DB_SERVICE.name, "namespace": DB_SERVICE.namespace,
    }]}}})
}

fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(port)}}]}]},
    })
}

/// The Envoy of [`ENDS`] entry `e` on `ports`, loading the filter from `wasm` and the
/// certificates from the directory `pki` (both as Envoy will read them: relative to its working
/// directory in the committed files).
pub fn render_end(e: &End, policy_json: &str, ports: &Ports, wasm: &str, pki: &str) -> Value {
    let (listener, admin) = ports
        .end(e.name)
        .unwrap_or_else(|| panic!("no ports for {}: Ports does not match ENDS", e.name));
    let pki = Path::new(pki);
    let me = workload_files(pki, TRUST_DOMAIN, e.namespace, e.service_account);
    let ca = ca_file(pki);
    let labels: serde_json::Map<String, Value> = e
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let node = json!({
        "id": format!("sidecar~127.0.0.1~{}.{}~{}.svc.cluster.local", e.pod, e.namespace, e.namespace),
        "cluster": format!("{}.{}", e.app, e.namespace),
        "metadata": {"NAMESPACE": e.namespace, "SERVICE_ACCOUNT": e.service_account,
                     "NAME": e.pod, "LABELS": labels},
    });
    let (listeners, clusters) = match e.role {
        Role::Destination => {
            let cluster = inbound_cluster();
            // The namespace's destination shard, as `tenant-egress generate` cuts it.
            let shard = crate::ends::destination_policy(policy_json, e.namespace);
            let filters = json!([
                network_wasm_filter_file(INBOUND_ROOT_ID, &shard, wasm),
                tcp_proxy_filter(&cluster),
            ]);
            // Istio's inbound listener for the port, as under PeerAuthentication PERMISSIVE: an
            // mTLS chain (client certificate required and verified) and a plaintext chain, both
            // through the filter, so that the filter's own refusal of plaintext shows. Under
            // STRICT (what `tenant-egress generate` emits) Istio has no plaintext chain and the
            // handshake refuses plaintext before the filter.
            let listener = json!({
                "name": format!("virtualInbound_{}", DB_SERVICE.port),
                "address": socket(listener),
                "enable_reuse_port": false,
                "traffic_direction": "INBOUND",
                "listener_filters": [{
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"},
                }],
                "filter_chains": [
                    {
                        "name": format!("inbound_mtls_{}", DB_SERVICE.port),
                        "filter_chain_match": {"transport_protocol": "tls"},
                        "transport_socket": downstream_tls(&me, &ca),
                        "filters": filters,
                    },
                    {
                        "name": format!("inbound_plaintext_{}", DB_SERVICE.port),
                        "filter_chain_match": {"transport_protocol": "raw_buffer"},
                        "filters": filters,
                    },
                ],
            });
            let mut app = static_cluster(&cluster, ports.db_port());
            app["metadata"] = istio_services();
            (vec![listener], vec![app])
        }
        Role::Caller { filter } => {
            let cluster = db_outbound_cluster();
            let mut filters = Vec::new();
            if filter {
                filters.push(network_wasm_filter_file(
                    OUTBOUND_ROOT_ID,
                    policy_json,
                    wasm,
                ));
            }
            filters.push(tcp_proxy_filter(&cluster));
            let listener = json!({
                "name": format!("outbound_tcp_{}", DB_SERVICE.port),
                "address": socket(listener),
                "enable_reuse_port": false,
                "traffic_direction": "OUTBOUND",
                "filter_chains": [{"filters": filters}],
            });
            let destination = ports.end(DESTINATION).map(|(l, _)| l).unwrap_or_default();
            let mut db = static_cluster(&cluster, destination);
            db["metadata"] = istio_services();
            db["transport_socket"] = upstream_tls(&me, &ca, &db_sni());
            (vec![listener], vec![db])
        }
    };
    json!({
        "node": node,
        "admin": {"address": socket(admin)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    })
}

/// The [`ENDS`] entry of the destination.
pub const DESTINATION: &str = "prod-db";

/// Makes the demo's CA and the workload certificate of every [`ENDS`] entry in `dir` (the
/// Envoys' `pki/`); returns the SPIFFE ids. Fresh keys every time: nothing here is committed.
pub fn make_certs(dir: &Path) -> Result<Vec<String>, String> {
    let pki = crate::mtls::Pki::create(dir, TRUST_DOMAIN)?;
    ENDS.iter()
        .map(|e| Ok(pki.try_workload(e.namespace, e.service_account)?.spiffe_id))
        .collect()
}

/// How a connection reaches prod's database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Through the listener of the [`ENDS`] caller of that name.
    Caller(&'static str),
    /// Straight to the destination's inbound listener, in plaintext: no certificate at all.
    Plaintext,
}

/// One connection to prod's database.
#[derive(Clone, Copy, Debug)]
pub struct Connection {
    pub via: Via,
    /// The caller's end; `None`: no filter runs there.
    pub at_caller: Option<Outcome>,
    /// prod's database sidecar (unless the caller's end already refused it).
    pub at_destination: Outcome,
}

use Outcome::{Allow, Deny};

/// The connections of the both-ends part.
pub const CONNECTIONS: [Connection; 3] = [
    // uat skips its own filter and presents its valid certificate: refused at prod's end.
    Connection {
        via: Via::Caller("uat-bypass"),
        at_caller: None,
        at_destination: Deny(Reason::NotAllowed),
    },
    // No certificate at all: refused at prod's end.
    Connection {
        via: Via::Plaintext,
        at_caller: None,
        at_destination: Deny(Reason::NoPeerIdentity),
    },
    // prod's own pod: allowed by its own sidecar and by its database's.
    Connection {
        via: Via::Caller("prod-tcp"),
        at_caller: Some(Allow),
        at_destination: Allow,
    },
];

impl Connection {
    /// The table's source column.
    pub fn source(&self) -> &'static str {
        match self.via {
            Via::Caller(name) => name,
            Via::Plaintext => "plaintext",
        }
    }

    /// What is sent, for the table.
    pub fn describe(&self) -> String {
        match self.via {
            Via::Caller(name) => {
                let e = end(name).unwrap_or_else(|| panic!("no caller {name}"));
                let filter = match e.role {
                    Role::Caller { filter: true } => "its filter, then mTLS",
                    _ => "no filter, mTLS",
                };
                format!("{filter} as {}", e.spiffe_id())
            }
            Via::Plaintext => "plaintext to prod-db, no certificate".into(),
        }
    }

    /// Whether the caller's end lets it through to prod's database sidecar.
    pub fn reaches_destination(&self) -> bool {
        self.at_caller.is_none_or(|o| o.reaches_upstream())
    }

    /// Whether the database receives its bytes.
    pub fn reaches_database(&self) -> bool {
        self.reaches_destination() && self.at_destination.reaches_upstream()
    }

    fn caller(&self) -> Option<&'static End> {
        match self.via {
            Via::Caller(name) => end(name),
            Via::Plaintext => None,
        }
    }

    /// The policy's answer at the caller's end (`None`: no filter there): the core's decision
    /// for the connection as the caller's network filter sees it.
    pub fn policy_at_caller(&self, policy: &Policy) -> Option<Outcome> {
        let e = self.caller()?;
        if e.role != (Role::Caller { filter: true }) {
            return None;
        }
        let cluster = db_outbound_cluster();
        let d = policy.decide(&Request {
            source: Source {
                namespace: Some(e.namespace),
                labels: e.labels,
            },
            target: Target {
                cluster: Some(&cluster),
                destination_namespace: Some(DB_SERVICE.namespace),
                protocol: Protocol::Tcp,
                ..Target::default()
            },
        });
        Some(Outcome::of(&d))
    }

    /// The policy's answer at prod's database sidecar: the core's inbound decision for what
    /// that sidecar sees (the caller's SPIFFE id and Istio SNI; nothing in plaintext).
    pub fn policy_at_destination(&self, policy: &Policy) -> Outcome {
        let peer = self.caller().map(|e| e.spiffe_id());
        let sni = self.caller().map(|_| db_sni());
        let fqdn = db_fqdn();
        let d = policy.decide_inbound(&Inbound {
            namespace: end(DESTINATION).map(|e| e.namespace),
            peer: peer.as_deref().map(str::as_bytes),
            sni: sni.as_deref().map(str::as_bytes),
            services: &[fqdn.as_str()],
            protocol: Protocol::Tcp,
            ..Inbound::default()
        });
        Outcome::of(&d)
    }
}

/// One connection, run.
#[derive(Clone, Debug)]
pub struct ConnectionResult {
    pub connection: Connection,
    /// The policy's answers (the core) at the caller's end and at the destination.
    pub policy_at_caller: Option<Outcome>,
    pub policy_at_destination: Outcome,
    /// What each end's filter counted (`None`: no filter at the caller's end, or a connection
    /// the caller's end refused, which the destination never sees).
    pub counted_at_caller: Option<Result<Outcome, String>>,
    pub counted_at_destination: Option<Result<Outcome, String>>,
    /// What came back to the caller (nothing: closed on it).
    pub reply: Vec<u8>,
    /// Bytes the destination's sidecar sent on to the database (its `inbound|26257||`
    /// cluster's `upstream_cx_tx_bytes_total`, before and after).
    pub app_bytes: u64,
    pub problems: Vec<String>,
}

impl ConnectionResult {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The status line's code and the `x-upstream` header of the reply, if it is HTTP.
    pub fn answered(&self) -> (Option<u16>, Option<String>) {
        let text = String::from_utf8_lossy(&self.reply);
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.strip_prefix("HTTP/1.1 "))
            .and_then(|l| l.get(..3))
            .and_then(|c| c.parse().ok());
        let upstream = lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("x-upstream"))
            .map(|(_, v)| v.trim().to_string());
        (status, upstream)
    }
}

/// The database's bytes so far.
fn app_bytes(admin: u16) -> std::io::Result<u64> {
    let stats = admin_stats(admin)?;
    let name = format!("cluster.{}.upstream_cx_tx_bytes_total", inbound_cluster());
    Ok(stat(&stats, &name).unwrap_or(0))
}

/// Connects to 127.0.0.1:`port`, sends an HTTP/1.1 request for the database, and reads until
/// the connection closes (or [`COUNTER_WAIT`] passes: a connection held open is a problem the
/// caller reports). An error: nothing listens there (the demo is not running).
fn exchange(port: u16) -> std::io::Result<Vec<u8>> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(COUNTER_WAIT))?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: tenant-egress-demo\r\nConnection: close\r\n\r\n",
        db_label()
    );
    let mut got = Vec::new();
    if s.write_all(request.as_bytes()).is_err() {
        return Ok(got);
    }
    let _ = s.read_to_end(&mut got);
    Ok(got)
}

/// Runs every connection of [`CONNECTIONS`] against the demo on `ports` (see the module docs).
/// An I/O error means the demo is not (or not fully) running.
pub fn run(policy: &Policy, ports: &Ports) -> std::io::Result<Vec<ConnectionResult>> {
    let (db_listener, db_admin) = ports
        .end(DESTINATION)
        .unwrap_or_else(|| panic!("no ports for {DESTINATION}"));
    let inbound_prefix = "inbound.connections.";
    let outbound_prefix = "connections.";
    let mut out = Vec::new();
    for c in CONNECTIONS {
        let caller_admin = match c.caller() {
            Some(e) if e.role == (Role::Caller { filter: true }) => {
                ports.end(e.name).map(|(_, admin)| admin)
            }
            _ => None,
        };
        let port = match c.via {
            Via::Caller(name) => ports
                .end(name)
                .map(|(l, _)| l)
                .unwrap_or_else(|| panic!("no ports for {name}")),
            Via::Plaintext => db_listener,
        };
        let before_db: BTreeMap<String, u64> = filter_counters(db_admin)?;
        let before_caller = caller_admin.map(filter_counters).transpose()?;
        let bytes_before = app_bytes(db_admin)?;
        let reply = exchange(port)?;
        let counted_at_caller = match (caller_admin, &before_caller) {
            (Some(admin), Some(before)) => Some(counted_since(before, admin, outbound_prefix)?.0),
            _ => None,
        };
        let counted_at_destination = if c.reaches_destination() {
            Some(counted_since(&before_db, db_admin, inbound_prefix)?.0)
        } else {
            None
        };
        let app = app_bytes(db_admin)?.saturating_sub(bytes_before);
        let policy_at_caller = c.policy_at_caller(policy);
        let policy_at_destination = c.policy_at_destination(policy);
        let mut result = ConnectionResult {
            connection: c,
            policy_at_caller,
            policy_at_destination,
            counted_at_caller,
            counted_at_destination,
            reply,
            app_bytes: app,
            problems: Vec::new(),
        };
        result.problems = problems(&result);
        out.push(result);
    }
    Ok(out)
}

fn problems(r: &ConnectionResult) -> Vec<String> {
    let c = &r.connection;
    let mut problems = Vec::new();
    if r.policy_at_caller != c.at_caller {
        problems.push(format!(
            "the table expects {:?} at the caller's end but demo/policy/ says {:?} \
             (tenant_egress_core)",
            c.at_caller, r.policy_at_caller
        ));
    }
    if c.reaches_destination() && r.policy_at_destination != c.at_destination {
        problems.push(format!(
            "the table expects {} at prod's database sidecar but demo/policy/ says {} \
             (tenant_egress_core)",
            c.at_destination, r.policy_at_destination
        ));
    }
    for (end, counted, expect) in [
        ("the caller's end", &r.counted_at_caller, c.at_caller),
        (
            "prod's database sidecar",
            &r.counted_at_destination,
            c.reaches_destination().then_some(c.at_destination),
        ),
    ] {
        match (counted, expect) {
            (Some(Err(why)), _) => problems.push(format!("{end}: {why}")),
            (Some(Ok(got)), Some(want)) if *got != want => {
                problems.push(format!("{end}: expected {want}, the filter counted {got}"))
            }
            _ => {}
        }
    }
    let (status, upstream) = r.answered();
    if c.reaches_database() {
        if status != Some(200) || upstream.as_deref() != Some(db_label().as_str()) {
            problems.push(format!(
                "expected 200 from {} but got status {status:?}, x-upstream: {upstream:?}",
                db_label()
            ));
        }
        if r.app_bytes == 0 {
            problems.push("no byte reached the database".into());
        }
    } else {
        if !r.reply.is_empty() {
            problems.push(format!(
                "expected the connection closed with nothing back, got {:?}",
                String::from_utf8_lossy(&r.reply)
            ));
        }
        if r.app_bytes != 0 {
            problems.push(format!(
                "{} bytes of a refused connection reached the database",
                r.app_bytes
            ));
        }
    }
    problems
}

/// The both-ends table, in the request table's style (its summary line is the report's).
pub fn format_connections(results: &[ConnectionResult]) -> String {
    let header = [
        "caller",
        "connection to cockroachdb.prod:26257",
        "caller's end",
        "prod's db sidecar",
        "reply",
        "bytes to the db",
        "check",
    ]
    .map(String::from);
    let show = |o: &Option<Result<Outcome, String>>| match o {
        None => "-".to_string(),
        Some(Ok(o)) => o.to_string(),
        Some(Err(_)) => "?".to_string(),
    };
    let rows: Vec<[String; 7]> = results
        .iter()
        .map(|r| {
            let reply = match r.answered() {
                (Some(status), Some(up)) => format!("{status} from {up}"),
                (Some(status), None) => status.to_string(),
                _ if r.reply.is_empty() => "closed, nothing back".into(),
                _ => "(not HTTP)".into(),
            };
            let caller = match (&r.counted_at_caller, r.connection.at_caller) {
                (None, None) => "no filter".to_string(),
                (c, _) => show(c),
            };
            [
                r.connection.source().to_string(),
                r.connection.describe(),
                caller,
                show(&r.counted_at_destination),
                reply,
                r.app_bytes.to_string(),
                if r.ok() { "ok" } else { "FAIL" }.to_string(),
            ]
        })
        .collect();
    let table = super::TextTable::new(&header, &rows);
    let line = |cells: &[String]| table.line(cells);
    let mut out = String::from(
        "Both ends: prod's database behind its own sidecar (sidecar-prod-db), deciding each\n\
         connection on the caller's verified mTLS identity (SPIFFE id) and Istio's SNI\n\n",
    );
    out += &table.head(&header);
    for cells in &rows {
        out += &line(cells);
    }
    out += "\ncaller's end and prod's db sidecar: each filter's own counters (tenant_egress.connections.*\n\
            and tenant_egress.inbound.connections.*). bytes to the db: what prod-db's inbound|26257||\n\
            cluster sent the database.\n";
    out += &format!(
        "  {:<20} the caller's pod skipped its own filter: only the destination can refuse it\n",
        "no filter"
    );
    let mut listed = Vec::new();
    for r in results
        .iter()
        .filter_map(|r| r.connection.at_destination.reason())
    {
        if !listed.contains(&r) {
            listed.push(r);
            out += &format!(
                "  {:<20} {}\n",
                r.as_str(),
                super::requests::explain_reason(r)
            );
        }
    }
    for r in results.iter().filter(|r| !r.ok()) {
        out += &format!(
            "FAIL {} ({}): {}\n",
            r.connection.source(),
            r.connection.describe(),
            r.problems.join("; ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::committed_policy as policy;

    #[test]
    fn the_connections_are_what_the_policy_says_at_each_end() {
        let policy = policy();
        for c in CONNECTIONS {
            assert_eq!(c.policy_at_caller(&policy), c.at_caller, "{c:?}");
            assert_eq!(c.policy_at_destination(&policy), c.at_destination, "{c:?}");
        }
    }

    #[test]
    fn a_connection_that_contradicts_the_policy_is_caught() {
        let policy = policy();
        let wrong = Connection {
            via: Via::Caller("uat-bypass"),
            at_caller: None,
            at_destination: Allow,
        };
        assert_eq!(
            wrong.policy_at_destination(&policy),
            Deny(Reason::NotAllowed)
        );
        let r = ConnectionResult {
            connection: wrong,
            policy_at_caller: None,
            policy_at_destination: wrong.policy_at_destination(&policy),
            counted_at_caller: None,
            counted_at_destination: Some(Ok(Deny(Reason::NotAllowed))),
            reply: Vec::new(),
            app_bytes: 0,
            problems: Vec::new(),
        };
        assert_eq!(problems(&r).len(), 4, "{:?}", problems(&r));
    }

    #[test]
    fn the_sni_is_istios_for_the_database() {
        assert_eq!(
            db_sni(),
            "outbound_.26257_._.cockroachdb.prod.svc.cluster.local"
        );
        assert_eq!(
            end("uat-bypass").unwrap().spiffe_id(),
            "spiffe://cluster.local/ns/uat/sa/orders"
        );
    }
}
