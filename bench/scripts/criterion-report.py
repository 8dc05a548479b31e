#!/usr/bin/env python3
"""Turns criterion's saved estimates (<target>/criterion/**/new/) into Markdown tables.

Usage: criterion-report.py TARGET_DIR [MEMORY_TABLE_FILE] > report.md
Standard library only. Medians (criterion's point estimate of the median), with the 95%
confidence interval of the median in the detail table.
"""

import json
import sys
from pathlib import Path

SIZES = ["10", "1000", "10000", "100000"]


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def load(target: Path) -> dict:
    out = {}
    for bench in (target / "criterion").glob("**/new/benchmark.json"):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())["median"]
        out[meta["full_id"]] = (
            est["point_estimate"],
            est["confidence_interval"]["lower_bound"],
            est["confidence_interval"]["upper_bound"],
        )
    return out


def main() -> int:
    target = Path(sys.argv[1])
    r = load(target)
    if not r:
        print(f"no criterion results under {target}/criterion", file=sys.stderr)
        return 1
    order = ["exact_hit", "wildcard_hit", "miss", "port_mismatch", "exclusion",
             "authority_only", "cluster_alias", "k8s_miss"]

    def cases_of(prefix: str) -> list:
        found = {k.split("/")[1] for k in r if k.startswith(prefix + "/")}
        return sorted(found, key=lambda c: order.index(c) if c in order else 99)

    def table(title: str, groups: list) -> list:
        out = ["", title, "", "| case | 10 rules | 1,000 | 10,000 | 100,000 | 100k / 10 |",
               "|---|---:|---:|---:|---:|---:|"]
        for label, g in groups:
            vals = [r.get(f"{g}/{s}") for s in SIZES]
            if not any(vals):
                continue
            cells = [fmt_ns(v[0]) if v else "–" for v in vals]
            ratio = f"{vals[3][0] / vals[0][0]:.2f}x" if vals[0] and vals[3] else "–"
            out.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
        return out

    lines = table("### decide: one decision (`decide_for`: source resolved once, cluster name parsed per call), median",
                  [(c, f"decide/{c}") for c in cases_of("decide")]
                  + [("decide (with source resolution)", "decide_with_source")])[1:]
    lines += table("### decide_routed: the filter's caller-side path (`decide_routed`: cluster name parsed once per cluster), median",
                   [(c, f"decide_routed/{c}") for c in cases_of("decide_routed")])
    lines += table("### decide_inbound: the destination end, nothing cached (`decide_inbound`: identity, SNI and authority parsed per call), median",
                   [(c, f"decide_inbound/{c}") for c in cases_of("decide_inbound")])
    lines += table("### decide_inbound_cached: the filter's destination-side path (`decide_inbound_with`: identity and SNI resolved once), median",
                   [(c, f"decide_inbound_cached/{c}") for c in cases_of("decide_inbound_cached")])
    both = [c for c in cases_of("decide_inbound_cached") if f"decide_routed/{c}/100000" in r]
    if both:
        lines += ["", "### destination end vs caller's end, same request, same footing (issue 12): `decide_inbound_cached` / `decide_routed`, median", "",
                  "| case | 10 rules | 1,000 | 10,000 | 100,000 |", "|---|---:|---:|---:|---:|"]
        for c in both:
            cells = []
            for size in SIZES:
                a, b = r.get(f"decide_inbound_cached/{c}/{size}"), r.get(f"decide_routed/{c}/{size}")
                cells.append(f"{fmt_ns(a[0])} / {fmt_ns(b[0])} = {a[0] / b[0]:.2f}x" if a and b else "–")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", "### compile (Policy::from_json), validate (validate_json), from_spec (check + index build), median", "",
              "| step | 10 rules | 1,000 | 10,000 | 100,000 |", "|---|---:|---:|---:|---:|"]
    for g in ("compile", "validate", "from_spec"):
        vals = [r.get(f"{g}/{s}") for s in SIZES]
        if any(vals):
            lines.append(f"| {g} | " + " | ".join(fmt_ns(v[0]) if v else "–" for v in vals) + " |")
    lines += ["", "### parsing, median", "", "| input | time |", "|---|---:|"]
    for k in sorted(k for k in r if k.startswith(("authority/", "cluster/"))):
        lines.append(f"| `{k}` | {fmt_ns(r[k][0])} |")
    if len(sys.argv) > 2 and Path(sys.argv[2]).exists():
        lines += ["", "### compiled policy memory (policy-memory)", "", Path(sys.argv[2]).read_text().strip()]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
