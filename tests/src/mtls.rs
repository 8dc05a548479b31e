//! Istio-style workload certificates made at test time with the `openssl` command line: a CA
//! (the mesh's root, like istiod's self-signed `istio-ca`) and leaf certificates whose only
//! identity is a SPIFFE URI SAN, `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`,
//! exactly what Istio's CA issues to a workload. A second, unrelated CA plays a foreign mesh.
//!
//! ```ignore
//! let pki = Pki::new("cluster.local");
//! let uat = pki.workload("uat", "default");          // spiffe://cluster.local/ns/uat/sa/default
//! let prod = pki.workload("prod", "default");
//! let other = Pki::new("cluster.local");             // same trust domain name, another CA
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

/// One certificate authority and the directory its files live in.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
    trust_domain: String,
    /// The CA certificate (PEM): what a sidecar's validation context trusts.
    pub ca_cert: PathBuf,
    ca_key: PathBuf,
}

/// A workload's key pair and certificate (PEM files).
#[derive(Clone, Debug)]
pub struct Workload {
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub spiffe_id: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn try_openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl (Debian: apt-get install openssl): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The files of `namespace`/`service_account`'s workload certificate in a CA's directory
/// `dir`, as [`Pki::workload`] writes them: for configurations rendered before (or elsewhere
/// than) the certificates are made, such as the demo's.
pub fn workload_files(
    dir: &Path,
    trust_domain: &str,
    namespace: &str,
    service_account: &str,
) -> Workload {
    let base = format!("{namespace}-{service_account}");
    Workload {
        spiffe_id: format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"),
        cert: dir.join(format!("{base}.pem")),
        key: dir.join(format!("{base}.key")),
    }
}

/// The CA certificate's file in a CA's directory `dir` (see [`workload_files`]).
pub fn ca_file(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

impl Pki {
    /// A fresh CA for `trust_domain`, in a new directory under the test scratch space.
    pub fn new(trust_domain: &str) -> Pki {
        let dir = crate::envoy::new_run_dir().join("pki");
        Pki::create(&dir, trust_domain).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A fresh CA for `trust_domain` in `dir` (created; an older CA's files there are
    /// replaced).
    pub fn create(dir: &Path, trust_domain: &str) -> Result<Pki, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let ca_key = dir.join("ca.key");
        let ca_cert = ca_file(dir);
        try_openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/O=tenant-egress tests/CN={trust_domain} root"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        )?;
        Ok(Pki {
            dir: dir.to_owned(),
            trust_domain: trust_domain.to_owned(),
            ca_cert,
            ca_key,
        })
    }

    /// The trust domain this CA issues identities in.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// A workload certificate for `namespace`/`service_account`, valid for client and server
    /// authentication, with the SPIFFE id as its only SAN (as Istio's CA issues them: the
    /// subject is empty there; here it carries a readable CN only).
    pub fn workload(&self, namespace: &str, service_account: &str) -> Workload {
        self.try_workload(namespace, service_account)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`workload`](Self::workload), or why openssl could not make it.
    pub fn try_workload(&self, namespace: &str, service_account: &str) -> Result<Workload, String> {
        let files = workload_files(&self.dir, &self.trust_domain, namespace, service_account);
        self.try_workload_id(&files.spiffe_id, &format!("{namespace}-{service_account}"))
    }

    /// A workload certificate, signed by this CA, with any URI SAN `spiffe_id` (for example an
    /// identity in a trust domain this CA should not vouch for); files named after `base`.
    pub fn workload_id(&self, spiffe_id: &str, base: &str) -> Workload {
        self.try_workload_id(spiffe_id, base)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`workload_id`](Self::workload_id), or why it could not be made.
    pub fn try_workload_id(&self, spiffe_id: &str, base: &str) -> Result<Workload, String> {
        let spiffe_id = spiffe_id.to_owned();
        let key = self.dir.join(format!("{base}.key"));
        let cert = self.dir.join(format!("{base}.pem"));
        let ext = self.dir.join(format!("{base}.ext"));
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth,clientAuth\n\
                 subjectAltName=critical,URI:{spiffe_id}\n"
            ),
        )
        .map_err(|e| format!("write {}: {e}", ext.display()))?;
        try_openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={base}"),
                "-keyout",
                &format!("{base}.key"),
                "-out",
                &format!("{base}.csr"),
            ],
        )?;
        try_openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{base}.csr"),
                "-CA",
                &self.ca_cert.display().to_string(),
                "-CAkey",
                &self.ca_key.display().to_string(),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{base}.ext"),
                "-out",
                &format!("{base}.pem"),
            ],
        )?;
        Ok(Workload {
            spiffe_id,
            cert,
            key,
        })
    }
}

/// The SNI Istio's client sidecar sets on mesh mTLS to a service:
/// `outbound_.<service port>_.<subset>_.<fqdn>` (an empty subset when no DestinationRule subset
/// applies). `pilot/pkg/model/service.go: BuildDNSSrvSubsetKey`.
pub fn istio_sni(port: u16, subset: &str, fqdn: &str) -> String {
    tenant_egress_core::inbound::istio_sni(port, subset, fqdn)
}

/// Envoy's `UpstreamTlsContext` for a caller presenting `w` with `sni`, trusting `ca`.
pub fn upstream_tls(w: &Workload, ca: &Path, sni: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": sni,
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": {"filename": w.cert.display().to_string()},
                    "private_key": {"filename": w.key.display().to_string()},
                }],
                "validation_context": {"trusted_ca": {"filename": ca.display().to_string()}},
                "alpn_protocols": ["istio-peer-exchange", "istio"],
            },
        },
    })
}

/// Envoy's `DownstreamTlsContext` of an Istio inbound listener in STRICT mode: this proxy's
/// certificate, and a client certificate required and verified against `ca`.
pub fn downstream_tls(w: &Workload, ca: &Path) -> serde_json::Value {
    serde_json::json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": {"filename": w.cert.display().to_string()},
                    "private_key": {"filename": w.key.display().to_string()},
                }],
                "validation_context": {"trusted_ca": {"filename": ca.display().to_string()}},
                "alpn_protocols": ["istio-peer-exchange", "istio", "h2", "http/1.1"],
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_certificate_carries_the_spiffe_id_and_chains_to_its_ca() {
        let pki = Pki::new("cluster.local");
        let w = pki.workload("prod", "default");
        assert_eq!(w.spiffe_id, "spiffe://cluster.local/ns/prod/sa/default");
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(&w.cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("URI:spiffe://cluster.local/ns/prod/sa/default"),
            "{text}"
        );
        let verify = |ca: &Path| {
            Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(ca)
                .arg(&w.cert)
                .output()
                .unwrap()
                .status
                .success()
        };
        assert!(verify(&pki.ca_cert));
        let other = Pki::new("cluster.local");
        assert!(!verify(&other.ca_cert), "a foreign CA must not verify it");
    }

    #[test]
    fn istio_sni_names_port_subset_and_fqdn() {
        assert_eq!(
            istio_sni(26257, "", "cockroachdb.prod.svc.cluster.local"),
            "outbound_.26257_._.cockroachdb.prod.svc.cluster.local"
        );
    }
}
