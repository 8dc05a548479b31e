//! The load generator: closed-loop HTTP/1.1 keep-alive clients, one thread and one connection
//! each, as `wrk -t1 -cN` drives N connections, sending the same request again as soon as the
//! answer is in. It uses the test kit's client ([`Http1Conn`]); it runs on the load CPU, so
//! its own cost never counts in the sidecar's CPU per request.
//!
//! Bounded: every run stops at its deadline or after `max_requests`, whichever comes first;
//! sockets have the kit's I/O timeout; loopback only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tenant_egress_tests::Http1Conn;

/// What one run produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Responses received.
    pub requests: u64,
    /// Responses whose status was not the expected one.
    pub unexpected: u64,
    /// Connect, read or write errors (each followed by a new connection).
    pub socket_errors: u64,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// Latency of every response, in microseconds (unsorted).
    pub latencies_us: Vec<u32>,
}

impl Outcome {
    /// Requests per second over the run.
    pub fn rps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.requests as f64 / s
        } else {
            0.0
        }
    }
}

/// The `p`th percentile (0..=100, nearest rank) of `sorted`, in milliseconds.
pub fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

/// The request every connection sends: `GET /` with `Host: <host>` plus `extra` header lines
/// (each `name: value`, no CRLF), keep-alive.
pub fn request_bytes(host: &str, extra: &[String]) -> Vec<u8> {
    let mut r = format!("GET / HTTP/1.1\r\nHost: {host}\r\n");
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// The header lines of a realistic request besides `Host` (21, so 22 with it): what a browser
/// behind an ingress and a traced mesh put on a request, with a 2 KB cookie and a 1 KB bearer
/// token (issue 14's "realistic request"). Deterministic, so every run sends the same bytes.
pub fn realistic_headers() -> Vec<String> {
    vec![
        "user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/124.0.0.0 Safari/537.36"
            .into(),
        "accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".into(),
        "accept-language: en-US,en;q=0.9,de;q=0.8".into(),
        "accept-encoding: gzip, deflate, br".into(),
        "cache-control: no-cache".into(),
        "pragma: no-cache".into(),
        "origin: https://app.example.com".into(),
        "referer: https://app.example.com/dashboard/overview?tab=usage&range=7d".into(),
        "content-type: application/json".into(),
        format!("cookie: {}", cookie(2048)),
        format!("authorization: Bearer {}", token(1024)),
        "x-request-id: 6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f".into(),
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        "tracestate: rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into(),
        "baggage: userId=alice,serverNode=DF%2028,isProduction=false".into(),
        "x-b3-traceid: 4bf92f3577b34da6a3ce929d0e0e4736".into(),
        "x-b3-spanid: 00f067aa0ba902b7".into(),
        "x-b3-parentspanid: a3ce929d0e0e4736".into(),
        "x-b3-sampled: 1".into(),
        "x-forwarded-for: 203.0.113.7, 10.0.0.12".into(),
        "x-forwarded-proto: https".into(),
    ]
}

/// `len` bytes of base64url-looking text, deterministic.
fn filler(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = tenant_egress_bench::Rng::new(seed);
    (0..len)
        .map(|_| char::from(ALPHABET[(rng.next_u64() % 64) as usize]))
        .collect()
}

/// A cookie header value of exactly `len` bytes: a session id, a CSRF token, analytics ids.
fn cookie(len: usize) -> String {
    let head = format!(
        "session={}; csrftoken={}; _ga=",
        filler(48, 1),
        filler(32, 2)
    );
    let rest = len.saturating_sub(head.len());
    head + &filler(rest, 3)
}

/// A JWT-shaped bearer token (`header.payload.signature`) of exactly `len` bytes.
fn token(len: usize) -> String {
    let head = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.";
    let sig = len.saturating_sub(head.len()) / 3;
    let payload = len.saturating_sub(head.len() + sig + 1);
    format!("{head}{}.{}", filler(payload, 4), filler(sig, 5))
}

/// Runs `connections` closed-loop clients against 127.0.0.1:`port` for `duration` (or until
/// `max_requests` answers in total), each sending `request` and expecting status `expect`.
pub fn run(
    port: u16,
    request: &[u8],
    expect: u16,
    connections: usize,
    duration: Duration,
    max_requests: Option<u64>,
) -> Outcome {
    let request: Arc<[u8]> = Arc::from(request);
    let budget = Arc::new(AtomicU64::new(max_requests.unwrap_or(u64::MAX)));
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let request = Arc::clone(&request);
            let budget = Arc::clone(&budget);
            thread::spawn(move || client(port, &request, expect, deadline, &budget))
        })
        .collect();
    let mut total = Outcome::default();
    for w in workers {
        // A client thread never panics (every error is counted), but if one did, its
        // requests are missing: count it as a socket error rather than abort the run.
        match w.join() {
            Ok(o) => {
                total.requests += o.requests;
                total.unexpected += o.unexpected;
                total.socket_errors += o.socket_errors;
                total.latencies_us.extend(o.latencies_us);
            }
            Err(_) => total.socket_errors += 1,
        }
    }
    total.elapsed = start.elapsed();
    total
}

/// Takes one request from the shared budget; false when it is spent.
fn take(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

fn client(
    port: u16,
    request: &[u8],
    expect: u16,
    deadline: Instant,
    budget: &AtomicU64,
) -> Outcome {
    let mut out = Outcome::default();
    let mut conn: Option<Http1Conn> = None;
    while Instant::now() < deadline && take(budget) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Http1Conn::connect(port) {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    out.socket_errors += 1;
                    // Do not spin on a refused connection; the deadline still bounds the loop.
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        let t0 = Instant::now();
        match c.request(request) {
            Ok(r) => {
                let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                out.latencies_us.push(us);
                out.requests += 1;
                if r.status != expect {
                    out.unexpected += 1;
                }
                let close = r
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                if close || c.peer_closed() {
                    conn = None;
                }
            }
            Err(_) => {
                out.socket_errors += 1;
                conn = None;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), 50.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&v, 100.0), 100.0);
        assert_eq!(percentile_ms(&[7000], 50.0), 7.0);
        assert!(percentile_ms(&[], 50.0).is_nan());
    }

    #[test]
    fn realistic_request_has_22_headers_a_2k_cookie_and_a_1k_token() {
        let h = realistic_headers();
        assert_eq!(h.len() + 1, 22);
        let value = |name: &str| {
            h.iter()
                .find_map(|l| l.strip_prefix(name))
                .map(str::len)
                .unwrap()
        };
        assert_eq!(value("cookie: "), 2048);
        assert_eq!(value("authorization: Bearer "), 1024);
        assert_eq!(realistic_headers(), h, "deterministic");
        let names: std::collections::BTreeSet<&str> = h
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names.len(), h.len(), "no header twice");
    }

    #[test]
    fn request_has_host_and_extra_headers() {
        let r = request_bytes("a.b", &["x-a: 1".into()]);
        assert_eq!(r, b"GET / HTTP/1.1\r\nHost: a.b\r\nx-a: 1\r\n\r\n");
    }

    /// A keep-alive server answering `status` to every request on every connection.
    fn server(status: u16) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut b = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let reply =
                                format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
                            if s.write_all(reply.as_bytes()).is_err() {
                                return;
                            }
                        }
                        match s.read(&mut b) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&b[..n]),
                        }
                    }
                });
            }
        });
        port
    }

    #[test]
    fn counts_requests_and_unexpected_statuses_within_the_budget() {
        let port = server(200);
        let req = request_bytes("x", &[]);
        let o = run(port, &req, 200, 3, Duration::from_secs(5), Some(300));
        assert_eq!(o.requests, 300);
        assert_eq!((o.unexpected, o.socket_errors), (0, 0));
        assert_eq!(o.latencies_us.len(), 300);
        assert!(o.rps() > 0.0);
        let o = run(port, &req, 403, 2, Duration::from_secs(5), Some(10));
        assert_eq!((o.requests, o.unexpected), (10, 10));
    }

    #[test]
    fn stops_at_the_deadline_and_counts_refused_connections() {
        let port = tenant_egress_tests::free_port(); // nothing listens there
        let t0 = Instant::now();
        let o = run(
            port,
            b"GET / HTTP/1.1\r\n\r\n",
            200,
            2,
            Duration::from_millis(200),
            None,
        );
        assert!(t0.elapsed() < Duration::from_secs(3));
        assert_eq!(o.requests, 0);
        assert!(o.socket_errors > 0);
    }
}
