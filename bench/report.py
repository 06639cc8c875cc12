#!/usr/bin/env python3
"""Turns criterion's results into the tables and chart of BENCHMARKS.md.

Reads <target>/criterion/<group>/<bench>/new/estimates.json (medians),
writes the block between the `generated` markers of ../BENCHMARKS.md and
the chart bench/chart.svg. Ratios are against each group's baseline (the
peer or floor named in BASELINES), the headline; absolute times follow.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent
TARGET = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target"
CRITERION = TARGET / "criterion"

# Group prefix -> the bench the others are compared with.
BASELINES = {
    "jwt_": "bare_decode",
    "backend_": "jsonwebtoken_aws_lc_rs",
    "session_": "tower_sessions_memory",
    "csrf_protected_post": "tower_http_csrf",
    "revocation_check_1M": "redis_round_trip_clean",
    "redis_session_": "single_node",
}
START = "<!-- generated:start (bench/run) -->"
END = "<!-- generated:end -->"


def median_ns(path):
    return json.loads(path.read_text())["median"]["point_estimate"]


def fmt(ns):
    if ns >= 1000:
        return f"{ns / 1000:.2f} µs"
    return f"{ns:.0f} ns"


def groups():
    found = {}
    for estimates in sorted(CRITERION.glob("*/*/new/estimates.json")):
        bench_dir = estimates.parent.parent
        found.setdefault(bench_dir.parent.name, {})[bench_dir.name] = median_ns(estimates)
    return found


def baseline_for(group, benches):
    for prefix, name in BASELINES.items():
        if group.startswith(prefix):
            for bench in benches:
                if bench.startswith(name):
                    return bench
    return None


def tables(found):
    out = []
    for group, benches in found.items():
        base = baseline_for(group, benches)
        out.append(f"### `{group}`\n")
        out.append(f"| bench | median | × {base or '—'} |")
        out.append("|---|---|---|")
        for bench, ns in sorted(benches.items(), key=lambda item: item[1]):
            ratio = f"{ns / benches[base]:.3f}" if base else "—"
            out.append(f"| {bench} | {fmt(ns)} | {ratio} |")
        out.append("")
    return "\n".join(out)


def chart(found):
    rows = []
    for group, benches in found.items():
        base = baseline_for(group, benches)
        if not base:
            continue
        for bench, ns in sorted(benches.items()):
            rows.append((f"{group} / {bench}", ns / benches[base], bench == base))
    width, bar_left, row_height = 960, 430, 18
    top = max((ratio for _, ratio, _ in rows), default=1.0)
    scale = (width - bar_left - 70) / max(top, 1.0)
    height = 40 + row_height * len(rows)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        f'<text x="10" y="18" font-size="13">Per-request cost relative to each group\'s baseline (1.0 = baseline; lower is cheaper)</text>',
    ]
    for index, (label, ratio, is_base) in enumerate(rows):
        y = 30 + index * row_height
        color = "#999" if is_base else ("#2a7" if ratio <= 1 else "#c54")
        parts.append(f'<text x="{bar_left - 6}" y="{y + 12}" text-anchor="end">{label}</text>')
        parts.append(f'<rect x="{bar_left}" y="{y + 2}" width="{max(ratio * scale, 1):.1f}" height="{row_height - 5}" fill="{color}"/>')
        parts.append(f'<text x="{bar_left + ratio * scale + 4:.1f}" y="{y + 12}">{ratio:.3f}</text>')
    x1 = bar_left + scale
    parts.append(f'<line x1="{x1:.1f}" y1="26" x2="{x1:.1f}" y2="{height}" stroke="#333" stroke-dasharray="3,3"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def main():
    found = groups()
    if not found:
        sys.exit(f"no criterion results under {CRITERION}: run the benches first")
    (ROOT / "chart.svg").write_text(chart(found))
    load = TARGET / "load.md"
    load_table = load.read_text() if load.exists() else ""
    block = f"{START}\n\n![ratios](bench/chart.svg)\n\n{load_table}\n{tables(found)}\n{END}"
    doc_path = ROOT.parent / "BENCHMARKS.md"
    doc = doc_path.read_text()
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        doc = head + block + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip() + "\n\n## All results, generated\n\n" + block + "\n"
    doc_path.write_text(doc)
    print(f"wrote {doc_path} and {ROOT / 'chart.svg'} from {sum(len(b) for b in found.values())} results")


if __name__ == "__main__":
    main()
