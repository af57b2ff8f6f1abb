#!/usr/bin/env bash
# Instructions per CDR of `evn ingest`, counted by callgrind: repeatable to ~0.05 % on this
# shared machine, whose speed moves by more than most single changes do (issue #7). Use it to
# compare two builds; the ingest bench measures the speed.
#
#   benches/callgrind-ingest.sh [EVN_BINARY...]   # default: target/release/evn
#
# Each binary ingests the same 200,000 CDRs (the ingest bench's shape: 14 billing months,
# 20,000 customers, 90 % stored) from its own embedded broker over 4 partitions, so that files
# hold ~2,500 rows as in the bench's 2 M over 32. Prints instructions per CDR (the
# configuration load included: ~1,700 of them) and the Parquet bytes written.
# Needs valgrind (apt-get install valgrind) and python3. EVN_CG_CUSTOMERS=500 makes the
# customers repeat more within a file. `callgrind_annotate <work>/cg.out.*` shows where.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=("$@")
[ ${#bins[@]} -eq 0 ] && bins=("${CARGO_TARGET_DIR:-target}/release/evn")
n=200000
customers=${EVN_CG_CUSTOMERS:-20000}
work=$(mktemp -d "${EVN_BENCH_TMP:-/tmp}/callgrind-ingest.XXXXXX")
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/config"
cp fixtures/config/{provider.toml,tariffs.toml,counselling-numbers.txt} "$work/config/"
python3 - "$work" "$n" "$customers" <<'EOF'
import datetime, sys
work, n, customers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(f"{work}/config/customers.csv", "w") as f:
    f.write("customer_id,name,street,postcode,city,plan,evn,shorten_numbers,valid_from\n")
    for c in range(20000):
        f.write(f"C{c:07},Kunde {c} GmbH,Hauptstraße {c},10115,Berlin,office_basic,true,{str(c % 3 == 0).lower()},2025-01-01\n")
# As benches/benches/ingest.rs writes them.
zones = ["+49151", "+4930", "+336", "+49180", "+49176", "+4989"]
first = 1767222000
span = 1803942000 - first
fmt = lambda s: datetime.datetime.fromtimestamp(s, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
with open(f"{work}/cdrs.jsonl", "w") as f:
    for i in range(n):
        start = first + (i * span) // n
        c = (i * 2654435761) % customers
        d, a, disp = (("outbound", None, "no_answer") if i % 20 == 7 else
                      ("inbound", start + 4, "answered") if i % 20 == 13 else
                      ("outbound", start + 4, "answered"))
        end = start + 4 + 1 + (i * 7919) % 900
        answer = "null" if a is None else f'"{fmt(a)}"'
        f.write(f'{{"cdr_id":"fra1-{i:012}","switch_id":"fra1","customer_id":"C{c:07}",'
                f'"calling_number":"+4930{1000000 + c * 2 + i % 2:07}","called_number":"{zones[i % 6]}{((i * 2246822519) >> 3) % 10000000:07}",'
                f'"direction":"{d}","start_time":"{fmt(start)}","answer_time":{answer},"end_time":"{fmt(end)}","disposition":"{disp}"}}\n')
EOF

for bin in "${bins[@]}"; do
    rm -rf "$work/data" "$work"/cg.out.*
    # exec: BROKER_PID is then the broker itself, which the kill below must reach.
    coproc BROKER { EVN_LOG=warn exec "$bin" broker --listen 127.0.0.1:0 --topic cdrs:4 --topic cdrs.dlq:1; }
    read -r banner <&"${BROKER[0]}"
    addr=$(echo "$banner" | awk '{print $5}')
    EVN_LOG=warn "$bin" produce --brokers "$addr" --topic cdrs "$work/cdrs.jsonl" >/dev/null
    # A long session timeout: under valgrind the member is ~50 times slower to heartbeat.
    EVN_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/cg.out.%p" \
        "$bin" ingest --brokers "$addr" --topic cdrs --group callgrind --config "$work/config" \
        --data "$work/data" --exit-when-idle 3 \
        --kafka-option session.timeout.ms=6000 --kafka-option heartbeat.interval.ms=1000 \
        >"$work/summary.json" 2>"$work/valgrind.log"
    kill "$BROKER_PID"
    wait "$BROKER_PID" 2>/dev/null || true
    ir=$(grep -h "^summary:" "$work"/cg.out.* | awk '{s += $2} END {printf "%.0f", s}')
    bytes=$(find "$work/data/cdrs" -name "*.parquet" -printf "%s\n" | awk '{s += $1} END {print s}')
    echo "$bin: $((ir / n)) instructions per CDR ($ir in all), $bytes bytes of Parquet, summary $(tail -1 "$work/summary.json" | cut -c1-120)"
done
