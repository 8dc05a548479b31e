#!/usr/bin/env python3
"""Side-by-side Envoy load benchmark for tenant-egress (driven by bench/load/run.sh).

One sidecar Envoy per configuration (same binary, `--concurrency 1`, pinned to one core), one
upstream Envoy answering with a direct_response (pinned with the load generator to the other
core, so its CPU is not counted), and `wrk` as the load generator. Cells (configuration x
traffic) are measured in rounds, A B C ... A B C ..., so slow drift of the machine spreads over
every configuration instead of biasing one. Each cell reports requests/s and p50/p99 latency
(wrk), the sidecar's own CPU per request (utime+stime from /proc/<pid>/stat over the sidecar's
own request counter) and its RSS (VmRSS).

The sidecar bootstraps mirror the outbound side of an Istio sidecar as tests/src/config.rs
renders it (listener `0.0.0.0_80`, one virtual host per service with Istio's domain aliases,
`outbound|80||<fqdn>` clusters with `istio.services` metadata, PassthroughCluster,
BlackHoleCluster, node metadata NAMESPACE), without the harness's access log (Istio's default
is none) and with the services' upstream in a separate process.

Standard library only, except matplotlib for the chart.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")
WASM_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
RBAC_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
HCM_TYPE_URL = (
    "type.googleapis.com/envoy.extensions.filters.network."
    "http_connection_manager.v3.HttpConnectionManager"
)
SVC_PORT = 80
STAT_PREFIX = f"outbound_0.0.0.0_{SVC_PORT}"

# The generated policies' fixed names (bench/src/lib.rs: PROBE_NAMESPACE, IMPORTED_NAMESPACE,
# UNLISTED_NAMESPACE).
GEN_SOURCE_NS = "tenant-0-a"
GEN_ALLOWED = ("svc-0", "tenant-1-a")
GEN_DENIED = ("svc-0", "unlisted")
# The example policy (config/core/testdata/vectors.json, policy "crdb": prod/uat/dev/logmonkey).
EXAMPLE_SOURCE_NS = "prod"
EXAMPLE_ALLOWED = ("cockroachdb", "prod")
EXAMPLE_DENIED = ("cockroachdb", "uat")


def log(msg: str) -> None:
    print(f"==> {msg}", flush=True)


# --- processes -------------------------------------------------------------------------------

PROCS: list[subprocess.Popen] = []


def stop_all() -> None:
    for p in PROCS:
        if p.poll() is None:
            try:
                p.terminate()
            except ProcessLookupError:
                pass
    deadline = time.time() + 5
    for p in PROCS:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    PROCS.clear()


def on_signal(signum, _frame):
    # Once: a second signal must not interrupt the clean-up (atexit removes the work dir).
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    stop_all()
    sys.exit(128 + signum)


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    return (["taskset", "-c", str(cpu)] + cmd) if cpu is not None else cmd


# --- Envoy configuration ---------------------------------------------------------------------


def socket(port: int) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def router() -> dict:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        },
    }


def fqdn(svc: str, ns: str) -> str:
    return f"{svc}.{ns}.svc.cluster.local"


def istio_domains(svc: str, ns: str, port: int, src: str) -> list[str]:
    """Istio's virtual host domains (tests/src/config.rs: istio_domains)."""
    names = [fqdn(svc, ns), f"{svc}.{ns}.svc", f"{svc}.{ns}"]
    if src == ns:
        names.append(svc)
    out = []
    for n in names:
        out += [n, f"{n}:{port}"]
    return out


def wasm_filter(name: str, wasm: Path, configuration: str) -> dict:
    """tests/src/config.rs: wasm_typed_config (inline)."""
    return {
        "name": name,
        "typed_config": {
            "@type": WASM_TYPE_URL,
            "config": {
                "name": name,
                "root_id": name,
                "failure_policy": "FAIL_CLOSED",
                "vm_config": {
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm)}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration,
                },
            },
        },
    }


def sidecar_bootstrap(
    port: int, upstream: int, source_ns: str, services: list[tuple[str, str]], http_filters: list
) -> dict:
    vhosts = []
    for svc, ns in services:
        vhosts.append(
            {
                "name": f"{fqdn(svc, ns)}:{SVC_PORT}",
                "domains": istio_domains(svc, ns, SVC_PORT, source_ns),
                "routes": [
                    {
                        "name": "default",
                        "match": {"prefix": "/"},
                        "route": {
                            "cluster": f"outbound|{SVC_PORT}||{fqdn(svc, ns)}",
                            "timeout": "0s",
                        },
                        "decorator": {"operation": f"{fqdn(svc, ns)}:{SVC_PORT}/*"},
                    }
                ],
                "include_request_attempt_count": True,
            }
        )
    vhosts.append(
        {
            "name": "allow_any",
            "domains": ["*"],
            "routes": [
                {
                    "name": "allow_any",
                    "match": {"prefix": "/"},
                    "route": {"cluster": "PassthroughCluster", "timeout": "0s"},
                    "request_headers_to_add": [
                        {
                            "header": {
                                "key": "x-envoy-original-dst-host",
                                "value": f"127.0.0.1:{upstream}",
                            },
                            "append_action": "ADD_IF_ABSENT",
                        }
                    ],
                }
            ],
            "include_request_attempt_count": True,
        }
    )
    clusters = [
        {
            "name": f"outbound|{SVC_PORT}||{fqdn(svc, ns)}",
            "type": "STATIC",
            "connect_timeout": "2s",
            "load_assignment": {
                "cluster_name": f"outbound|{SVC_PORT}||{fqdn(svc, ns)}",
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(upstream)}}]}],
            },
            "metadata": {
                "filter_metadata": {
                    "istio": {"services": [{"host": fqdn(svc, ns), "name": svc, "namespace": ns}]}
                }
            },
        }
        for svc, ns in services
    ]
    clusters += [
        {
            "name": "PassthroughCluster",
            "type": "ORIGINAL_DST",
            "connect_timeout": "2s",
            "lb_policy": "CLUSTER_PROVIDED",
            "original_dst_lb_config": {"use_http_header": True},
        },
        {"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "2s"},
    ]
    listener = {
        "name": f"0.0.0.0_{SVC_PORT}",
        "address": socket(port),
        "enable_reuse_port": False,
        "traffic_direction": "OUTBOUND",
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM_TYPE_URL,
                            "stat_prefix": STAT_PREFIX,
                            "codec_type": "AUTO",
                            "use_remote_address": False,
                            "route_config": {
                                "name": str(SVC_PORT),
                                "validate_clusters": False,
                                "virtual_hosts": vhosts,
                            },
                            "http_filters": http_filters + [router()],
                        },
                    }
                ]
            }
        ],
    }
    return {
        "node": {
            "id": f"sidecar~127.0.0.1~client-0.{source_ns}~{source_ns}.svc.cluster.local",
            "cluster": f"client.{source_ns}",
            "metadata": {"NAMESPACE": source_ns, "NAME": "client-0"},
        },
        "admin": {"address": socket(0)},
        "static_resources": {"listeners": [listener], "clusters": clusters},
    }


def upstream_bootstrap(port: int) -> dict:
    return {
        "admin": {"address": socket(0)},
        "static_resources": {
            "listeners": [
                {
                    "name": "upstream",
                    "address": socket(port),
                    "enable_reuse_port": False,
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": HCM_TYPE_URL,
                                        "stat_prefix": "upstream",
                                        "codec_type": "AUTO",
                                        "route_config": {
                                            "name": "upstream",
                                            "virtual_hosts": [
                                                {
                                                    "name": "upstream",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "direct_response": {
                                                                "status": 200,
                                                                "body": {"inline_string": "ok\n"},
                                                            },
                                                        }
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": [router()],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }


def rbac_filter(policy: dict, allowed_host: str, rules: int) -> tuple[dict, str]:
    """Envoy RBAC (ALLOW) with one `:authority` permission per host entry of `policy`:
    exact FQDN -> exact, `*.x` -> suffix `.x`, `ns/*` (and `./*`, with the tenant's first
    namespace) -> suffix `.ns.svc.cluster.local`; `~` exclusions become permissions that never
    match this traffic (RBAC has no exclusion inside an ALLOW policy). The permissions that
    would allow `allowed_host` are replaced by one placed in the middle of the list (traffic
    spread over 1,000 hosts matches on average halfway), and the list is padded to exactly
    `rules` permissions. A denied request evaluates every permission."""

    def matcher(kind: str, value: str) -> dict:
        return {"header": {"name": ":authority", "string_match": {kind: value}}}

    perms: list[tuple[str, str]] = []
    for tenant in policy["tenants"]:
        own = tenant["namespaces"][0]
        owners = [tenant] + tenant.get("workloads", [])
        for owner in owners:
            for listener in owner.get("egress", []):
                for entry in listener["hosts"]:
                    ns, host = entry.lstrip("~").split("/", 1)
                    if host == "*":
                        perms.append(("suffix", f".{own if ns == '.' else ns}.svc.cluster.local"))
                    elif host.startswith("*."):
                        perms.append(("suffix", host[1:]))
                    else:
                        perms.append(("exact", host))

    def matches(kind: str, value: str) -> bool:
        return allowed_host == value if kind == "exact" else allowed_host.endswith(value)

    allowing = [p for p in perms if matches(*p)]
    perms = [p for p in perms if not matches(*p)]
    pad = 0
    while len(perms) < rules - 1:
        perms.append(("exact", f"pad-{pad}.rbac.example.com"))
        pad += 1
    perms = perms[: rules - 1]
    winner = allowing[0] if allowing else ("exact", allowed_host)
    perms.insert(len(perms) // 2, winner)
    assert len(perms) == rules
    note = (
        f"{rules} `:authority` permissions ({sum(k == 'exact' for k, _ in perms)} exact, "
        f"{sum(k == 'suffix' for k, _ in perms)} suffix); the allowed host matches permission "
        f"#{len(perms) // 2 + 1}, a denied host is checked against all {rules}"
    )
    cfg = {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": RBAC_TYPE_URL,
            "rules": {
                "action": "ALLOW",
                "policies": {
                    "tenant-egress-equivalent": {
                        "permissions": [matcher(k, v) for k, v in perms],
                        "principals": [{"any": True}],
                    }
                },
            },
        },
    }
    return cfg, note


# --- running Envoy ---------------------------------------------------------------------------


@dataclass
class Envoy:
    name: str
    proc: subprocess.Popen
    admin: int
    port: int
    dir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = (self.dir / "envoy.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def start_envoy(
    envoy_bin: str, name: str, bootstrap: dict, port: int, workdir: Path, cpu: int | None,
    log_level: str, timeout: float,
) -> Envoy:
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "bootstrap.json").write_text(json.dumps(bootstrap))
    admin_path = d / "admin.txt"
    cmd = pinned(
        [
            envoy_bin,
            "-c", str(d / "bootstrap.json"),
            "--concurrency", "1",
            "--disable-hot-restart",
            "--admin-address-path", str(admin_path),
            "-l", log_level,
            "--log-path", str(d / "envoy.log"),
        ],
        cpu,
    )
    out = open(d / "stdout.log", "wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    PROCS.append(proc)
    deadline = time.time() + timeout
    admin = 0
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"envoy {name} exited ({proc.returncode}):\n{tail(d)}")
        if admin == 0 and admin_path.exists():
            text = admin_path.read_text().strip()
            if ":" in text:
                admin = int(text.rsplit(":", 1)[1])
        if admin:
            try:
                status, body = http_get(admin, "/ready")
                if status == 200 and body.strip() == b"LIVE":
                    return Envoy(name, proc, admin, port, d)
            except OSError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"envoy {name} not ready after {timeout}s:\n{tail(d)}")


def tail(d: Path) -> str:
    text = ""
    for f in ("envoy.log", "stdout.log"):
        p = d / f
        if p.exists():
            text += "\n".join(p.read_text(errors="replace").splitlines()[-25:]) + "\n"
    return text


def http_get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Host": host} if host else {}
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def counter(envoy: Envoy, name: str) -> int:
    _, body = http_get(envoy.admin, f"/stats?usedonly&filter=^{re.escape(name)}$")
    for line in body.decode().splitlines():
        k, _, v = line.partition(": ")
        if k == name:
            return int(v)
    return 0


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (every thread), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces: fields start after the closing parenthesis.
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def machine_busy_ticks() -> int:
    """Busy (non-idle, non-iowait) clock ticks of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is in user)
    return sum(v[:8]) - v[3] - v[4]


def children_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --- wrk -------------------------------------------------------------------------------------

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"bad wrk duration {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def run_wrk(port: int, host: str, seconds: int, connections: int, cpu: int | None) -> dict:
    cmd = pinned(
        [
            "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
            "-H", f"Host: {host}", f"http://127.0.0.1:{port}/",
        ],
        cpu,
    )
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    res: dict = {"non2xx": 0, "socket_errors": 0}
    for line in out.splitlines():
        line = line.strip()
        if m := re.match(r"50%\s+(\S+)", line):
            res["p50_ms"] = to_ms(m.group(1))
        elif m := re.match(r"99%\s+(\S+)", line):
            res["p99_ms"] = to_ms(m.group(1))
        elif m := re.match(r"(\d+) requests in", line):
            res["requests"] = int(m.group(1))
        elif m := re.match(r"Requests/sec:\s+([\d.]+)", line):
            res["rps"] = float(m.group(1))
        elif m := re.match(r"Non-2xx or 3xx responses:\s+(\d+)", line):
            res["non2xx"] = int(m.group(1))
        elif m := re.match(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", line):
            res["socket_errors"] = sum(int(g) for g in m.groups())
    if "rps" not in res or "p99_ms" not in res:
        raise RuntimeError(f"could not parse wrk output:\n{out}")
    return res


# --- the benchmark ---------------------------------------------------------------------------


@dataclass
class Config:
    key: str
    label: str
    filters: list
    source_ns: str
    allowed: tuple[str, str]
    denied: tuple[str, str]
    traffics: list[str]
    note: str = ""
    envoy: Envoy | None = None


@dataclass
class Cell:
    config: Config
    traffic: str
    expect: int
    samples: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.config.key}/{self.traffic}"

    @property
    def host(self) -> str:
        svc, ns = self.config.allowed if self.traffic == "allowed" else self.config.denied
        return fqdn(svc, ns)


def free_ports(n: int) -> list[int]:
    import socket as s

    socks, ports = [], []
    for _ in range(n):
        sk = s.socket()
        sk.bind(("127.0.0.1", 0))
        socks.append(sk)
        ports.append(sk.getsockname()[1])
    for sk in socks:
        sk.close()
    return ports


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def replot(path: Path) -> int:
    """Re-renders the PNG next to a saved load.json (no measurement)."""
    d = json.loads(path.read_text())
    cfgs: dict[str, Config] = {}
    cells = []
    for c in d["cells"]:
        key, traffic = c["cell"].split("/")
        cfg = cfgs.setdefault(key, Config(key, key, [], "", ("", ""), ("", ""), []))
        cell = Cell(cfg, traffic, c["expect"])
        cell.samples = c["samples"]
        cells.append(cell)
    chart(d["meta"], cells, summarize(cells), path.with_suffix(".png"))
    log(f"wrote {path.with_suffix('.png')}")
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--replot":
        return replot(Path(sys.argv[2]))
    ap = argparse.ArgumentParser(
        description=__doc__ + "\n(`loadbench.py --replot results/load.json` re-renders the chart only.)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--filter-wasm", required=True, type=Path)
    ap.add_argument("--noop-wasm", required=True, type=Path)
    ap.add_argument("--gen-policy", required=True, help="the gen-policy binary")
    ap.add_argument("--duration", type=int, default=4, help="seconds per cell (default 4; wrk takes whole seconds)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per cell (default 2; 0: none)")
    ap.add_argument("--rounds", type=int, default=5, help="A B C ... rounds (default 5)")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    ap.add_argument("--sizes", default="1000,10000", help="generated policy sizes (default 1000,10000)")
    ap.add_argument("--rbac-rules", type=int, default=1000)
    ap.add_argument("--only", default="", help="comma-separated configuration keys to run")
    ap.add_argument(
        "--diagnostics", action="store_true",
        help="also run the no-op filter making only tenant-egress's per-request host calls "
        "(header map + cluster name), and only :authority + cluster name",
    )
    ap.add_argument(
        "--alt-filter-wasm", type=Path, default=None,
        help="also run the 1,000-rule policy with this build of the filter (e.g. opt-level 3)",
    )
    ap.add_argument("--envoy-cpu", type=int, default=None)
    ap.add_argument("--load-cpu", type=int, default=None)
    ap.add_argument("--log-level", default="warning", help="sidecar log level (Istio's default: warning)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    atexit.register(stop_all)

    cpus = sorted(os.sched_getaffinity(0))
    envoy_cpu, load_cpu = args.envoy_cpu, args.load_cpu
    if len(cpus) >= 2:
        envoy_cpu = cpus[0] if envoy_cpu is None else envoy_cpu
        load_cpu = cpus[1] if load_cpu is None else load_cpu
    else:
        log("only one CPU available: not pinning (sidecar, upstream and wrk share it)")

    workdir = Path(tempfile.mkdtemp(prefix="tenant-egress-load-"))
    if not args.keep:
        atexit.register(shutil.rmtree, workdir, True)

    # Policies.
    vectors = json.loads((ROOT / "config" / "core" / "testdata" / "vectors.json").read_text())
    example = vectors["policies"]["crdb"]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    generated = {}
    for n in sorted(set(sizes + [args.rbac_rules])):
        out = subprocess.run([args.gen_policy, str(n)], capture_output=True, check=True).stdout
        generated[n] = json.loads(out)

    gen_services = [GEN_ALLOWED, GEN_DENIED]
    te = lambda policy: [wasm_filter("tenant-egress", args.filter_wasm, json.dumps(policy))]
    configs = [
        Config("none", "no filter", [], GEN_SOURCE_NS, GEN_ALLOWED, GEN_DENIED, ["allowed"]),
        Config(
            "noop-wasm", "no-op wasm filter",
            [wasm_filter("noop", args.noop_wasm, "")],
            GEN_SOURCE_NS, GEN_ALLOWED, GEN_DENIED, ["allowed"],
        ),
        Config(
            "te-example", "tenant-egress, example policy", te(example),
            EXAMPLE_SOURCE_NS, EXAMPLE_ALLOWED, EXAMPLE_DENIED, ["allowed", "denied"],
            note="config/core/testdata/vectors.json `crdb` (4 tenants, 13 host entries)",
        ),
    ]
    for n in sizes:
        configs.append(
            Config(
                f"te-{n // 1000}k" if n % 1000 == 0 else f"te-{n}",
                f"tenant-egress, {n:,} rules", te(generated[n]),
                GEN_SOURCE_NS, GEN_ALLOWED, GEN_DENIED, ["allowed", "denied"],
                note=f"gen-policy {n}",
            )
        )
    if args.diagnostics:
        for key, calls, what in (
            ("noop-map+cluster", "header-map,cluster",
             "the whole request header map + `xds.cluster_name`: tenant-egress's host calls for an "
             "allowed request to an outbound cluster, without its work in the VM"),
            ("noop-authority+cluster", "authority,cluster",
             "only the `:authority` value + `xds.cluster_name`"),
        ):
            configs.append(
                Config(
                    key, f"no-op wasm + {calls.replace(',', ' + ')} host calls",
                    [wasm_filter("noop", args.noop_wasm, calls)],
                    GEN_SOURCE_NS, GEN_ALLOWED, GEN_DENIED, ["allowed"], note=what,
                )
            )
    if args.alt_filter_wasm:
        n = 1000 if 1000 in generated else sizes[0]
        configs.append(
            Config(
                "te-1k-alt", f"tenant-egress ({args.alt_filter_wasm.name}), {n:,} rules",
                [wasm_filter("tenant-egress", args.alt_filter_wasm, json.dumps(generated[n]))],
                GEN_SOURCE_NS, GEN_ALLOWED, GEN_DENIED, ["allowed", "denied"],
                note=f"gen-policy {n} with {args.alt_filter_wasm} "
                f"({args.alt_filter_wasm.stat().st_size:,} bytes)",
            )
        )
    rbac, rbac_note = rbac_filter(generated[args.rbac_rules], fqdn(*GEN_ALLOWED), args.rbac_rules)
    rk = args.rbac_rules
    configs.append(
        Config(
            f"rbac-{rk // 1000}k" if rk % 1000 == 0 else f"rbac-{rk}",
            f"Envoy RBAC, {rk:,} :authority rules", [rbac],
            GEN_SOURCE_NS, GEN_ALLOWED, GEN_DENIED, ["allowed", "denied"], note=rbac_note,
        )
    )
    if args.only:
        keep = set(args.only.split(","))
        configs = [c for c in configs if c.key in keep or c.key == "none"]

    version = subprocess.run([args.envoy, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version: \S+?/(\d+\.\d+\.\d+)", version)
    envoy_version = m.group(1) if m else version.strip()

    ports = free_ports(len(configs) + 1)
    upstream_port = ports[0]
    log(f"work dir {workdir}; sidecars on CPU {envoy_cpu}, upstream + wrk on CPU {load_cpu}")
    upstream = start_envoy(
        args.envoy, "upstream", upstream_bootstrap(upstream_port), upstream_port, workdir,
        load_cpu, "warning", 30,
    )
    cells: list[Cell] = []
    for cfg, port in zip(configs, ports[1:]):
        services = [cfg.allowed, cfg.denied]
        boot = sidecar_bootstrap(port, upstream_port, cfg.source_ns, services, cfg.filters)
        t0 = time.time()
        cfg.envoy = start_envoy(
            args.envoy, cfg.key, boot, port, workdir, envoy_cpu, args.log_level, 120
        )
        blocks = cfg.key.startswith(("te-", "rbac-"))
        for traffic in cfg.traffics:
            cell = Cell(cfg, traffic, 403 if (traffic == "denied" and blocks) else 200)
            # The listener may come up a moment after /ready; the wasm VM compiles the policy.
            deadline = time.time() + 60
            while True:
                try:
                    status, body = http_get(port, "/", cell.host)
                    if status == cell.expect:
                        break
                except OSError:
                    status, body = None, b""
                if time.time() > deadline:
                    raise RuntimeError(
                        f"{cell.name}: {cell.host} answered {status}, expected {cell.expect}: "
                        f"{body[:300]!r}\n{cfg.envoy.log_tail()}"
                    )
                time.sleep(0.2)
            cells.append(cell)
        log(f"{cfg.key}: ready in {time.time() - t0:.1f}s (pid {cfg.envoy.pid}, RSS {rss_mib(cfg.envoy.pid):.0f} MiB)")

    loadavg_start = os.getloadavg()[0]
    if args.warmup > 0:
        log(f"warm-up: {args.warmup:g}s per cell")
        for cell in cells:
            run_wrk(cell.config.envoy.port, cell.host, args.warmup, args.connections, load_cpu)

    rq_total = f"http.{STAT_PREFIX}.downstream_rq_total"
    for r in range(args.rounds):
        log(f"round {r + 1}/{args.rounds}")
        for cell in cells:
            env = cell.config.envoy
            rq0 = counter(env, rq_total)
            c0, u0, m0, k0 = cpu_ticks(env.pid), cpu_ticks(upstream.pid), machine_busy_ticks(), children_cpu_s()
            t0 = time.monotonic()
            w = run_wrk(env.port, cell.host, args.duration, args.connections, load_cpu)
            wall = time.monotonic() - t0
            c1, u1, m1, k1 = cpu_ticks(env.pid), cpu_ticks(upstream.pid), machine_busy_ticks(), children_cpu_s()
            rq1 = counter(env, rq_total)
            requests = rq1 - rq0
            cpu_s = (c1 - c0) / CLK_TCK
            ours = cpu_s + (u1 - u0) / CLK_TCK + (k1 - k0)
            w.update(
                envoy_requests=requests,
                cpu_us_per_req=cpu_s / requests * 1e6 if requests else float("nan"),
                cpu_pct=cpu_s / wall * 100,
                # CPU used by anything but the sidecar, the upstream and wrk (other tenants of a
                # shared machine), in % of one CPU.
                other_pct=max(0.0, ((m1 - m0) / CLK_TCK - ours) / wall * 100),
                rss_mib=rss_mib(env.pid),
            )
            bad = w["non2xx"] if cell.expect == 200 else w["requests"] - w["non2xx"]
            if bad or w["socket_errors"]:
                log(f"  warning: {cell.name}: {bad} unexpected statuses, {w['socket_errors']} socket errors")
            cell.samples.append(w)
            print(
                f"    {cell.name:<22} {w['rps']:>9.0f} req/s  p50 {w['p50_ms']:.3f} ms  "
                f"p99 {w['p99_ms']:.3f} ms  CPU {w['cpu_us_per_req']:6.2f} us/req "
                f"({w['cpu_pct']:.0f}%)  RSS {w['rss_mib']:.0f} MiB  other load {w['other_pct']:.0f}%",
                flush=True,
            )
        for cfg in configs:
            if cfg.envoy.proc.poll() is not None:
                raise RuntimeError(f"{cfg.key} died:\n{cfg.envoy.log_tail()}")

    stop_all()
    meta = {
        "loadavg_start": loadavg_start,
        "loadavg_end": os.getloadavg()[0],
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "envoy": envoy_version,
        "commit": git_commit(),
        "dirty": git_dirty(),
        "cpu": cpu_model(),
        "cpus": len(cpus),
        "kernel": platform.release(),
        "envoy_cpu": envoy_cpu,
        "load_cpu": load_cpu,
        "duration": args.duration,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "connections": args.connections,
        "filter_wasm_bytes": args.filter_wasm.stat().st_size,
        "noop_wasm_bytes": args.noop_wasm.stat().st_size,
        "log_level": args.log_level,
        "wrk": wrk_version(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    summary = summarize(cells)
    md = markdown(meta, configs, cells, summary)
    (args.out / "load.md").write_text(md)
    (args.out / "load.json").write_text(
        json.dumps(
            {"meta": meta, "cells": [{"cell": c.name, "host": c.host, "expect": c.expect,
                                       "samples": c.samples} for c in cells]},
            indent=1,
        )
        + "\n"
    )
    chart(meta, cells, summary, args.out / "load.png")
    print()
    print(md)
    log(f"wrote {args.out / 'load.md'}, {args.out / 'load.json'}, {args.out / 'load.png'}")
    return 0


def git_commit() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def git_dirty() -> bool:
    r = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "config", "filter"],
        capture_output=True, text=True,
    )
    return bool(r.stdout.strip())


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def wrk_version() -> str:
    r = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    first = (r.stdout or r.stderr).splitlines()
    return first[0].strip() if first else "wrk"


def summarize(cells: list[Cell]) -> dict:
    """Medians over rounds, plus paired statistics against the same round's baseline cells
    (drift between rounds cancels): `added` = median over rounds of (this cell's CPU/request
    minus "no filter"'s), `vs_noop_rps` and `vs_noop_cap` = median over rounds of this cell's
    requests/s and capacity relative to the no-op filter's."""
    s = {}
    by_name = {c.name: c for c in cells}
    none = by_name.get("none/allowed")
    noop = by_name.get("noop-wasm/allowed")
    for c in cells:
        col = lambda k: [x[k] for x in c.samples]
        r = {
            k: median(col(k)) for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "cpu_pct", "other_pct")
        } | {
            "rss_mib": max(col("rss_mib")),
            "rps_min": min(col("rps")),
            "rps_max": max(col("rps")),
            "cpu_min": min(col("cpu_us_per_req")),
            "cpu_max": max(col("cpu_us_per_req")),
        }
        if none:
            r["added"] = median(
                [x["cpu_us_per_req"] - b["cpu_us_per_req"] for x, b in zip(c.samples, none.samples)]
            )
        if noop:
            r["vs_noop_rps"] = median([x["rps"] / b["rps"] for x, b in zip(c.samples, noop.samples)])
            r["vs_noop_cap"] = median(
                [b["cpu_us_per_req"] / x["cpu_us_per_req"] for x, b in zip(c.samples, noop.samples)]
            )
        s[c.name] = r
    return s


def markdown(meta: dict, configs: list[Config], cells: list[Cell], s: dict) -> str:
    base = s.get("none/allowed", {}).get("cpu_us_per_req")
    noop = s.get("noop-wasm/allowed")
    cap = lambda r: 1e6 / r["cpu_us_per_req"]
    lines = [
        "# Envoy load benchmark: tenant-egress vs no filter, a no-op wasm filter and Envoy RBAC",
        "",
        f"{meta['date']} · Envoy {meta['envoy']} (`--concurrency 1`, V8) · commit `{meta['commit']}`"
        + (" (with uncommitted changes in config/ or filter/)" if meta["dirty"] else "")
        + f" · {meta['cpu']}, {meta['cpus']} CPUs, Linux {meta['kernel']} · load average "
        f"{meta['loadavg_start']:.1f} at start, {meta['loadavg_end']:.1f} at end",
        "",
        f"Sidecar pinned to CPU {meta['envoy_cpu']}; upstream Envoy (direct_response) and "
        f"{meta['wrk']} (`-t1 -c{meta['connections']}`, keep-alive HTTP/1.1) pinned to CPU "
        f"{meta['load_cpu']}. {meta['rounds']} rounds of {meta['duration']:g} s per cell, "
        f"cells alternating A B C ... each round, after {meta['warmup']:g} s of warm-up each; "
        "medians over rounds (range in brackets). Sidecar log level "
        f"`{meta['log_level']}`. tenant_egress_filter.wasm {meta['filter_wasm_bytes']:,} bytes, "
        f"no-op {meta['noop_wasm_bytes']:,} bytes.",
        "",
        "- **sidecar CPU µs/request**: utime+stime of the sidecar Envoy process (all its threads, "
        "from /proc/<pid>/stat) over the requests its listener counted "
        "(`downstream_rq_total`); the figure the targets are about.",
        "- **capacity**: 10⁶ / CPU µs per request = requests/s one sidecar core sustains. When the "
        "sidecar is not at 100% of its CPU, wrk's requests/s is bounded by the load-generator "
        "core (wrk and the upstream share it), and capacity is the comparable throughput.",
        "- **other load**: CPU used during the cell by processes other than the sidecar, the "
        "upstream and wrk (% of one CPU): how shared the machine was.",
        "",
        "- **added over no filter**: median over rounds of (this cell's CPU/request − the same "
        "round's no-filter CPU/request): paired by round, so drift between rounds cancels.",
        "",
        "| configuration | traffic | requests/s (wrk) | p50 ms | p99 ms | sidecar CPU µs/request | "
        "added over no filter µs | capacity req/s/core | sidecar CPU % | other load % | RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        r = s[c.name]
        added = r.get("added", float("nan"))
        status = "200" if c.expect == 200 else f"{c.expect}"
        lines.append(
            f"| {c.config.label} | {c.traffic} → {status} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | **{r['cpu_us_per_req']:.1f}** [{r['cpu_min']:.1f}–{r['cpu_max']:.1f}] | "
            f"{added:+.1f} | {cap(r):,.0f} | {r['cpu_pct']:.0f} | {r['other_pct']:.0f} | {r['rss_mib']:.0f} |"
        )
    lines += ["", "Configurations:", ""]
    for cfg in configs:
        if cfg.note:
            lines.append(f"- **{cfg.label}**: {cfg.note}.")
    lines.append(
        "- Allowed traffic is proxied to the upstream; denied traffic is answered by the filter "
        "(local reply), so a denied request can cost the sidecar less than an allowed one: compare "
        "denied cells with each other, not with \"no filter\"."
    )
    if base is not None and noop is not None:
        noop_added = noop["added"]
        lines += [
            "", "## Targets (issue 5)", "",
            f"No-op wasm adds {noop_added:.1f} µs/request over no filter (1.2x = "
            f"{1.2 * noop_added:.1f} µs); its throughput is {noop['rps']:,.0f} req/s measured, "
            f"{cap(noop):,.0f} req/s/core capacity.", "",
            "| tenant-egress cell | added CPU µs/req | ≤ 1.2x no-op's | throughput vs no-op (paired): measured / capacity | ≥ 90% |",
            "|---|---:|---|---:|---|",
        ]
        for c in cells:
            if not c.config.key.startswith("te-") or c.traffic != "allowed":
                continue
            r = s[c.name]
            added = r["added"]
            ratio = added / noop_added if noop_added > 0 else float("nan")
            tp, tc = r["vs_noop_rps"] * 100, r["vs_noop_cap"] * 100
            lines.append(
                f"| {c.name} | {added:.1f} ({ratio:.2f}x) | {'met' if added <= 1.2 * noop_added else '**missed**'} "
                f"| {tp:.0f}% / {tc:.0f}% | measured {'met' if tp >= 90 else '**missed**'}, capacity "
                f"{'met' if tc >= 90 else '**missed**'} |"
            )
        rb = [k for k in s if k.startswith("rbac-")]
        cells_by = {c.name: c for c in cells}
        lines.append("")
        for traffic in ("allowed", "denied"):
            rkey = next((k for k in rb if k.endswith("/" + traffic)), None)
            tkey = f"te-1k/{traffic}"
            if rkey and tkey in s:
                t, rr = s[tkey], s[rkey]
                beat = t["cpu_us_per_req"] < rr["cpu_us_per_req"]
                paired = median([
                    b["cpu_us_per_req"] - x["cpu_us_per_req"]
                    for x, b in zip(cells_by[tkey].samples, cells_by[rkey].samples)
                ])
                lines.append(
                    f"- 1,000 rules, {traffic}: tenant-egress {t['cpu_us_per_req']:.1f} µs/req "
                    f"({t['rps']:,.0f} req/s measured), RBAC {rr['cpu_us_per_req']:.1f} µs/req "
                    f"({rr['rps']:,.0f} req/s) → tenant-egress {'beats' if beat else '**does not beat**'} "
                    f"RBAC on CPU per request (RBAC − tenant-egress, paired by round: {paired:+.1f} µs)."
                )
    return "\n".join(lines) + "\n"


def chart(meta: dict, cells: list[Cell], s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c.name for c in cells][::-1]
    colors = []
    for n in names:
        colors.append(
            "#9e9e9e" if n.startswith("none") else
            "#64b5f6" if n.startswith("noop") else
            "#e57373" if n.startswith("rbac") else
            "#81c784" if n.endswith("/allowed") else "#388e3c"
        )
    rps = [s[n]["rps"] for n in names]
    rps_err = [[s[n]["rps"] - s[n]["rps_min"] for n in names], [s[n]["rps_max"] - s[n]["rps"] for n in names]]
    cpu = [s[n]["cpu_us_per_req"] for n in names]
    cpu_err = [[s[n]["cpu_us_per_req"] - s[n]["cpu_min"] for n in names],
               [s[n]["cpu_max"] - s[n]["cpu_us_per_req"] for n in names]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 0.45 * len(names) + 2), sharey=True)
    a.barh(names, rps, xerr=rps_err, color=colors)
    a.set_xlabel("requests/s (median, min–max)")
    a.set_title("Throughput")
    b.barh(names, cpu, xerr=cpu_err, color=colors)
    b.set_xlabel("sidecar Envoy CPU µs per request (median, min–max)")
    b.set_title("CPU per request")
    if "none/allowed" in s:
        b.axvline(s["none/allowed"]["cpu_us_per_req"], color="#616161", ls="--", lw=1)
    rps_hi = [s[n]["rps_max"] for n in names]
    cpu_hi = [s[n]["cpu_max"] for n in names]
    for ax, vals, his, fmt in ((a, rps, rps_hi, "{:,.0f}"), (b, cpu, cpu_hi, "{:.1f}")):
        for i, (v, hi) in enumerate(zip(vals, his)):
            ax.text(hi, i, "  " + fmt.format(v), va="center", fontsize=8)
        ax.set_xlim(0, max(his) * 1.18)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"tenant-egress load benchmark · Envoy {meta['envoy']} --concurrency 1 · "
        f"wrk -c{meta['connections']} · {meta['rounds']}x{meta['duration']:g}s per cell · {meta['date']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
