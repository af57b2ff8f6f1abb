#!/usr/bin/env bash
# Every benchmark of issue #7 in one go: builds the release binary and the bench binaries once,
# runs rating, render, bill, ingest and portal (each also runs its peers: ReportLab, Chromium,
# kcat, the confluent-kafka script), then copies target/bench-results/*.json to
# benches/results/ (committed, so later changes can be compared with them).
#
#   benches/run-all.sh                      # the full workloads (about 15 minutes on 2 cores)
#   EVN_BENCH_SCALE=0.05 benches/run-all.sh # a quick run (results not copied)
#   benches/run-all.sh render portal        # some of them
#
# Peers need: apt-get install kcat chromium poppler-utils; pip install confluent-kafka pyarrow
# reportlab rl_accel. A missing peer is reported as skipped in the JSON, not an error.
set -euo pipefail
cd "$(dirname "$0")/.."
benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(rating render bill ingest portal)

cargo build --release -p evn-cli
cargo bench -p evn-benches --no-run
for b in "${benches[@]}"; do
    echo "=== $b ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
    cargo bench -q -p evn-benches --bench "$b"
done
if [ -z "${EVN_BENCH_SCALE:-}" ]; then
    mkdir -p benches/results
    for b in "${benches[@]}"; do cp "target/bench-results/$b.json" benches/results/; done
    echo "results copied to benches/results/ (benches/table.py prints the README table)"
fi
