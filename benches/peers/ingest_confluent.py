#!/usr/bin/env python3
"""Peer for the ingest bench: the ingest a data engineer writes in an afternoon with
confluent-kafka + pyarrow + zoneinfo + Decimal. Consume the topic as a group member, parse the
JSON, validate minimally, skip unanswered/inbound calls, rate with the tariffs (longest prefix
zone, per-minute price, first/next increment, 4 decimals), billing month in Europe/Berlin,
and write one Parquet file (zstd) per billing month; stop when every partition is at its end.
No exactly-once, no dedup, no dead-letter topic: fewer guarantees than `evn ingest`.

    pip install confluent-kafka pyarrow
    python3 benches/peers/ingest_confluent.py --brokers HOST:PORT --topic cdrs --group g \
        --config fixtures/config --out /tmp/out
"""
import argparse, csv, json, math, os, time, tomllib
from datetime import datetime
from decimal import Decimal, ROUND_HALF_UP
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaError

BERLIN = ZoneInfo("Europe/Berlin")
REQUIRED = ("cdr_id", "switch_id", "customer_id", "calling_number", "called_number",
            "direction", "start_time", "end_time", "disposition")
COLUMNS = ("cdr_id", "switch_id", "customer_id", "calling_number", "called_number",
           "start_time", "duration_s", "zone", "charge_eur", "billing_month")


def main():
    ap = argparse.ArgumentParser()
    for a in ("--brokers", "--topic", "--group", "--config", "--out"):
        ap.add_argument(a, required=True)
    args = ap.parse_args()
    tariffs = tomllib.load(open(os.path.join(args.config, "tariffs.toml"), "rb"))
    prefixes = sorted(((p, z) for z, ps in tariffs["zones"].items() for p in ps),
                      key=lambda x: -len(x[0]))
    plans = {}
    for row in csv.DictReader(open(os.path.join(args.config, "customers.csv"), encoding="utf-8")):
        plans[row["customer_id"]] = (row["plan"], row["shorten_numbers"] == "true")

    c = Consumer({"bootstrap.servers": args.brokers, "group.id": args.group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.subscribe([args.topic])
    months, at_end, assigned = {}, set(), None
    consumed = stored = skipped = bad = 0
    while assigned is None or not assigned or at_end < assigned:
        for m in c.consume(num_messages=10_000, timeout=1.0):
            if assigned is None or not assigned:
                assigned = {(p.topic, p.partition) for p in c.assignment()}
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add((m.topic(), m.partition()))
                continue
            consumed += 1
            try:
                r = json.loads(m.value())
                if any(k not in r for k in REQUIRED) or r["customer_id"] not in plans:
                    raise ValueError("invalid")
                if r["direction"] != "outbound" or r["disposition"] != "answered":
                    skipped += 1
                    continue
                start = datetime.fromisoformat(r["start_time"])
                answer = datetime.fromisoformat(r["answer_time"])
                secs = math.ceil((datetime.fromisoformat(r["end_time"]) - answer).total_seconds())
                number = r["called_number"]
                zone = next(z for p, z in prefixes if number.startswith(p))
                plan, shorten = plans[r["customer_id"]]
                if zone in tariffs["plans"][plan].get("flatrate", []):
                    skipped += 1
                    continue
                rate = tariffs["plans"][plan]["rates"][zone]
                first, nxt = (int(x) for x in rate["increment"].split("/"))
                billed = first + max(0, math.ceil((secs - first) / nxt)) * nxt if secs > 0 else 0
                charge = (Decimal(billed) * Decimal(rate["per_minute"]) / 60).quantize(
                    Decimal("0.0001"), ROUND_HALF_UP)
            except (ValueError, KeyError, TypeError, StopIteration):
                bad += 1
                continue
            month = start.astimezone(BERLIN).strftime("%Y-%m")
            cols = months.setdefault(month, {k: [] for k in COLUMNS})
            for k, v in (("cdr_id", r["cdr_id"]), ("switch_id", r["switch_id"]),
                         ("customer_id", r["customer_id"]), ("calling_number", r["calling_number"]),
                         ("called_number", number[:-3] + "xxx" if shorten else number),
                         ("start_time", start), ("duration_s", secs), ("zone", zone),
                         ("charge_eur", charge), ("billing_month", month)):
                cols[k].append(v)
            stored += 1
    for month, cols in months.items():
        table = pa.table({**cols, "start_time": pa.array(cols["start_time"], pa.timestamp("us", "UTC")),
                          "charge_eur": pa.array(cols["charge_eur"], pa.decimal128(18, 4))})
        os.makedirs(os.path.join(args.out, f"billing_month={month}"), exist_ok=True)
        pq.write_table(table, os.path.join(args.out, f"billing_month={month}", "part-0.parquet"),
                       compression="zstd")
    c.commit(asynchronous=False)
    c.close()
    print(json.dumps(dict(consumed=consumed, stored=stored, skipped=skipped, invalid=bad,
                          months=len(months))))


if __name__ == "__main__":
    main()
