//! What the benchmark reads from `/proc`: CPU time of a process (all its threads), of the
//! whole machine, resident memory, the CPUs this process may run on, and pinning through
//! `taskset` (util-linux), since the workspace forbids the `unsafe` a direct
//! `sched_setaffinity` call would need.

use std::fs;
use std::io;
use std::process::Command;

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`; 100 on every Linux ABI
/// this runs on, which is also the fallback).
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of process `pid` (every thread), in clock ticks, from `/proc/<pid>/stat`.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    stat_cpu_ticks(&fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// utime + stime of this process (the load generator's threads), in clock ticks.
pub fn own_cpu_ticks() -> io::Result<u64> {
    stat_cpu_ticks(&fs::read_to_string("/proc/self/stat")?)
}

fn stat_cpu_ticks(stat: &str) -> io::Result<u64> {
    // The command name (field 2) may contain spaces and parentheses: the fields that follow
    // start after the LAST `)`. utime and stime are fields 14 and 15 (proc(5)), i.e. the
    // 12th and 13th after the command name.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| bad(stat))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad(stat))
    };
    Ok(get(11)? + get(12)?)
}

/// Busy (not idle, not iowait) clock ticks of all CPUs, from the first line of `/proc/stat`.
pub fn machine_busy_ticks() -> io::Result<u64> {
    let text = fs::read_to_string("/proc/stat")?;
    proc_stat_busy(&text).ok_or_else(|| bad(&text))
}

fn proc_stat_busy(text: &str) -> Option<u64> {
    let line = text.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
    // already counted in user, so only the first eight fields add up.
    let total: u64 = v.iter().take(8).sum();
    Some(total - v.get(3)? - v.get(4)?)
}

/// Resident memory of `pid` in MiB (`VmRSS`), 0 if unknown.
pub fn rss_mib(pid: u32) -> f64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| status_field_kib(&s, "VmRSS:"))
        .map_or(0.0, |kib| kib as f64 / 1024.0)
}

fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// 1-minute load average.
pub fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`).
pub fn allowed_cpus() -> Vec<usize> {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(parse_cpu_list)
        })
        .unwrap_or_default()
}

/// `0-3,8,10-11` → `[0, 1, 2, 3, 8, 10, 11]` (malformed parts are skipped).
fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in list.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.trim().parse::<usize>().ok()),
        }
    }
    out
}

/// Pins every thread of `pid` to `cpu` (`taskset -a -p -c`). Threads created later inherit
/// the affinity of the thread creating them, so pinning once after start-up holds.
pub fn pin(pid: u32, cpu: usize) -> io::Result<()> {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "taskset -a -p -c {cpu} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The CPU model (`model name` of `/proc/cpuinfo`).
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The kernel release (`/proc/sys/kernel/osrelease`).
pub fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn bad(text: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "unexpected /proc contents: {:?}",
            text.chars().take(200).collect::<String>()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_command_name_with_spaces_and_parens() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let stat = "42 (envoy (x) y) S 1 42 42 0 -1 4194560 10 0 0 0 1234 567 0 0 20 0 9 0";
        assert_eq!(stat_cpu_ticks(stat).unwrap(), 1234 + 567);
        assert!(stat_cpu_ticks("42 (envoy) S 1").is_err());
    }

    #[test]
    fn machine_busy_excludes_idle_iowait_and_guest() {
        let text = "cpu  100 5 50 1000 20 3 2 1 40 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(proc_stat_busy(text), Some(100 + 5 + 50 + 3 + 2 + 1));
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("1"), vec![1]);
        assert!(!allowed_cpus().is_empty());
    }

    #[test]
    fn own_process_figures() {
        assert!(status_field_kib("Name:\tx\nVmRSS:\t  2048 kB\n", "VmRSS:") == Some(2048));
        assert!(rss_mib(std::process::id()) > 0.0);
        assert!(own_cpu_ticks().is_ok());
        assert!(machine_busy_ticks().unwrap() > 0);
    }
}
