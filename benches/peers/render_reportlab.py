#!/usr/bin/env python3
"""Peer for the render and bill benches: ReportLab drawing the same EVN table cells as
evn-render (A4, DejaVu Sans embedded as a subset, first-page address block and title, a table
whose header repeats on every page, line headings, zebra rows, subtotals, a zone summary,
"Seite x von y"), one process, one thread. Prints one JSON line.

    python3 benches/peers/render_reportlab.py --rows 130 --docs 100     # 3-page EVNs
    python3 benches/peers/render_reportlab.py --rows 25 --docs 500      # bill-like 1-page EVNs

pip install reportlab rl_accel   (rl_accel: ReportLab's C accelerator; without it ~30 % slower)
"""
import argparse
import io
import json
import os
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

HERE = os.path.dirname(os.path.abspath(__file__))
FONTS = os.path.join(HERE, "..", "..", "crates", "render", "fonts")
pdfmetrics.registerFont(TTFont("DejaVu", os.path.join(FONTS, "DejaVuSans.ttf")))
pdfmetrics.registerFont(TTFont("DejaVu-Bold", os.path.join(FONTS, "DejaVuSans-Bold.ttf")))
BERLIN = ZoneInfo("Europe/Berlin")

W, H = A4
LEFT, RIGHT, BOTTOM = 20 * mm, W - 15 * mm, 22 * mm
TOP2 = H - 15 * mm - 22
ROW_H, BODY = 11.5, 8.5
COLS = dict(nr=LEFT + 28, date=LEFT + 36, time=LEFT + 92, dur=LEFT + 176, num=LEFT + 190,
            zone=LEFT + 300, amount=RIGHT - 4)
ZONES = ["Mobilfunk", "Ausland EU", "Servicerufnummer", "Premiumdienst"]


def euro(d):
    s = f"{d.quantize(Decimal('0.01')):,.2f}"
    return s.replace(",", "X").replace(".", ",").replace("X", ".") + " €"


def calls(rows):
    """The same synthetic rows as evn_render::sample::big_doc."""
    out = []
    for i in range(rows):
        start = datetime.fromtimestamp(1_793_487_600 + i * 450, timezone.utc)
        out.append(dict(line=f"+49301234{50 + i % 3}",
                        number=f"+4915{100_000_000 + i * 7919 % 899_999_999:09d}",
                        start=start, dur=(i * 37) % 4000, zone=ZONES[i % 4],
                        charge=Decimal((i * 1237) % 50_000).scaleb(-4), hidden=i % 97 == 0))
    return out


def table_header(c, y):
    c.setFillGray(0.85)
    c.rect(LEFT, y - 4, RIGHT - LEFT, 14, stroke=0, fill=1)
    c.setFillGray(0)
    c.setFont("DejaVu-Bold", BODY)
    c.drawRightString(COLS["nr"], y, "Nr.")
    c.drawString(COLS["date"], y, "Datum")
    c.drawString(COLS["time"], y, "Uhrzeit")
    c.drawRightString(COLS["dur"], y, "Dauer")
    c.drawString(COLS["num"], y, "Zielrufnummer")
    c.drawString(COLS["zone"], y, "Tarifzone")
    c.drawRightString(COLS["amount"], y, "Betrag")
    return y - 16


def render(rows):
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, pageCompression=1)
    c.setTitle("Einzelverbindungsnachweis November 2026")
    pages = []

    def first_page():
        c.setFont("DejaVu-Bold", 11)
        c.drawString(LEFT, H - 20 * mm, "Mango Office GmbH")
        c.setFont("DejaVu", BODY)
        for k, line in enumerate(["Musterstraße 1", "10117 Berlin", "service@example.de"]):
            c.drawRightString(RIGHT, H - 20 * mm - 11 * k, line)
        for k, line in enumerate(["Bäckerei Größler e.K.", "Schloßallee 12", "80331 München"]):
            c.drawString(LEFT, H - 52 * mm - 12 * k, line)
        for k, (label, value) in enumerate([("Kundennummer", "K1002"),
                                            ("Abrechnungszeitraum", "01.11.2026 – 30.11.2026"),
                                            ("Erstellt am", "01.12.2026"), ("Version", "1")]):
            c.setFillGray(0.35)
            c.drawString(112 * mm, H - 52 * mm - 13 * k, label)
            c.setFillGray(0)
            c.drawRightString(RIGHT, H - 52 * mm - 13 * k, value)
        c.setFont("DejaVu-Bold", 16)
        c.drawString(LEFT, H - 98 * mm, "Einzelverbindungsnachweis")
        c.setFont("DejaVu", 10)
        c.drawString(LEFT, H - 98 * mm - 16, "Abrechnungszeitraum 01.11.2026 – 30.11.2026")
        return table_header(c, H - 98 * mm - 36)

    def new_page():
        pages.append(None)
        c.showPage()
        c.setFont("DejaVu-Bold", 9)
        c.drawString(LEFT, H - 15 * mm, "Mango Office GmbH")
        c.setFont("DejaVu", BODY)
        c.drawRightString(RIGHT, H - 15 * mm,
                          "Einzelverbindungsnachweis November 2026 · Kundennummer K1002")
        c.setStrokeGray(0.6)
        c.line(LEFT, H - 15 * mm - 5, RIGHT, H - 15 * mm - 5)
        return table_header(c, TOP2)

    y = first_page()
    groups = {}
    for call in calls(rows):
        groups.setdefault(call["line"], []).append(call)
    zones, total, nr = {}, Decimal(0), 0
    for line, cs in sorted(groups.items()):
        cs.sort(key=lambda x: x["start"])
        if y < BOTTOM + 2 * ROW_H:
            y = new_page()
        c.setFont("DejaVu-Bold", BODY)
        c.drawString(LEFT + 2, y, f"Anschluss {line}")
        y -= ROW_H + 4
        sub = Decimal(0)
        for k, call in enumerate(cs):
            total += call["charge"]
            if call["hidden"]:
                continue
            if y < BOTTOM + ROW_H:
                y = new_page()
            nr += 1
            if k % 2:
                c.setFillGray(0.95)
                c.rect(LEFT, y - 3, RIGHT - LEFT, ROW_H, stroke=0, fill=1)
                c.setFillGray(0)
            local = call["start"].astimezone(BERLIN)
            c.setFont("DejaVu", BODY)
            c.drawRightString(COLS["nr"], y, str(nr))
            c.drawString(COLS["date"], y, local.strftime("%d.%m.%Y"))
            c.drawString(COLS["time"], y, local.strftime("%H:%M:%S"))
            d = call["dur"]
            c.drawRightString(COLS["dur"], y, f"{d // 3600}:{d // 60 % 60:02d}:{d % 60:02d}")
            c.drawString(COLS["num"], y, "0" + call["number"][3:])
            c.drawString(COLS["zone"], y, call["zone"])
            c.drawRightString(COLS["amount"], y, euro(call["charge"]))
            sub += call["charge"]
            z = zones.setdefault(call["zone"], [0, Decimal(0)])
            z[0] += 1
            z[1] += call["charge"]
            y -= ROW_H
        c.setFont("DejaVu-Bold", BODY)
        c.drawString(LEFT + 2, y - 2, f"Summe Anschluss {line}")
        c.drawRightString(COLS["amount"], y - 2, euro(sub))
        y -= 16
    if y < BOTTOM + (len(zones) + 5) * ROW_H:
        y = new_page()
    c.setFont("DejaVu-Bold", 11)
    c.drawString(LEFT, y - 10, "Zusammenfassung")
    y -= 30
    c.setFont("DejaVu", BODY)
    for label, (n, amount) in sorted(zones.items()) + [("Nicht einzeln aufgeführte Verbindungen",
                                                         (0, Decimal(0)))]:
        c.drawString(COLS["zone"] - 200, y, label)
        c.drawRightString(COLS["zone"] + 60, y, str(n))
        c.drawRightString(COLS["amount"], y, euro(amount))
        y -= ROW_H
    c.setFont("DejaVu-Bold", BODY)
    c.drawString(COLS["zone"] - 200, y, "Gesamt")
    c.drawRightString(COLS["amount"], y, euro(total))
    pages.append(None)
    # "Seite x von y" needs the count: ReportLab's usual two-pass idiom would double the work,
    # so (like a quick script) the footer is drawn on the last page only. Counted in our favour.
    c.setFont("DejaVu", 7)
    c.drawRightString(RIGHT, BOTTOM - 14, f"Seite {len(pages)} von {len(pages)}")
    c.showPage()
    c.save()
    return len(pages), buf.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=130)
    ap.add_argument("--docs", type=int, default=100)
    a = ap.parse_args()
    render(a.rows)  # warm: fonts parsed
    t, cpu = time.perf_counter(), time.process_time()
    pages = size = 0
    for _ in range(a.docs):
        p, b = render(a.rows)
        pages += p
        size = len(b)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(json.dumps(dict(peer="reportlab", rows=a.rows, docs=a.docs, pages_per_doc=pages // a.docs,
                          bytes_per_doc=size, pages_per_s=pages / wall,
                          pages_per_cpu_s=pages / cpu, ms_per_doc=wall * 1000 / a.docs)))


if __name__ == "__main__":
    main()
