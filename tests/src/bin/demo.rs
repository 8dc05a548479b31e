//! `tenant-egress-demo`: the demo's tooling, on the test kit (`tenant_egress_tests::demo`).
//!
//! ```text
//! tenant-egress-demo render            write demo/*.yaml, demo/docker-compose.yaml and
//!                                      demo/ports.env from demo/policy/ and the topology
//! tenant-egress-demo check             exit 1 if a committed file differs from a fresh render
//! tenant-egress-demo certs [DIR]       make the mesh CA and the both-ends Envoys' workload
//!                                      certificates (fresh keys) in DIR (target/demo/pki)
//! tenant-egress-demo requests [--ports FILE]
//!                                      send the demo's requests and connections to the running
//!                                      Envoys, print the tables; exit 1 if any did not behave as
//!                                      demo/policy/ says, 2 if the demo is not running
//! ```
//!
//! `requests` talks HTTP to 127.0.0.1 only, so it works against the native demo
//! (`scripts/demo.sh`) and the docker compose one alike; `--ports` reads another ports file
//! (the format of `demo/ports.env`).

use std::path::PathBuf;
use std::process::ExitCode;

use tenant_egress_tests::demo::{self, Ports};

const USAGE: &str =
    "usage: tenant-egress-demo render | check | certs [DIR] | requests [--ports FILE]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = demo::demo_dir();
    let result = match args[..] {
        ["render"] => render(&dir),
        ["check"] => check(&dir),
        ["certs"] => certs(&tenant_egress_tests::workspace_root().join("target/demo/pki")),
        ["certs", to] => certs(std::path::Path::new(to)),
        ["requests"] => requests(&dir, None),
        ["requests", "--ports", file] => requests(&dir, Some(PathBuf::from(file))),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err((2, USAGE.to_string())),
    };
    result.unwrap_or_else(|(code, msg)| {
        eprintln!("error: {msg}");
        ExitCode::from(code)
    })
}

type Outcome = Result<ExitCode, (u8, String)>;

fn render(dir: &std::path::Path) -> Outcome {
    let changed = demo::write(dir).map_err(|e| (2, e))?;
    if changed.is_empty() {
        println!("demo/: every rendered file was already up to date");
    }
    for name in changed {
        println!("wrote demo/{name}");
    }
    Ok(ExitCode::SUCCESS)
}

fn check(dir: &std::path::Path) -> Outcome {
    let stale = demo::check(dir).map_err(|e| (2, e))?;
    if stale.is_empty() {
        println!("demo/: every rendered file is up to date");
        return Ok(ExitCode::SUCCESS);
    }
    for (name, diff) in &stale {
        println!("demo/{name}: differs from a fresh render at {diff}");
    }
    Err((
        1,
        format!(
            "stale: {}; run `cargo run -p tenant-egress-tests --bin tenant-egress-demo -- render`",
            stale
                .iter()
                .map(|(n, _)| format!("demo/{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

fn certs(to: &std::path::Path) -> Outcome {
    let ids = demo::make_certs(to).map_err(|e| (2, e))?;
    println!(
        "{}: the mesh CA (ca.pem) and workload certificates for {}",
        to.display(),
        ids.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn requests(dir: &std::path::Path, ports_file: Option<PathBuf>) -> Outcome {
    let ports = match ports_file {
        None => Ports::fixed(),
        Some(f) => {
            let text =
                std::fs::read_to_string(&f).map_err(|e| (2, format!("{}: {e}", f.display())))?;
            Ports::from_env(&text).map_err(|e| (2, format!("{}: {e}", f.display())))?
        }
    };
    let json = demo::read_policy(dir).map_err(|e| (2, e))?;
    let (policy, _warnings) = tenant_egress_core::Policy::from_json(json.as_bytes())
        .map_err(|e| (2, format!("demo/policy/: {e}")))?;
    let report = demo::run(&policy, &ports)
        .map_err(|e| (2, format!("{e} (is the demo running? scripts/demo.sh)")))?;
    print!("{}", demo::format_report(&report));
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
