//! A minimal HTTP/1.1 client over `std::net::TcpStream`.
//!
//! Requests are raw bytes so tests control every byte on the wire (duplicate
//! `Host` headers, absolute-form targets, odd whitespace, non-ASCII...).
//! Responses are parsed with support for `Content-Length`, chunked transfer
//! coding, read-until-close, `HEAD` and 1xx/204/304 (no body). Interim 1xx
//! responses (e.g. `100 Continue`) are skipped, except `101`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Read/write/connect timeout of every socket operation.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Upper bound on a response head, to fail instead of buffering garbage forever.
const MAX_HEAD: usize = 256 * 1024;

/// A parsed HTTP/1.x response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header fields in wire order; names keep their original case.
    pub headers: Vec<(String, String)>,
    /// The (de-chunked) body, lossily decoded as UTF-8.
    pub body: String,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (case-insensitive), in wire order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One client connection; several requests may be sent over it (keep-alive).
pub struct Http1Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Http1Conn {
    /// Connects to 127.0.0.1:`port` with [`IO_TIMEOUT`] on connect, read and write.
    pub fn connect(port: u16) -> io::Result<Self> {
        Self::connect_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// Connects to `addr` (e.g. a ClusterIP inside a private network namespace), same timeouts.
    pub fn connect_addr(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::new(),
            eof: false,
        })
    }

    /// Writes raw bytes (a full request, a part of one, or several pipelined ones).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sends `request` and reads one response. A request starting with
    /// `HEAD ` is answered without a body.
    pub fn request(&mut self, request: &[u8]) -> io::Result<Response> {
        self.send(request)?;
        self.read_response(request.starts_with(b"HEAD "))
    }

    /// Reads the next final response from the connection.
    pub fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        loop {
            let (status, headers) = self.read_head()?;
            if (100..200).contains(&status) && status != 101 {
                continue; // interim response; the final one follows
            }
            let body =
                if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
                    Vec::new()
                } else if header_has_token(&headers, "transfer-encoding", "chunked") {
                    self.read_chunked()?
                } else if let Some(len) = content_length(&headers)? {
                    self.read_exact_body(len)?
                } else {
                    self.read_to_close()?
                };
            return Ok(Response {
                status,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
    }

    /// Whether the peer has closed its side (observed while reading).
    pub fn peer_closed(&self) -> bool {
        self.eof
    }

    /// Reads more bytes into the buffer; `Ok(0)` at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = match self.stream.read(&mut chunk) {
            Ok(n) => n,
            // A reset after the server sent everything it wanted counts as EOF.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            self.eof = true;
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Takes one CRLF- (or LF-) terminated line out of the buffer, without the terminator.
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("response line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed mid-line (buffered: {:?})",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    fn read_head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        let status_line = self.read_line()?;
        let status_line = String::from_utf8_lossy(&status_line).into_owned();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(invalid(&format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(&format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        let mut total = 0usize;
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            if total > MAX_HEAD {
                return Err(invalid("response head too large"));
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid(&format!("bad header line {line:?}")))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        Ok((status, headers))
    }

    fn read_exact_body(&mut self, len: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < len {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed after {} of {len} body bytes",
                        self.buf.len()
                    ),
                ));
            }
        }
        Ok(self.buf.drain(..len).collect())
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let line = String::from_utf8_lossy(&line).into_owned();
            let size_str = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| invalid(&format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailer section, terminated by an empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact_body(size)?);
            if !self.read_line()?.is_empty() {
                return Err(invalid("missing CRLF after chunk data"));
            }
        }
    }

    fn read_to_close(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn header_has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn content_length(headers: &[(String, String)]) -> io::Result<Option<usize>> {
    match headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        None => Ok(None),
        Some((_, v)) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| invalid(&format!("bad content-length {v:?}"))),
    }
}

/// Sends raw `request` bytes to 127.0.0.1:`port` on a fresh connection and
/// reads one response.
///
/// Sent to a both-ends caller ([`crate::ends`]), a request its end denies is also sent to
/// the destination without the caller's filter, and the destination's verdict judged.
pub fn try_raw_http1(port: u16, request: &[u8]) -> io::Result<Response> {
    let r = Http1Conn::connect(port)?.request(request)?;
    crate::ends::after_response(port, &r, &|bypass| {
        Http1Conn::connect(bypass)
            .and_then(|mut c| c.request(request))
            .unwrap_or_else(|e| panic!("the bypass request to 127.0.0.1:{bypass} failed: {e}"))
    });
    Ok(r)
}

/// [`try_raw_http1`], panicking (with the request shown) on I/O or parse errors.
pub fn raw_http1(port: u16, request: &[u8]) -> Response {
    match try_raw_http1(port, request) {
        Ok(r) => r,
        Err(e) => panic!(
            "HTTP request to 127.0.0.1:{port} failed: {e}\nrequest: {:?}",
            String::from_utf8_lossy(request)
        ),
    }
}

/// `GET path HTTP/1.1` with `Host: host` and `Connection: close`.
pub fn get(port: u16, host: &str, path: &str) -> Response {
    get_with_headers(port, host, path, &[])
}

/// Like [`get`], with extra header fields appended after `Host`.
pub fn get_with_headers(port: u16, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    raw_http1(port, req.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// Serves `reply` to the first connection after reading the request head.
    fn one_shot_server(reply: &'static [u8]) -> (u16, thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&b[..n]);
            }
            s.write_all(reply).unwrap();
            got
        });
        (port, handle)
    }

    #[test]
    fn content_length_body() {
        let (port, h) =
            one_shot_server(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhelloEXTRA");
        let r = get(port, "example.com", "/p");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "hello");
        assert_eq!(r.header("x-a"), Some("1"));
        let req = String::from_utf8(h.join().unwrap()).unwrap();
        assert!(req.starts_with("GET /p HTTP/1.1\r\nHost: example.com\r\n"));
    }

    #[test]
    fn chunked_body_and_interim_response() {
        let (port, h) = one_shot_server(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
        );
        let r = raw_http1(port, b"POST / HTTP/1.1\r\nHost: a\r\n\r\n");
        h.join().unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.body, "hello world");
    }

    #[test]
    fn read_until_close_and_head() {
        let (port, h) = one_shot_server(b"HTTP/1.0 200 OK\r\nA: 1\r\na: 2\r\n\r\nuntil close");
        let r = raw_http1(port, b"GET / HTTP/1.0\r\n\r\n");
        h.join().unwrap();
        assert_eq!(r.body, "until close");
        assert_eq!(r.header_all("A"), vec!["1", "2"]);

        let (port, h) = one_shot_server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
        let r = raw_http1(port, b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
        h.join().unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, ""));
    }
}
