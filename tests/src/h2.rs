//! HTTP/2 requests with full control of the header list (duplicates, `host` beside
//! `:authority`, raw bytes), sent by `tests/scripts/h2client.py` with the `h2` package that
//! `scripts/setup.sh` installs into the project's `.venv`.

use std::process::Command;

use serde_json::Value;

use crate::http::Response;
use crate::workspace_root;

/// A header value: text, or raw bytes.
pub enum H2Value<'a> {
    /// UTF-8 text.
    Text(&'a str),
    /// Arbitrary bytes.
    Bytes(&'a [u8]),
}

/// Sends one HTTP/2 prior-knowledge request with exactly `headers` (pseudo-headers included)
/// to 127.0.0.1:`port`. A reset stream or connection yields status 0 and the reason in the
/// `x-h2-reset` pseudo response header.
///
/// Sent to a both-ends caller ([`crate::ends`]), a request its end denies is also sent to the
/// destination without the caller's filter, and the destination's verdict judged.
pub fn h2_request(port: u16, headers: &[(&str, H2Value<'_>)]) -> Response {
    let r = h2_request_once(port, headers);
    crate::ends::after_response(port, &r, &|bypass| h2_request_once(bypass, headers));
    r
}

fn h2_request_once(port: u16, headers: &[(&str, H2Value<'_>)]) -> Response {
    let list: Vec<Value> = headers
        .iter()
        .map(|(k, v)| match v {
            H2Value::Text(t) => serde_json::json!([k, t]),
            H2Value::Bytes(b) => {
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                serde_json::json!([k, {"hex": hex}])
            }
        })
        .collect();
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    let script = root.join("tests/scripts/h2client.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(port.to_string())
        .arg(Value::Array(list).to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (run scripts/setup.sh): {e}",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "h2client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("h2client prints JSON");
    let mut headers: Vec<(String, String)> = v["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| Some((h[0].as_str()?.to_owned(), h[1].as_str()?.to_owned())))
        .collect();
    if let Some(reset) = v["reset"].as_str() {
        headers.push(("x-h2-reset".into(), reset.into()));
    }
    Response {
        status: v["status"].as_u64().unwrap_or(0) as u16,
        headers,
        body: v["body"].as_str().unwrap_or_default().to_owned(),
    }
}

/// A GET with `:authority` and any extra headers.
pub fn h2_get(port: u16, authority: &str, extra: &[(&str, &str)]) -> Response {
    let mut headers = vec![
        (":method", H2Value::Text("GET")),
        (":scheme", H2Value::Text("http")),
        (":authority", H2Value::Text(authority)),
        (":path", H2Value::Text("/")),
    ];
    headers.extend(extra.iter().map(|(k, v)| (*k, H2Value::Text(v))));
    h2_request(port, &headers)
}
