#!/usr/bin/env python3
"""Prints the README "Performance" tables (Markdown) from the bench results JSON, so every
figure in the README is one a run wrote. `python3 benches/table.py [DIR]` (default
benches/results/)."""
import json
import os
import sys

DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results")


def load(name):
    try:
        return json.load(open(os.path.join(DIR, f"{name}.json")))
    except FileNotFoundError:
        return None


def n(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}".replace(",", "\u202f")


rows = []


def row(bench, figure, value, target="", ok=None):
    mark = "" if ok is None else (" ✅" if ok else " ❌")
    rows.append(f"| {bench} | {figure} | {value} | {target}{mark} |")


r = load("rating")
if r:
    row("rating", "parse + validate + rate + month + shorten, per core",
        f"{n(r['cdrs_per_s_per_core'])} CDRs/s ({n(r['mb_per_s'], 0)} MB/s)", "(JSON parse floor 1.3–1.5 M/s)")
r = load("render")
if r:
    t = r["three_pages"]
    b = r["two_thousand_pages"]
    o = r["one_page"]
    row("render", f"3-page EVN ({t['rows']} calls), one core", f"{n(t['pages_per_s_per_core'])} pages/CPU-s", "≥ 500", t["pages_per_s_per_core"] >= 500)
    row("render", "3-page EVN size", f"{n(t['bytes'])} bytes ({n(t['bytes_per_page'])} per page)", "≤ 40 KB", t["bytes"] <= 40_000)
    row("render", "1-page EVN, one core", f"{n(o['pages_per_s_per_core'])} pages/CPU-s, {n(o['bytes'])} bytes", "")
    row("render", f"{b['pages']}-page EVN ({n(b['rows'])} calls)", f"{n(b['ms_per_evn_wall'])} ms wall ({n(b['pages_per_s_per_core'])} pages/CPU-s, {n(b['bytes_per_page'])} bytes/page)", "≤ 5,000 ms", b["ms_per_evn_wall"] <= 5000)
r = load("bill")
if r:
    full = r["scale"] == 1
    row("bill", f"{n(r['customers'])} customers × 25 calls ({n(r['calls'])} calls), {r['cores']} cores", f"{n(r['run_s'], 1)} s", "≤ 600 s" if full else "(scaled run)", r["run_s"] <= 600 if full else None)
    row("bill", "throughput", f"{n(r['customers_per_s'])} customers/s, {n(r['pages_per_s'])} pages/s ({n(r['pages_per_s_per_core'])} per core)", "")
    row("bill", "peak RSS", f"{n(r['peak_rss_mib'])} MiB", "≤ 512 MiB", r["peak_rss_mib"] <= 512)
    if "rerun_unchanged" in r:
        a = r["rerun_unchanged"]
        row("bill", "re-run of the month, data unchanged", f"{n(a['run_s'], 1)} s, peak RSS {n(a['peak_rss_mib'])} MiB", "≤ 512 MiB", a["peak_rss_mib"] <= 512)
    v = r["ratios"]["pages_per_s_vs_reportlab_one_process"]
    e = r["ratios"].get("evns_per_s_vs_reportlab_one_process")
    row("bill", "vs ReportLab (one process, same 25 calls)", f"{n(v, 1)} × pages/s, {n(e, 1)} × EVNs/s", "≥ 4 ×", v is not None and v >= 4)
r = load("ingest")
if r:
    one, two = r["one_process"], r["two_processes"]
    row("ingest", f"1 process, {n(r['cdrs'])} CDRs, 14 months, {r['partitions']} partitions", f"{n(one['cdrs_per_s'])} CDRs/s ({n(one['mb_per_s'])} MB/s)", "≥ 400,000", one["cdrs_per_s"] >= 400_000)
    row("ingest", "2 processes, one group", f"{n(two['cdrs_per_s'])} CDRs/s ({n(two['mb_per_s'])} MB/s)", "≥ 700,000", two["cdrs_per_s"] >= 700_000)
    peak = max(one["peak_rss_mib"] + two["peak_rss_mib"])
    row("ingest", "peak RSS per process", f"{n(max(one['peak_rss_mib']))} MiB (1 process), {n(max(two['peak_rss_mib']))} MiB (2)", "≤ 256 MiB", peak <= 256)
    k = r["ratios"]["one_process_vs_kcat"]
    strict = r["ratios"].get("one_process_vs_kcat_best")
    row("ingest", "1 process vs kcat raw read (median of each run against the read just before it)", f"{n(k, 2)} × (against the fastest read: {n(strict, 2)} ×)", "≥ 0.5 ×", k is not None and k >= 0.5)
    p = r["ratios"]["one_process_vs_python"]
    row("ingest", "1 process vs Python script", f"{n(p, 1)} ×", "≥ 7 ×", p is not None and p >= 7)
r = load("portal")
if r:
    row("portal", f"{r['connections']} keep-alive connections, {r['evn_pages']}-page EVN ({n(r['evn_bytes'])} bytes), JWT", f"{n(r['downloads_per_s'])} downloads/s", "≥ 3,000", r["downloads_per_s"] >= 3000)
    row("portal", "latency", f"p50 {n(r['p50_ms'], 1)} ms, p99 {n(r['p99_ms'], 1)} ms", "p99 ≤ 25 ms", r["p99_ms"] <= 25)

print("| bench | figure | measured | target |")
print("|---|---|---|---|")
print("\n".join(rows))

peers = []
r = load("ingest")
if r:
    k = r["peers"]["kcat_best_records_per_s"]
    reads = [x["records_per_s"] for x in r["peers"]["kcat"]]
    span = f" (reads {n(min(reads))}–{n(max(reads))})" if len(reads) > 1 else ""
    peers.append(f"| kcat raw read (ingest topic), fastest read{span} | {n(k)} records/s | {n(r['ratios'].get('one_process_vs_kcat_best'), 2)} × (paired: {n(r['ratios']['one_process_vs_kcat'], 2)} ×) |")
    py = r["peers"]["python_confluent_pyarrow"]
    if "cdrs_per_s" in py:
        peers.append(f"| Python confluent-kafka + pyarrow ingest | {n(py['cdrs_per_s'])} CDRs/s, {n(py['peak_rss_mib'])} MiB | {n(r['one_process']['cdrs_per_s'] / py['cdrs_per_s'], 1)} × |")
r = load("render")
if r:
    for key, label, ours in (("reportlab_3_pages", "ReportLab, 3-page EVN", r["three_pages"]),
                             ("reportlab_big", "ReportLab, one big EVN", r["two_thousand_pages"])):
        p = r["peers"][key]
        if "pages_per_cpu_s" in p:
            peers.append(f"| {label} ({p['pages_per_doc']} pages, {n(p['bytes_per_doc'])} bytes) | {n(p['pages_per_cpu_s'])} pages/CPU-s | {n(ours['pages_per_s_per_core'] / p['pages_per_cpu_s'], 1)} × |")
    c = r["peers"]["chromium"]
    if "small" in c:
        peers.append(f"| Chromium print-to-PDF, 3-page EVN per invocation ({n(c['small']['bytes'])} bytes) | {n(c['small']['ms_per_doc'])} ms/EVN, {n(c['small']['pages_per_s'], 1)} pages/s | {n(r['three_pages']['pages_per_s_wall'] / c['small']['pages_per_s'])} × |")
        peers.append(f"| Chromium print-to-PDF, one {c['big']['pages']}-page EVN | {n(c['big']['pages_per_s'], 1)} pages/s | {n(r['two_thousand_pages']['pages_per_s_wall'] / c['big']['pages_per_s'])} × |")
    elif c:
        peers.append(f"| Chromium | skipped: {c.get('skipped')} | |")
r = load("bill")
if r:
    p = r["peers"]["reportlab_25_calls"]
    if "pages_per_s" in p:
        peers.append(f"| ReportLab, 25-call EVNs ({p['pages_per_doc']} pages each), one process | {n(p['pages_per_s'])} pages/s, {n(1000 / p['ms_per_doc'])} EVNs/s | bill run: {n(r['ratios']['pages_per_s_vs_reportlab_one_process'], 1)} × pages/s |")
print()
print("| peer | figure | evn vs peer |")
print("|---|---|---|")
print("\n".join(peers))
