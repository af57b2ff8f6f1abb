#!/usr/bin/env python3
"""Peer for the render bench: headless Chromium printing an equivalent HTML EVN to PDF (how
Lago and Gotenberg render invoices: an HTML template, Chromium's print-to-PDF). The same rows
as evn_render::sample::big_doc, DejaVu Sans, a table header repeated on every page (thead),
zebra rows, line headings and subtotals. Two figures:

- one 3-page EVN per `chromium --headless --print-to-pdf` invocation (a CLI conversion: process
  start included), `--docs` times;
- one big EVN (`--big-rows`) in one invocation: pages/s with the start-up amortised, the best
  case for a long-running Chromium (Gotenberg keeps one running).

    python3 benches/peers/render_chromium.py --docs 5 --big-rows 12000

Needs `chromium` (apt-get install chromium) and `pdfinfo` (poppler-utils) to count pages.
Prints one JSON line.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

HERE = os.path.dirname(os.path.abspath(__file__))
FONT = os.path.abspath(os.path.join(HERE, "..", "..", "crates", "render", "fonts", "DejaVuSans.ttf"))
BERLIN = ZoneInfo("Europe/Berlin")
ZONES = ["Mobilfunk", "Ausland EU", "Servicerufnummer", "Premiumdienst"]


def euro(d):
    s = f"{d.quantize(Decimal('0.01')):,.2f}"
    return s.replace(",", "X").replace(".", ",").replace("X", ".") + " €"


def html(rows):
    groups = {}
    for i in range(rows):
        start = datetime.fromtimestamp(1_793_487_600 + i * 450, timezone.utc).astimezone(BERLIN)
        groups.setdefault(f"+49301234{50 + i % 3}", []).append(
            (start, (i * 37) % 4000, f"0{100_000_000 + i * 7919 % 899_999_999 + 15_000_000_000}",
             ZONES[i % 4], Decimal((i * 1237) % 50_000).scaleb(-4), i % 97 == 0))
    out = [f"""<!doctype html><html lang="de"><head><meta charset="utf-8"><style>
@font-face {{ font-family: DejaVu; src: url("file://{FONT}"); }}
@page {{ size: A4; margin: 15mm 15mm 22mm 20mm; }}
body {{ font-family: DejaVu; font-size: 8.5pt; }}
table {{ width: 100%; border-collapse: collapse; }}
thead td {{ background: #d9d9d9; font-weight: bold; }}
tr {{ height: 11.5pt; page-break-inside: avoid; }}
tr.z {{ background: #f2f2f2; }} td.r {{ text-align: right; }}
tr.line td, tr.sum td {{ font-weight: bold; }}
</style></head><body>
<div style="height: 70mm"><b>Mango Office GmbH</b><br>Musterstraße 1<br>10117 Berlin<br><br>
Bäckerei Größler e.K.<br>Schloßallee 12<br>80331 München<br>Kundennummer K1002</div>
<h1 style="font-size: 16pt">Einzelverbindungsnachweis</h1>
<p>Abrechnungszeitraum 01.11.2026 – 30.11.2026</p>
<table><thead><tr><td class="r">Nr.</td><td>Datum</td><td>Uhrzeit</td><td class="r">Dauer</td>
<td>Zielrufnummer</td><td>Tarifzone</td><td class="r">Betrag</td></tr></thead><tbody>"""]
    nr, total = 0, Decimal(0)
    for line, calls in sorted(groups.items()):
        out.append(f'<tr class="line"><td colspan="7">Anschluss {line}</td></tr>')
        sub = Decimal(0)
        for k, (start, d, number, zone, charge, hidden) in enumerate(calls):
            total += charge
            if hidden:
                continue
            nr += 1
            sub += charge
            out.append(f'<tr{" class=z" if k % 2 else ""}><td class="r">{nr}</td>'
                       f'<td>{start:%d.%m.%Y}</td><td>{start:%H:%M:%S}</td>'
                       f'<td class="r">{d // 3600}:{d // 60 % 60:02d}:{d % 60:02d}</td>'
                       f'<td>{number}</td><td>{zone}</td><td class="r">{euro(charge)}</td></tr>')
        out.append(f'<tr class="sum"><td colspan="6">Summe Anschluss {line}</td>'
                   f'<td class="r">{euro(sub)}</td></tr>')
    out.append(f'</tbody></table><h2>Zusammenfassung</h2><p>Gesamt {euro(total)}</p></body></html>')
    return "".join(out)


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def print_pdf(binary, src, dst):
    subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    f"--print-to-pdf={dst}", f"file://{src}"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pages_of(pdf):
    out = subprocess.run(["pdfinfo", pdf], check=True, capture_output=True, text=True).stdout
    return int(next(l.split()[-1] for l in out.splitlines() if l.startswith("Pages:")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=130)
    ap.add_argument("--docs", type=int, default=5)
    ap.add_argument("--big-rows", type=int, default=12000)
    a = ap.parse_args()
    binary = chromium()
    if not binary:
        print(json.dumps(dict(peer="chromium", skipped="chromium not installed")))
        return
    with tempfile.TemporaryDirectory() as tmp:
        small, big = os.path.join(tmp, "small.html"), os.path.join(tmp, "big.html")
        with open(small, "w") as f:
            f.write(html(a.rows))
        with open(big, "w") as f:
            f.write(html(a.big_rows))
        out = os.path.join(tmp, "out.pdf")
        print_pdf(binary, small, out)  # warm: disk caches, font cache
        t = time.perf_counter()
        for _ in range(a.docs):
            print_pdf(binary, small, out)
        small_s = (time.perf_counter() - t) / a.docs
        small_pages, small_bytes = pages_of(out), os.path.getsize(out)
        t = time.perf_counter()
        print_pdf(binary, big, out)
        big_s = time.perf_counter() - t
        big_pages, big_bytes = pages_of(out), os.path.getsize(out)
    print(json.dumps(dict(peer="chromium", version=subprocess.run([binary, "--version"], capture_output=True,
                                                                   text=True).stdout.strip(),
                          small=dict(rows=a.rows, pages=small_pages, bytes=small_bytes,
                                     ms_per_doc=small_s * 1000, pages_per_s=small_pages / small_s),
                          big=dict(rows=a.big_rows, pages=big_pages, bytes=big_pages and big_bytes,
                                   seconds=big_s, pages_per_s=big_pages / big_s))))


if __name__ == "__main__":
    main()
