//! Reports, for each policy size, the heap memory a compiled [`Policy`] keeps (bytes total and
//! per host entry), the peak heap while compiling, and the compile time, by wrapping the system
//! allocator in a counting one around [`Policy::from_json`].
//!
//! Usage: `policy-memory [--markdown] [--shard|--destination-shard] [RULES...]` (default sizes
//! 10, 1000, 10000, 100000). With `--shard`, each row is instead the shard one sidecar loads
//! under sharded distribution (`tenant_egress_core::shard::shard_for`): that of the namespace
//! of the tenant whose rule count is closest to 100, in the RULES-rule policy; with
//! `--destination-shard`, that namespace's destination-end shard
//! (`tenant_egress_core::shard::destination_shard_for`), whose rule column counts the rules it
//! carries.
//! Build with `--release`: the time is meaningless otherwise.
#![allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition; it only forwards to System.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tenant_egress_bench::{generate_policy_bytes, DEFAULT_SEED, SIZES};
use tenant_egress_core::Policy;

/// Forwards to [`System`], counting live bytes and the high-water mark.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

fn add(delta: isize) {
    let now = LIVE.fetch_add(delta, Ordering::Relaxed) + delta;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters are side bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Row {
    rules: usize,
    json_bytes: usize,
    retained: isize,
    peak: isize,
    allocs: usize,
    compile: Duration,
    tenants: usize,
}

/// Which document a row measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    Whole,
    Shard,
    DestinationShard,
}

fn measure(rules: usize, cut: Cut) -> Result<Row, String> {
    let whole = generate_policy_bytes(rules, DEFAULT_SEED);
    let (bytes, rules) = match cut {
        Cut::Whole => (whole, rules),
        cut => shard_of_a_100_rule_tenant(&whole, cut == Cut::DestinationShard)?,
    };
    // Warm-up (page faults, allocator pools), then the counted run.
    drop(Policy::from_json(&bytes).map_err(|e| e.to_string())?);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let allocs_before = ALLOCS.load(Ordering::Relaxed);
    let (policy, warnings) = Policy::from_json(&bytes).map_err(|e| e.to_string())?;
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs_before;
    let peak = PEAK.load(Ordering::Relaxed) - before;
    drop(warnings);
    let retained = LIVE.load(Ordering::Relaxed) - before;
    if policy.rule_count() != rules {
        return Err(format!(
            "{} rules compiled, {rules} asked",
            policy.rule_count()
        ));
    }
    let tenants = policy.tenant_count();
    drop(policy);
    // Time: the median of several runs (fewer for the big sizes).
    let runs = if rules >= 100_000 { 7 } else { 21 };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let compiled = Policy::from_json(&bytes).map_err(|e| e.to_string())?;
        times.push(t.elapsed());
        drop(compiled);
    }
    times.sort();
    Ok(Row {
        rules,
        json_bytes: bytes.len(),
        retained,
        peak,
        allocs,
        compile: times.get(runs / 2).copied().unwrap_or_default(),
        tenants,
    })
}

/// The shard (JSON) of the first namespace of the tenant whose host entries number closest to
/// 100 (or that namespace's destination shard), and the number of host entries it carries.
fn shard_of_a_100_rule_tenant(whole: &[u8], destination: bool) -> Result<(Vec<u8>, usize), String> {
    let (spec, _) =
        tenant_egress_core::validate::validate_json(whole).map_err(|e| e.to_string())?;
    let rules = tenant_egress_bench::tenant_host_entries;
    let tenant =
        tenant_egress_bench::hundred_rule_tenant(&spec).ok_or("the policy has no tenant")?;
    let ns = tenant
        .namespaces
        .first()
        .ok_or("a tenant without namespaces")?;
    if destination {
        let shard = tenant_egress_core::shard::destination_shard_for(&spec, ns)
            .ok_or("no destination shard")?;
        let bytes = serde_json::to_vec(&shard).map_err(|e| e.to_string())?;
        return Ok((bytes, shard.tenants.iter().map(rules).sum()));
    }
    let shard = tenant_egress_core::shard::shard_for(&spec, ns);
    let bytes = serde_json::to_vec(&shard).map_err(|e| e.to_string())?;
    Ok((bytes, rules(tenant)))
}

fn mib(b: isize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() -> std::process::ExitCode {
    let mut markdown = false;
    let mut cut = Cut::Whole;
    let mut sizes = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--markdown" => markdown = true,
            "--shard" => cut = Cut::Shard,
            "--destination-shard" => cut = Cut::DestinationShard,
            s => match s.replace('_', "").parse::<usize>() {
                Ok(n) => sizes.push(n),
                Err(_) => {
                    eprintln!(
                        "usage: policy-memory [--markdown] [--shard|--destination-shard] [RULES...]"
                    );
                    return std::process::ExitCode::from(2);
                }
            },
        }
    }
    if sizes.is_empty() {
        sizes = SIZES.to_vec();
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; times are meaningless (use --release)");
    }
    println!(
        "| rules | tenants | policy JSON | compiled policy (heap) | bytes/rule | peak heap while compiling | allocations | compile time (median) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for rules in sizes {
        match measure(rules, cut) {
            Ok(r) => {
                let per_rule = r.retained as f64 / r.rules as f64;
                println!(
                    "| {} | {} | {:.2} MiB | {:.2} MiB ({} B) | {:.0} | {:.2} MiB | {} | {:.2} ms |",
                    r.rules,
                    r.tenants,
                    mib(r.json_bytes as isize),
                    mib(r.retained),
                    r.retained,
                    per_rule,
                    mib(r.peak),
                    r.allocs,
                    r.compile.as_secs_f64() * 1e3,
                );
            }
            Err(e) => {
                eprintln!("policy-memory: {rules} rules: {e}");
                return std::process::ExitCode::from(1);
            }
        }
    }
    if !markdown {
        println!(
            "\ncompiled policy = heap retained by the Policy (allocator bytes requested, excluding \
             allocator overhead and the input JSON); peak = high-water mark during from_json \
             (JSON value + spec + indexes); std HashMap/Vec capacity slack is included."
        );
    }
    std::process::ExitCode::SUCCESS
}
