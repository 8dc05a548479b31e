//! The HTTP filter's context: one per request (Istio WasmPlugin `type: HTTP`, in the sidecar's
//! outbound HTTP filter chain). It decides at the request headers, through `enforce.rs`; a
//! denied request gets a local reply and never reaches the router.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::enforce::{enforce, At, Outcome};
use crate::host::{Host, Proxy};
use crate::state::State;

/// One request.
pub struct Http<H: Host = Proxy> {
    host: H,
    state: Option<Rc<State>>,
}

impl<H: Host> Http<H> {
    /// A context sharing the configuration's state (`None`: no policy ever loaded).
    pub fn new(host: H, state: Option<Rc<State>>) -> Http<H> {
        Http { host, state }
    }
}

impl<H: Host> Context for Http<H> {}

impl<H: Host> HttpContext for Http<H> {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match enforce(&self.host, self.state.as_deref(), At::RequestHeaders) {
            // The local reply is sent: stop the request here.
            Outcome::Deny => Action::Pause,
            Outcome::Allow | Outcome::Undecided => Action::Continue,
        }
    }
}
