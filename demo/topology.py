"""The demo's topology: every service, every sidecar and every fixed port, in one place.

demo/render.py turns this table (and demo/policy.yaml) into demo/mesh.yaml,
demo/sidecar-*.yaml and demo/ports.env; demo/send_requests.py reads the ports from ports.env.
Change a port here, run demo/render.sh, and everything follows.

All ports are on 127.0.0.1 and in the 15xxx range, avoiding the ports Istio's own proxy
uses (15000, 15001, 15004, 15006, 15008, 15020, 15021, 15090).

  15100        mesh admin
  15101-15107  the mesh's services (one listener each: "the pod" behind the service)
  15108        an external wildcard ServiceEntry *.example.com:80
  15109        "the internet": where PassthroughCluster sends unknown destinations
  15201-15205  one outbound listener per sidecar (what the application talks to)
  15301-15305  the admin port of each sidecar (/stats, /ready, /logging, ...)

Standard library only.
"""

MESH_ADMIN_PORT = 15100

# (service, namespace, service port, local port of the upstream that plays its pods)
SERVICES = [
    ("cockroachdb", "prod", 26257, 15101),
    ("cockroachdb", "uat", 26257, 15102),
    ("cockroachdb", "dev", 26257, 15103),
    ("api", "prod", 8080, 15104),
    ("api", "uat", 8080, 15105),
    ("api", "dev", 8080, 15106),
    ("logcatcher", "logmonkey", 80, 15107),
]

# A wildcard ServiceEntry (resolution NONE in a real mesh) for external hosts, declared by
# the platform team in istio-system: (hosts pattern, port, namespace, local port).
EXTERNAL = ("*.example.com", 80, "istio-system", 15108)

# Where PassthroughCluster sends a request whose Host matches no virtual host (see the
# comment on PassthroughCluster in the sidecar files).
INTERNET_PORT = 15109

# One sidecar Envoy per source identity (the filter reads the source from node metadata).
# name: file demo/sidecar-<name>.yaml; namespace: NAMESPACE metadata (None: left out);
# pod/app: the node id and cluster; labels: LABELS metadata.
SIDECARS = [
    {
        "name": "prod",
        "namespace": "prod",
        "pod": "orders-5d8f7c9b6-x2x7q",
        "app": "orders",
        "labels": {"app.kubernetes.io/name": "orders", "version": "v1"},
        "listener": 15201,
        "admin": 15301,
        "about": "a pod of the orders app in namespace prod (tenant prod)",
    },
    {
        "name": "prod-batman",
        "namespace": "prod",
        "pod": "batman-app-6b9d4f5c7-k8m2p",
        "app": "batman-app",
        "labels": {"app.kubernetes.io/name": "batman-app", "version": "v2"},
        "listener": 15202,
        "admin": 15302,
        "about": "a batman-app pod in namespace prod: tenant prod plus the workload "
        "exception permit-logs-to-logmonkey",
    },
    {
        "name": "uat",
        "namespace": "uat",
        "pod": "orders-7c6b5d4f8-p4q9r",
        "app": "orders",
        "labels": {"app.kubernetes.io/name": "orders", "version": "v2"},
        "listener": 15203,
        "admin": 15303,
        "about": "a pod of the orders app in namespace uat (tenant uat, audit mode)",
    },
    {
        "name": "dev",
        "namespace": "dev",
        "pod": "orders-8d7c6b5f9-z1w3e",
        "app": "orders",
        "labels": {"app.kubernetes.io/name": "orders", "version": "v3"},
        "listener": 15204,
        "admin": 15304,
        "about": "a pod of the orders app in namespace dev (tenant dev, ALLOW_ANY)",
    },
    {
        "name": "nometa",
        "namespace": None,
        "pod": "legacy-job-0",
        "app": "legacy-job",
        "labels": {},
        "listener": 15205,
        "admin": 15305,
        "about": "a proxy without NAMESPACE node metadata (configured by hand, not by "
        "Istio): the filter cannot tell who is calling and denies everything",
    },
]


def fqdn(svc, ns, domain="cluster.local"):
    return f"{svc}.{ns}.svc.{domain}"


def all_ports():
    """Every fixed port of the demo, in a stable order (used to check they are free)."""
    ports = [MESH_ADMIN_PORT] + [s[3] for s in SERVICES] + [EXTERNAL[3], INTERNET_PORT]
    for s in SIDECARS:
        ports += [s["listener"], s["admin"]]
    return ports
