//! Writes a generated policy document (JSON) to stdout.
//!
//! Usage: `gen-policy RULES [SEED]` (SEED defaults to the benches' seed). The document has
//! exactly RULES host entries; see `tenant_egress_bench::generate_policy`.

use std::io::Write;
use std::process::ExitCode;

use tenant_egress_bench::{generate_policy, DEFAULT_SEED};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        eprintln!("usage: gen-policy RULES [SEED]");
        ExitCode::from(2)
    };
    let Some(rules) = args
        .first()
        .and_then(|s| s.replace('_', "").parse::<usize>().ok())
    else {
        return usage();
    };
    let seed = match args.get(1) {
        None => DEFAULT_SEED,
        Some(s) => match s.parse::<u64>() {
            Ok(v) => v,
            Err(_) => return usage(),
        },
    };
    let doc = generate_policy(rules, seed);
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, &doc)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-policy: {e}");
            ExitCode::from(1)
        }
    }
}
