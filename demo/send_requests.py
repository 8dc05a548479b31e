#!/usr/bin/env python3
"""Sends the demo's requests to the running sidecars and prints what happened.

For every request: the status, the x-tenant-egress-denied header, the body and which upstream
answered (the mesh's x-upstream header), plus the filter's own verdict read from the
sidecar's counters (/stats: tenant_egress.allowed, .denied.<reason>, .audit_denied.<reason>),
each compared with what demo/policy.yaml says should happen. Exit status 1 if any request
behaves otherwise, so this doubles as a smoke test.

Usage: demo/send_requests.py [--ports FILE]   (default demo/ports.env; the tests pass a copy
                                              with other ports)

Works against the native demo (scripts/demo.sh) and the docker-compose one alike: it only
talks HTTP to 127.0.0.1. Standard library only; any python3 >= 3.8.
"""

import socket
import sys
import time
from pathlib import Path

DEMO = Path(__file__).resolve().parent
MARKER = "tenant-egress: request denied"
DENIED_HEADER = "x-tenant-egress-denied"
IO_TIMEOUT = 5.0
# The filter batches its counters and adds them to Envoy's stats every 250 ms.
COUNTER_WAIT = 3.0


def load_ports(path):
    env = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k] = v.strip('"')
    return env


# --- the requests ---------------------------------------------------------------------------
#
# (source sidecar, Host header(s), expected decision, expected reason, expected upstream)
#   decision: ALLOW (reached the upstream), DENY (403 from the filter),
#             AUDIT (reached the upstream; the filter counted what enforce mode would deny)
#   upstream: the mesh's x-upstream header of the service that must answer

INTERNET = "internet"  # replaced by "internet 127.0.0.1:<port>" once the ports are known


def cases():
    return [
        # prod: enforce, REGISTRY_ONLY, its own namespace only.
        ("prod", ["cockroachdb:26257"], "ALLOW", None, "cockroachdb.prod:26257"),
        ("prod", ["api.prod.svc.cluster.local:8080"], "ALLOW", None, "api.prod:8080"),
        ("prod", ["cockroachdb.uat.svc.cluster.local:26257"], "DENY", "not-allowed", None),
        ("prod", ["cockroachdb.dev:26257"], "DENY", "not-allowed", None),
        ("prod", ["logcatcher.logmonkey:80"], "DENY", "not-allowed", None),
        ("prod", ["www.example.com"], "DENY", "not-allowed", None),
        ("prod", ["downloads.example.org"], "DENY", "not-in-registry", None),
        # Host spoofing: a service's name on a port its route table does not have. Envoy finds
        # no virtual host and passes the request through to whatever address was dialled.
        ("prod", ["cockroachdb.prod.svc.cluster.local:8080"], "DENY", "authority-mismatch", None),
        # Two Host headers: Envoy would show the filter only the first one.
        ("prod", ["cockroachdb", "cockroachdb.uat"], "DENY", "malformed-authority", None),
        # batman-app in prod: prod's egress plus the workload exception.
        ("prod-batman", ["logcatcher.logmonkey.svc.cluster.local"], "ALLOW", None,
         "logcatcher.logmonkey:80"),
        ("prod-batman", ["cockroachdb:26257"], "ALLOW", None, "cockroachdb.prod:26257"),
        ("prod-batman", ["cockroachdb.uat:26257"], "DENY", "not-allowed", None),
        # uat: audit mode -- nothing blocked, denials counted.
        ("uat", ["cockroachdb:26257"], "ALLOW", None, "cockroachdb.uat:26257"),
        ("uat", ["cockroachdb.prod:26257"], "AUDIT", "not-allowed", "cockroachdb.prod:26257"),
        ("uat", ["downloads.example.org"], "AUDIT", "not-in-registry", INTERNET),
        # dev: ALLOW_ANY; uat's services but, on 26257, only its own database.
        ("dev", ["cockroachdb:26257"], "ALLOW", None, "cockroachdb.dev:26257"),
        ("dev", ["api.uat:8080"], "ALLOW", None, "api.uat:8080"),
        ("dev", ["cockroachdb.uat:26257"], "DENY", "not-allowed", None),
        ("dev", ["en.example.com"], "ALLOW", None, "*.example.com:80"),
        ("dev", ["secret.example.com"], "DENY", "excluded", None),
        ("dev", ["downloads.example.org"], "ALLOW", None, INTERNET),
        ("dev", ["cockroachdb.prod.svc.cluster.local:8080"], "DENY", "authority-mismatch", None),
        # A proxy without NAMESPACE metadata: fail closed.
        ("nometa", ["api.prod:8080"], "DENY", "unknown-source", None),
    ]


REASONS = [
    ("not-allowed", "no egress rule of the caller's tenant imports the destination"),
    ("not-in-registry", "outside the service registry (passthrough) and the tenant is "
     "REGISTRY_ONLY"),
    ("authority-mismatch", "Host spoofing: a mesh service's name, but no route for that port, "
     "so Envoy passed it through"),
    ("malformed-authority", "more than one Host header (Envoy would show the filter only the "
     "first)"),
    ("excluded", "an exclusion (\"~/secret.example.com\") wins over \"*/*.example.com\""),
    ("unknown-source", "the proxy has no NAMESPACE metadata, so no tenant: fail closed"),
]


# --- HTTP ------------------------------------------------------------------------------------


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (lowercase name, value)
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None


def http_get(port, hosts, path="/"):
    """One HTTP/1.1 request with raw Host header lines (so a duplicate can be sent)."""
    head = f"GET {path} HTTP/1.1\r\n"
    head += "".join(f"Host: {h}\r\n" for h in hosts)
    head += "User-Agent: tenant-egress-demo\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.settimeout(IO_TIMEOUT)
        s.sendall(head.encode("latin-1"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += recv(s)
        head_bytes, _, body = buf.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip().lower(), v.strip()))
        length = next((int(v) for k, v in headers if k == "content-length"), None)
        if length is not None:
            # Read exactly the body: after a local reply Envoy waits up to its
            # delayed_close_timeout (1 s) for the client to close first.
            while len(body) < length:
                body += recv(s)
            body = body[:length]
        else:
            while True:
                try:
                    body += recv(s)
                except EOFError:
                    break
            if ("transfer-encoding", "chunked") in headers:
                body = dechunk(body)
    return Response(status, headers, body.decode("utf-8", "replace"))


def recv(sock):
    b = sock.recv(65536)
    if not b:
        raise EOFError("connection closed")
    return b


def dechunk(data):
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def counters(admin_port):
    """The filter's counters: {"allowed": n, "denied.not_allowed": n, ...}."""
    r = http_get(admin_port, ["127.0.0.1"], "/stats?filter=tenant_egress")
    if r.status != 200:
        raise RuntimeError(f"admin port {admin_port}: /stats answered {r.status}")
    out = {}
    for line in r.body.splitlines():
        name, _, value = line.partition(": ")
        name = name.strip()
        for prefix in ("wasmcustom.", ""):
            if name.startswith(prefix + "tenant_egress."):
                try:
                    out[name[len(prefix + "tenant_egress."):]] = int(value)
                except ValueError:
                    pass
    return out


def verdict_from(before, admin_port):
    """Waits (bounded) for the filter to count this request; returns (decision, reason)."""
    total = lambda c: c.get("allowed", 0) + c.get("denied", 0) + c.get("audit_denied", 0)  # noqa: E731
    deadline = time.monotonic() + COUNTER_WAIT
    while True:
        after = counters(admin_port)
        if total(after) > total(before):
            break
        if time.monotonic() > deadline:
            return "?", "the filter counted nothing", after
        time.sleep(0.05)
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    if total(after) - total(before) != 1:
        return "?", f"counters moved by more than one request: {delta}", after
    if delta.get("allowed"):
        return "ALLOW", None, after
    for outcome, decision in (("denied", "DENY"), ("audit_denied", "AUDIT")):
        if delta.get(outcome):
            reasons = [k.split(".", 1)[1] for k in delta if k.startswith(outcome + ".")]
            reason = reasons[0].replace("_", "-") if len(reasons) == 1 else "?"
            return decision, reason, after
    return "?", f"unexpected counters {delta}", after


# --- main ------------------------------------------------------------------------------------


def main(argv):
    ports_file = DEMO / "ports.env"
    if argv[:1] == ["--ports"] and len(argv) == 2:
        ports_file = Path(argv[1])
    elif argv:
        print(__doc__, file=sys.stderr)
        return 2
    env = load_ports(ports_file)
    internet = f"internet 127.0.0.1:{env['INTERNET']}"

    rows = []
    failures = []
    last = {}
    for n, (src, hosts, want, want_reason, want_upstream) in enumerate(cases(), 1):
        key = src.replace("-", "_")
        listener, admin = int(env[f"LISTENER_{key}"]), int(env[f"ADMIN_{key}"])
        if want_upstream == INTERNET:
            want_upstream = internet
        before = last.get(src) or counters(admin)
        r = http_get(listener, hosts)
        decision, reason, last[src] = verdict_from(before, admin)
        header = r.header(DENIED_HEADER)
        upstream = r.header("x-upstream")
        problems = []
        if decision == "?":
            problems.append(reason)
        if decision == "DENY":
            if r.status != 403 or header != reason or not r.body.startswith(f"{MARKER} ({reason})"):
                problems.append(
                    f"counted as denied ({reason}) but answered {r.status}, "
                    f"{DENIED_HEADER}: {header}, body {r.body[:60]!r}"
                )
        elif decision in ("ALLOW", "AUDIT"):
            if r.status != 200 or header is not None or not upstream:
                problems.append(f"counted as {decision} but answered {r.status} ({header})")
        if (decision, reason, upstream if decision != "DENY" else None) != (
            want, want_reason, want_upstream
        ):
            problems.append("expected " + " ".join(x for x in (want, want_reason, want_upstream) if x))
        answered = "the filter (local reply)" if decision == "DENY" else (upstream or "-")
        request = hosts[0] if len(hosts) == 1 else f"{len(hosts)} Hosts: " + ", ".join(hosts)
        rows.append(
            (src, request, decision, str(r.status), reason or "-", answered,
             "ok" if not problems else "FAIL")
        )
        if problems:
            failures.append((n, src, hosts, problems, r))

    header_row = ("source", "request (Host header)", "decision", "status", "reason",
                  "answered by", "check")
    widths = [max(len(row[i]) for row in rows + [header_row]) for i in range(len(header_row))]
    fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    print(fmt(header_row))
    print(fmt(tuple("-" * w for w in widths)))
    prev = None
    for row in rows:
        if prev is not None and row[0] != prev:
            print()
        prev = row[0]
        print(fmt(row))
    print()
    print("decision and reason: the filter's own counters for each request (/stats).")
    print(f"  {'ALLOW':<20} reached the upstream")
    print(f"  {'DENY':<20} 403 from the filter, reason in the {DENIED_HEADER} header and the body")
    print(f"  {'AUDIT':<20} reached the upstream, counted as audit_denied (tenant uat is in audit mode)")
    seen = {row[4] for row in rows}
    for reason, text in REASONS:
        if reason in seen:
            print(f"  {reason:<20} {text}")
    if failures:
        print()
        for n, src, hosts, problems, r in failures:
            print(f"FAIL #{n} {src} Host {hosts}: " + "; ".join(problems))
            print(
                f"     got status {r.status}, {DENIED_HEADER}: {r.header(DENIED_HEADER)}, "
                f"x-upstream: {r.header('x-upstream')}, body: {r.body.splitlines()[:1]}"
            )
        print(f"\n{len(failures)} of {len(rows)} requests did not behave as expected")
        return 1
    print(f"\nall {len(rows)} requests behaved as demo/policy.yaml says")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (OSError, RuntimeError, EOFError) as e:
        print(f"error: {e} (is the demo running? scripts/demo.sh)", file=sys.stderr)
        sys.exit(2)
