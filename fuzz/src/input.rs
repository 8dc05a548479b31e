//! The `decide` target's structured input: a policy and a few requests, decoded from the fuzz
//! bytes with `arbitrary`.
//!
//! The byte format is deliberately simple (one byte per choice, a length byte before raw
//! strings) so that [`encode_vector_case`] can write the request vectors as seed inputs, and so
//! that libFuzzer's mutations map to small changes of the input. Most fields are drawn from a
//! vocabulary built around the policy (its namespaces, the mesh name forms `svc`, `svc.ns`,
//! `svc.ns.svc`, FQDNs, external and wildcard hosts, Istio cluster names), so requests reach the
//! allow paths as well as the malformed ones; any field can also be raw bytes.

use std::fmt;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{json, Map, Value};
use tenant_egress_core::decision::Protocol;
use tenant_egress_core::explain::RequestSpec;
use tenant_egress_core::vectors;
use tenant_egress_core::{Request, Source, Target};

/// Where the policy document comes from.
#[derive(Clone, PartialEq)]
pub enum PolicySource {
    /// One of the named policies of `config/core/testdata/vectors.json` (index in name order).
    Vector(usize),
    /// A document from the small grammar in [`grammar_policy`].
    Grammar(Value),
    /// Raw bytes (mostly invalid: exercises validation under the decide target).
    Raw(Vec<u8>),
}

impl fmt::Debug for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::Vector(i) => {
                let name = vector_policies().get(*i).map_or("?", |(n, _)| n.as_str());
                write!(f, "Vector({i}: {name})")
            }
            PolicySource::Grammar(v) => write!(f, "Grammar({v})"),
            PolicySource::Raw(b) => write!(f, "Raw({:?})", String::from_utf8_lossy(b)),
        }
    }
}

/// One generated request (owned; borrow it with [`GenRequest::as_request`]).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct GenRequest {
    /// Source namespace.
    pub namespace: Option<String>,
    /// Source pod labels.
    pub labels: Vec<(String, String)>,
    /// Raw `:authority` bytes.
    pub authority: Option<Vec<u8>>,
    /// More than one `:authority`/`host`.
    pub authority_repeated: bool,
    /// Upstream cluster name.
    pub cluster: Option<String>,
    /// Destination namespace from cluster metadata.
    pub destination_namespace: Option<String>,
    /// Original destination address.
    pub destination_address: Option<String>,
    /// An HTTP request, or a TCP/TLS connection (the authority is then the SNI).
    pub protocol: Protocol,
}

impl fmt::Debug for GenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenRequest")
            .field("namespace", &self.namespace)
            .field("labels", &self.labels)
            .field(
                "authority",
                &self
                    .authority
                    .as_ref()
                    .map(|a| String::from_utf8_lossy(a).into_owned()),
            )
            .field("authority_repeated", &self.authority_repeated)
            .field("cluster", &self.cluster)
            .field("destination_namespace", &self.destination_namespace)
            .field("destination_address", &self.destination_address)
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl GenRequest {
    /// The labels as borrowed pairs, for [`GenRequest::as_request`].
    pub fn labels(&self) -> Vec<(&str, &str)> {
        self.labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Borrows this request; `labels` must come from [`GenRequest::labels`].
    pub fn as_request<'a>(&'a self, labels: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            source: Source {
                namespace: self.namespace.as_deref(),
                labels,
            },
            target: Target {
                authority: self.authority.as_deref(),
                authority_repeated: self.authority_repeated,
                cluster: self.cluster.as_deref(),
                destination_namespace: self.destination_namespace.as_deref(),
                destination_address: self.destination_address.as_deref(),
                protocol: self.protocol,
            },
        }
    }
}

/// The whole `decide` input.
#[derive(Debug, Clone, PartialEq)]
pub struct DecideInput {
    /// The policy.
    pub policy: PolicySource,
    /// One to four requests against it.
    pub requests: Vec<GenRequest>,
}

/// The vectors' named policies, serialized, in name order (parsed once per process).
pub fn vector_policies() -> &'static [(String, Vec<u8>)] {
    static CELL: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    CELL.get_or_init(|| {
        let file = vectors::load().expect("embedded vectors parse");
        file.policies
            .iter()
            .map(|(name, doc)| {
                let bytes = serde_json::to_vec(doc).expect("a JSON value serializes");
                (name.clone(), bytes)
            })
            .collect()
    })
}

impl DecideInput {
    /// The policy document bytes.
    pub fn policy_document(&self) -> Vec<u8> {
        match &self.policy {
            PolicySource::Vector(i) => vector_policies()
                .get(*i)
                .map(|(_, b)| b.clone())
                .unwrap_or_default(),
            PolicySource::Grammar(v) => serde_json::to_vec(v).expect("a JSON value serializes"),
            PolicySource::Raw(b) => b.clone(),
        }
    }
}

// === vocabulary ===

const NS_POOL: &[&str] = &[
    "a",
    "b",
    "prod",
    "dev",
    "foo",
    "istio-system",
    "db",
    "shared",
];
const EXTRA_SOURCE_NS: &[&str] = &["istio-system", "unknown", "Prod", ""];
const SERVICES: &[&str] = &["web", "db", "helloworld", "cockroachdb", "pg", "x"];
const EXTERNAL: &[&str] = &[
    "api.example.com",
    "en.wikipedia.org",
    "wikipedia.org",
    "secret.wikipedia.org",
    "en.m.wikipedia.org",
    "evil.example",
];
const ODD_HOSTS: &[&str] = &[
    "10.0.0.1",
    "[2001:db8::1]",
    "[::ffff:10.0.0.1]",
    "user@web.prod",
    "web%2eprod",
    "web.prod\0.evil",
    "web.prod,web.dev",
    "w\u{e9}b.prod",
    "web..prod",
    "-web.prod",
    "1.2.3",
    "",
];
const PORTS: &[u16] = &[80, 443, 8080, 26257, 5432, 15014];
const PROTOCOLS: &[Option<&str>] = &[
    None,
    Some("HTTP"),
    Some("TCP"),
    Some("TLS"),
    Some("HTTPS"),
    Some("GRPC"),
];
const ODD_PORTS: &[&str] = &["0", "65536", "", "+80", "080"];
const DOMAINS: &[&str] = &["cluster.local", "corp.example"];
const LABEL_KEYS: &[&str] = &["app", "role", "app.kubernetes.io/name", "tier"];
const LABEL_VALUES: &[&str] = &["web", "batch", "batman-app", "db"];
const ADDRESSES: &[&str] = &[
    "10.0.0.1:80",
    "[2001:db8::1]:443",
    "1.2.3.4:8080",
    "127.0.0.1:15001",
    "not-an-address",
];

/// What the request fields are drawn from: the policy's own namespaces and domain.
struct Vocab {
    namespaces: Vec<String>,
    domain: String,
}

impl Vocab {
    fn of(doc: &[u8]) -> Vocab {
        let v: Value = serde_json::from_slice(doc).unwrap_or(Value::Null);
        let mut namespaces: Vec<String> = v
            .get("tenants")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("namespaces").and_then(Value::as_array))
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect();
        namespaces.extend(NS_POOL.iter().map(|s| (*s).to_owned()));
        let domain = v
            .get("clusterDomain")
            .and_then(Value::as_str)
            .unwrap_or("cluster.local")
            .to_owned();
        Vocab { namespaces, domain }
    }
}

/// One byte per choice; missing bytes read as 0 (so any prefix decodes).
struct Reader<'u, 'a> {
    u: &'u mut Unstructured<'a>,
}

impl Reader<'_, '_> {
    fn byte(&mut self) -> u8 {
        u8::arbitrary(self.u).unwrap_or(0)
    }

    fn pick<'t, T: ?Sized>(&mut self, items: &'t [&'t T]) -> &'t T {
        let i = usize::from(self.byte()) % items.len();
        items[i]
    }

    fn pick_owned<'t>(&mut self, items: &'t [String]) -> &'t str {
        let i = usize::from(self.byte()) % items.len();
        &items[i]
    }

    fn port(&mut self) -> u16 {
        let i = usize::from(self.byte()) % PORTS.len();
        PORTS[i]
    }

    /// `len` bytes (as many as are left).
    fn take(&mut self, len: usize) -> Vec<u8> {
        let n = len.min(self.u.len());
        self.u.bytes(n).map(<[u8]>::to_vec).unwrap_or_default()
    }

    /// A length byte, then that many bytes.
    fn raw(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte());
        self.take(len)
    }

    fn raw_str(&mut self) -> String {
        String::from_utf8_lossy(&self.raw()).into_owned()
    }
}

// Field tags: `tag % 4 == 0` absent, `== 1` raw (length byte + bytes), else from the vocabulary.
const ABSENT: u8 = 0;
const RAW: u8 = 1;

fn opt_field<'u, 'a, T>(
    r: &mut Reader<'u, 'a>,
    raw: impl FnOnce(&mut Reader<'u, 'a>) -> T,
    vocab: impl FnOnce(&mut Reader<'u, 'a>) -> T,
) -> Option<T> {
    match r.byte() % 4 {
        ABSENT => None,
        RAW => Some(raw(r)),
        _ => Some(vocab(r)),
    }
}

/// A mesh or external host name, in one of the forms a client may write.
fn gen_host(r: &mut Reader<'_, '_>, v: &Vocab, last_fqdn: &mut Option<String>) -> String {
    let svc = r.pick(SERVICES);
    let ns = r.pick_owned(&v.namespaces).to_owned();
    let fqdn = format!("{svc}.{ns}.svc.{}", v.domain);
    match r.byte() % 8 {
        0 => {
            *last_fqdn = Some(fqdn);
            svc.to_owned()
        }
        1 => {
            *last_fqdn = Some(fqdn);
            format!("{svc}.{ns}")
        }
        2 => {
            *last_fqdn = Some(fqdn);
            format!("{svc}.{ns}.svc")
        }
        3 | 4 => {
            *last_fqdn = Some(fqdn.clone());
            fqdn
        }
        5 => {
            let h = r.pick(EXTERNAL).to_owned();
            *last_fqdn = Some(h.clone());
            h
        }
        _ => r.pick(ODD_HOSTS).to_owned(),
    }
}

fn gen_authority(r: &mut Reader<'_, '_>, v: &Vocab, last_fqdn: &mut Option<String>) -> Vec<u8> {
    let mut host = gen_host(r, v, last_fqdn);
    let m = r.byte();
    if m & 1 != 0 {
        host = host.to_ascii_uppercase();
    }
    if m & 2 != 0 {
        host.push('.');
    }
    if m & 4 != 0 {
        host.push(':');
        if m & 8 != 0 {
            host.push_str(r.pick(ODD_PORTS));
        } else {
            host.push_str(&r.port().to_string());
        }
    }
    host.into_bytes()
}

fn gen_cluster(r: &mut Reader<'_, '_>, v: &Vocab, last_fqdn: &Option<String>) -> String {
    let form = r.byte() % 10;
    let port = r.port();
    match form {
        0 => "PassthroughCluster".into(),
        1 => "BlackHoleCluster".into(),
        2 => "InboundPassthroughCluster".into(),
        3 => format!("inbound|{port}||"),
        4..=6 => {
            let host = match last_fqdn {
                Some(h) => h.clone(),
                None => format!("web.{}.svc.{}", r.pick_owned(&v.namespaces), v.domain),
            };
            format!("outbound|{port}||{host}")
        }
        7 => format!("outbound|{port}|v1|*.wikipedia.org"),
        8 => {
            let ns = r.pick_owned(&v.namespaces).to_owned();
            format!(
                "outbound|{port}||{}.{ns}.svc.{}",
                r.pick(SERVICES),
                v.domain
            )
        }
        _ => format!("outbound|{port}||{}", r.pick(EXTERNAL)),
    }
}

fn gen_request(r: &mut Reader<'_, '_>, v: &Vocab) -> GenRequest {
    let namespace = opt_field(r, Reader::raw_str, |r| {
        let i = usize::from(r.byte()) % (v.namespaces.len() + EXTRA_SOURCE_NS.len());
        match v.namespaces.get(i) {
            Some(ns) => ns.clone(),
            None => EXTRA_SOURCE_NS[i - v.namespaces.len()].to_owned(),
        }
    });
    let nlabels = r.byte() % 3;
    let labels = (0..nlabels)
        .map(|_| {
            let tag = r.byte();
            if tag.is_multiple_of(2) {
                (r.raw_str(), r.raw_str())
            } else {
                (
                    r.pick(LABEL_KEYS).to_owned(),
                    r.pick(LABEL_VALUES).to_owned(),
                )
            }
        })
        .collect();
    let mut last_fqdn = None;
    let authority = opt_field(r, Reader::raw, |r| gen_authority(r, v, &mut last_fqdn));
    let authority_repeated = r.byte() % 8 == 7;
    let cluster = opt_field(r, Reader::raw_str, |r| gen_cluster(r, v, &last_fqdn));
    let destination_namespace = opt_field(r, Reader::raw_str, |r| {
        r.pick_owned(&v.namespaces).to_owned()
    });
    let destination_address = opt_field(r, Reader::raw_str, |r| r.pick(ADDRESSES).to_owned());
    let protocol = if r.byte() & 1 == 1 {
        Protocol::Tcp
    } else {
        Protocol::Http
    };
    GenRequest {
        namespace,
        labels,
        authority,
        authority_repeated,
        cluster,
        destination_namespace,
        destination_address,
        protocol,
    }
}

fn gen_host_entry(r: &mut Reader<'_, '_>, domain: &str) -> String {
    let exclude = if r.byte().is_multiple_of(6) { "~" } else { "" };
    let ns = match r.byte() % 6 {
        0 => "*",
        1 => ".",
        // `~/host` excludes in every namespace; an empty namespace is an error otherwise.
        2 if !exclude.is_empty() => "",
        2 => "*",
        _ => r.pick(NS_POOL),
    };
    let other_ns = r.pick(NS_POOL);
    let host = match r.byte() % 9 {
        0 | 1 => "*".to_owned(),
        2 => "*.example.com".to_owned(),
        3 => "*.wikipedia.org".to_owned(),
        4 => format!("{}.{other_ns}.svc.{domain}", r.pick(SERVICES)),
        5 => r.pick(EXTERNAL).to_owned(),
        6 => format!("*.{other_ns}.svc.{domain}"),
        7 => format!("*.svc.{domain}"),
        _ => format!("{}.{other_ns}", r.pick(SERVICES)),
    };
    format!("{exclude}{ns}/{host}")
}

fn gen_egress(r: &mut Reader<'_, '_>, domain: &str, n: u8) -> Vec<Value> {
    let mut used_ports = Vec::new();
    let mut catch_all = false;
    let mut out = Vec::new();
    for _ in 0..n {
        let hosts: Vec<String> = (0..1 + r.byte() % 4)
            .map(|_| gen_host_entry(r, domain))
            .collect();
        let choice = r.byte();
        if choice.is_multiple_of(3) && !catch_all {
            catch_all = true;
            out.push(json!({ "hosts": hosts }));
        } else {
            let port = PORTS[usize::from(choice) % PORTS.len()];
            if used_ports.contains(&port) {
                continue;
            }
            used_ports.push(port);
            let mut port = json!({ "number": port });
            if let Some(protocol) = PROTOCOLS[usize::from(r.byte()) % PROTOCOLS.len()] {
                port["protocol"] = json!(protocol);
            }
            out.push(json!({ "port": port, "hosts": hosts }));
        }
    }
    out
}

/// A small policy grammar: one to three tenants over a fixed namespace pool, each with up to
/// three egress listeners of Istio host entries (imports, exclusions, wildcards, `./*`,
/// named namespaces) and maybe one workload exception. Mostly valid documents.
fn grammar_policy(r: &mut Reader<'_, '_>) -> Value {
    let mut doc = Map::new();
    doc.insert("apiVersion".into(), json!("tenant-egress/v1"));
    match r.byte() % 3 {
        1 => {
            doc.insert("mode".into(), json!("enforce"));
        }
        2 => {
            doc.insert("mode".into(), json!("audit"));
        }
        _ => {}
    }
    match r.byte() % 3 {
        1 => {
            doc.insert("unknownSource".into(), json!("deny"));
        }
        2 => {
            doc.insert("unknownSource".into(), json!("allow"));
        }
        _ => {}
    }
    let domain = DOMAINS[usize::from(r.byte()) % DOMAINS.len()];
    if domain != "cluster.local" {
        doc.insert("clusterDomain".into(), json!(domain));
    }
    let mut pool: Vec<&str> = NS_POOL.to_vec();
    let mut tenants = Vec::new();
    for t in 0..1 + r.byte() % 3 {
        let mut namespaces = Vec::new();
        for _ in 0..1 + r.byte() % 2 {
            if pool.is_empty() {
                break;
            }
            let i = usize::from(r.byte()) % pool.len();
            namespaces.push(pool.remove(i));
        }
        let mut tenant = Map::new();
        tenant.insert("name".into(), json!(format!("t{t}")));
        tenant.insert("namespaces".into(), json!(namespaces));
        match r.byte() % 4 {
            1 => {
                tenant.insert("mode".into(), json!("enforce"));
            }
            2 => {
                tenant.insert("mode".into(), json!("audit"));
            }
            _ => {}
        }
        match r.byte() % 3 {
            1 => {
                tenant.insert("outboundTrafficPolicy".into(), json!("REGISTRY_ONLY"));
            }
            2 => {
                tenant.insert("outboundTrafficPolicy".into(), json!("ALLOW_ANY"));
            }
            _ => {}
        }
        let n = r.byte() % 4;
        tenant.insert("egress".into(), Value::Array(gen_egress(r, domain, n)));
        if r.byte().is_multiple_of(3) {
            let key = r.pick(LABEL_KEYS);
            let value = r.pick(LABEL_VALUES);
            let egress = gen_egress(r, domain, 1);
            tenant.insert(
                "workloads".into(),
                json!([{ "name": "w", "selector": { key: value }, "egress": egress }]),
            );
        }
        tenants.push(Value::Object(tenant));
    }
    doc.insert("tenants".into(), Value::Array(tenants));
    Value::Object(doc)
}

// Policy tags: `% 3`.
const POLICY_VECTOR: u8 = 0;
const POLICY_GRAMMAR: u8 = 1;

impl<'a> Arbitrary<'a> for DecideInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut r = Reader { u };
        let policy = match r.byte() % 3 {
            POLICY_VECTOR => PolicySource::Vector(usize::from(r.byte()) % vector_policies().len()),
            POLICY_GRAMMAR => PolicySource::Grammar(grammar_policy(&mut r)),
            _ => {
                let len = usize::from(u16::from_le_bytes([r.byte(), r.byte()]));
                PolicySource::Raw(r.take(len))
            }
        };
        let input = DecideInput {
            policy,
            requests: Vec::new(),
        };
        let vocab = Vocab::of(&input.policy_document());
        let n = 1 + r.byte() % 4;
        let requests = (0..n).map(|_| gen_request(&mut r, &vocab)).collect();
        Ok(DecideInput { requests, ..input })
    }
}

// === seeds ===

fn put_raw(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u8::try_from(bytes.len()).expect("a seed field fits in 255 bytes");
    out.push(len);
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => out.push(ABSENT),
        Some(b) => {
            out.push(RAW);
            put_raw(out, b);
        }
    }
}

/// Encodes "vector policy `policy` + this request" in the input format, so the request
/// vectors seed the `decide` corpus. Every field is written raw; the decoder reads it back
/// unchanged (tested in `tests/replay.rs`).
pub fn encode_vector_case(policy: usize, req: &RequestSpec) -> Vec<u8> {
    let mut out = vec![
        POLICY_VECTOR,
        u8::try_from(policy).expect("few policies"),
        0,
    ];
    put_opt(&mut out, req.source.namespace.as_deref().map(str::as_bytes));
    let nlabels = u8::try_from(req.source.labels.len()).expect("few labels");
    assert!(nlabels < 3, "the format carries at most two labels");
    out.push(nlabels);
    for (k, v) in &req.source.labels {
        out.push(0);
        put_raw(&mut out, k.as_bytes());
        put_raw(&mut out, v.as_bytes());
    }
    put_opt(&mut out, req.authority.as_deref().map(str::as_bytes));
    out.push(if req.authority_repeated { 7 } else { 0 });
    put_opt(&mut out, req.cluster.as_deref().map(str::as_bytes));
    put_opt(
        &mut out,
        req.destination_namespace.as_deref().map(str::as_bytes),
    );
    put_opt(
        &mut out,
        req.destination_address.as_deref().map(str::as_bytes),
    );
    out.push(u8::from(req.protocol == Protocol::Tcp));
    out
}

/// The [`GenRequest`] a [`RequestSpec`] stands for.
pub fn gen_request_of(req: &RequestSpec) -> GenRequest {
    GenRequest {
        namespace: req.source.namespace.clone(),
        labels: req
            .source
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        authority: req.authority.as_ref().map(|a| a.as_bytes().to_vec()),
        authority_repeated: req.authority_repeated,
        cluster: req.cluster.clone(),
        destination_namespace: req.destination_namespace.clone(),
        destination_address: req.destination_address.clone(),
        protocol: req.protocol,
    }
}
