#!/usr/bin/env python3
"""Sends ONE HTTP/2 (prior knowledge, cleartext) request with exactly the header list given,
and prints the response as JSON: {"status": 403, "headers": [[k, v], ...], "body": "..."}.

The header list is sent as is: duplicates, a `host` next to `:authority`, odd bytes. Header
validation of the h2 library is switched off on purpose, so the test reaches Envoy's codec
and the filter with what an attacker could send. If the server resets the stream or the
connection, prints {"status": 0, "reset": "<why>"}.

usage: h2client.py PORT JSON_HEADER_LIST   (e.g. '[[":method","GET"],[":authority","a"]]')
Values may be given as {"hex": "..."} to send arbitrary bytes.

Why Python, in a test kit that is otherwise Rust (tests/src, called through tests/src/h2.rs):
this client must send header lists that are NOT valid HTTP/2 -- a second :authority, a `host`
that contradicts :authority, bytes RFC 9113 section 8.2.1 forbids -- to prove the filter and
Envoy's codec handle what an attacker could send. Python's h2 lets a caller switch outbound
header validation off (validate_outbound_headers=False). The Rust HTTP/2 client (the h2
crate, which hyper uses) takes a request as `http` types: the pseudo-headers come from the
URI and cannot repeat, and names and values are validated when they are built, so a second
:authority cannot even be expressed. Writing our own HPACK encoder and framing instead would
be a second, untested HTTP/2 implementation in the test kit. Everything else (HTTP/1, Envoy
bootstraps and processes, the demo) is Rust.
"""
import json
import socket
import sys

import h2.config
import h2.connection
import h2.events


def main():
    port = int(sys.argv[1])
    raw = json.loads(sys.argv[2])
    headers = []
    for k, v in raw:
        if isinstance(v, dict):
            v = bytes.fromhex(v["hex"])
        else:
            v = v.encode()
        headers.append((k.encode(), v))
    cfg = h2.config.H2Configuration(
        client_side=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=cfg)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    out = {"status": 0, "headers": [], "body": ""}
    body = b""
    done = False
    while not done:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            out["reset"] = "timeout"
            break
        except ConnectionResetError:
            out["reset"] = "connection reset by peer"
            break
        if not data:
            out.setdefault("reset", "connection closed")
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                for k, v in ev.headers:
                    k = k.decode() if isinstance(k, bytes) else k
                    v = v.decode("latin-1") if isinstance(v, bytes) else v
                    if k == ":status":
                        out["status"] = int(v)
                    else:
                        out["headers"].append([k, v])
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                done = True
            elif isinstance(ev, h2.events.StreamReset):
                out["reset"] = "stream reset (error code %s)" % ev.error_code
                done = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                out["reset"] = "goaway (error code %s)" % ev.error_code
                done = True
        try:
            sock.sendall(conn.data_to_send())
        except OSError:
            break
    sock.close()
    out["body"] = body.decode("utf-8", "replace")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
