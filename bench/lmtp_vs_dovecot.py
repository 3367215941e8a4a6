#!/usr/bin/env python3
"""Summary of bench/lmtp-vs-dovecot.sh: medians over the runs and the ratios
slotmail / Dovecot, as Markdown.

Usage: bench/lmtp_vs_dovecot.py RESULTS_DIR [RESULTS_DIR...]

A RESULTS_DIR holds one JSON report of the `lmtp_bench` example per
measurement, named SERVER-rRCPTS-cCONNECTIONS-runN.json (SERVER is
`slotmail` or `dovecot-MODE`), as bench/lmtp-vs-dovecot.sh writes them
(--out). Several directories (several invocations of the script) are pooled:
medians over all their runs; a per-run ratio pairs slotmail and Dovecot of
the same run of the same directory (they ran back to back). Python standard
library only.
"""
import json
import os
import re
import statistics
import sys

NAME = re.compile(r"^(?P<server>slotmail|dovecot-[a-z]+)-r(?P<r>\d+)-c(?P<c>\d+)-run(?P<run>\d+)\.json$")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    runs = {}  # (server, rcpts, conns) -> {(directory, run): report}
    for d, res in enumerate(sys.argv[1:]):
        for f in sorted(os.listdir(res)):
            m = NAME.match(f)
            if not m:
                continue
            with open(os.path.join(res, f)) as fh:
                rep = json.load(fh)
            key = (m["server"], int(m["r"]), int(m["c"]))
            runs.setdefault(key, {})[(d, int(m["run"]))] = rep
    if not runs:
        print(f"no results in {' '.join(sys.argv[1:])}", file=sys.stderr)
        sys.exit(1)
    dates = sorted(r["machine"]["date"] for rs in runs.values() for r in rs.values())

    first = next(iter(next(iter(runs.values())).values()))
    mach, corpus = first["machine"], first["corpus"]
    print(f"machine: {mach['nproc']} vCPU ({mach.get('cpu')}), {mach.get('memory_mib')} MiB, "
          f"kernel {mach.get('kernel')}; {dates[0]} to {dates[-1]}; "
          f"{len(sys.argv) - 1} result directorie(s)")
    print(f"corpus: {corpus['messages']} messages, {corpus['bytes'] / 1e6:.1f} MB (CRLF), "
          f"median {corpus['median_bytes']} B, max {corpus['max_bytes']} B")
    greetings = {}
    for (s, _, _), rs in runs.items():
        for rep in rs.values():
            greetings.setdefault(s, rep.get("greeting", ""))
    for s, g in sorted(greetings.items()):
        print(f"{s}: greeting {g!r}")
    print()

    order = {"slotmail": 0, "dovecot-optimized": 1, "dovecot-always": 2}
    servers = sorted({k[0] for k in runs}, key=lambda s: (order.get(s, 3), s))
    modes = sorted({(k[1], k[2]) for k in runs})
    print("Medians over the runs [min–max]. messages/s: transactions with every recipient "
          "delivered; MB/s: message bytes (once per transaction); copies/s: delivered "
          "recipients. The ratio is slotmail / that server (messages/s, higher is better "
          "for slotmail), of the medians, then per run (same run, back to back).")
    print()
    print("| recipients | connections | server | messages/s [min–max] | MB/s | copies/s | "
          "latency p50 / p99 ms | server CPU ms per copy | server CPU % | others' CPU % | errors | slotmail / this (runs) |")
    print("|---" * 12 + "|")
    for (rc, cc) in modes:
        ours = runs.get(("slotmail", rc, cc), {})
        ours_mps = med([r["messages_per_s"] for r in ours.values()])
        for s in servers:
            rs = runs.get((s, rc, cc))
            if not rs:
                continue
            reps = list(rs.values())
            mps = [r["messages_per_s"] for r in reps]
            mb = med([r["mb_per_s"] for r in reps])
            cps = med([r["recipients_per_s"] for r in reps])
            p50 = med([(r.get("latency_ms") or {}).get("p50") for r in reps])
            p99 = med([(r.get("latency_ms") or {}).get("p99") for r in reps])
            cpu_copy = med([(r.get("server") or {}).get("cpu_ms_per_recipient") for r in reps])
            cpu_pct = med([(r.get("server") or {}).get("cpu_pct") for r in reps])
            foreign = med([r.get("foreign_cpu_pct") for r in reps])
            errors = sum(r["errors"] for r in reps)
            short = sum(1 for r in reps if r.get("count_limit") and r["transactions"] < r["count_limit"])
            err = f"{errors}" + (f" ({short} run(s) hit --max-secs)" if short else "")
            if s == "slotmail":
                ratio = "—"
            else:
                m = med(mps)
                per_run = []
                for run in sorted(rs):
                    if run in ours and rs[run]["messages_per_s"]:
                        per_run.append(ours[run]["messages_per_s"] / rs[run]["messages_per_s"])
                r_med = ours_mps / m if ours_mps is not None and m else None
                if len(per_run) <= 4:
                    detail = ", ".join(f"{x:.2f}" for x in per_run)
                else:
                    wins = sum(1 for x in per_run if x > 1)
                    detail = (f"per run {min(per_run):.2f}–{max(per_run):.2f}, median "
                              f"{statistics.median(per_run):.2f}; faster in {wins} of {len(per_run)}")
                ratio = f"**{fmt(r_med, 2)}×** ({detail})"
            print(f"| {rc} | {cc} | {s} | **{fmt(med(mps), 1)}** [{fmt(min(mps), 1)}–{fmt(max(mps), 1)}] | "
                  f"{fmt(mb, 2)} | {fmt(cps, 1)} | {fmt(p50, 1)} / {fmt(p99, 1)} | {fmt(cpu_copy, 2)} | "
                  f"{fmt(cpu_pct)} | {fmt(foreign)} | {err} | {ratio} |")
    print()
    print("Server CPU per delivered copy, slotmail / Dovecot (lower is better for slotmail):")
    print()
    for (rc, cc) in modes:
        ours = med([(r.get("server") or {}).get("cpu_ms_per_recipient")
                    for r in runs.get(("slotmail", rc, cc), {}).values()])
        parts = []
        for s in servers:
            if s == "slotmail":
                continue
            theirs = med([(r.get("server") or {}).get("cpu_ms_per_recipient")
                          for r in runs.get((s, rc, cc), {}).values()])
            if ours is not None and theirs:
                parts.append(f"{s} {ours / theirs:.2f}×")
        if parts:
            print(f"- {rc} recipient(s), {cc} connection(s): " + "; ".join(parts))
    samples = []
    for (s, rc, cc), rs in sorted(runs.items()):
        for run, r in sorted(rs.items()):
            for e in r.get("error_samples", [])[:3]:
                samples.append(f"{s} r{rc} c{cc} run {run[1]} of {sys.argv[1 + run[0]]}: {e}")
    if samples:
        print()
        print("Error samples:")
        for e in samples[:30]:
            print(f"- {e}")


if __name__ == "__main__":
    main()
