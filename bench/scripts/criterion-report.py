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
    lines = ["### decide: one decision (`decide_for`, source resolved once), median", "",
             "| case | 10 rules | 1,000 | 10,000 | 100,000 | 100k / 10 |", "|---|---:|---:|---:|---:|---:|"]
    cases = sorted({k.split("/")[1] for k in r if k.startswith("decide/")},
                   key=lambda c: ["exact_hit", "wildcard_hit", "miss", "port_mismatch", "exclusion",
                                  "authority_only", "cluster_alias"].index(c) if c in
                   ["exact_hit", "wildcard_hit", "miss", "port_mismatch", "exclusion",
                    "authority_only", "cluster_alias"] else 99)
    groups = [(c, f"decide/{c}") for c in cases] + [("decide (with source resolution)", "decide_with_source")]
    for label, g in groups:
        vals = [r.get(f"{g}/{s}") for s in SIZES]
        if not any(vals):
            continue
        cells = [fmt_ns(v[0]) if v else "–" for v in vals]
        ratio = f"{vals[3][0] / vals[0][0]:.2f}x" if vals[0] and vals[3] else "–"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
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
