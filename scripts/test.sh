#!/usr/bin/env bash
# README command 2: installs what the tests need (poppler's pdftotext, pyarrow, moto), then runs the
# whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pdftotext >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils) >/dev/null
fi
# pyarrow: a second Parquet reader, so a test proves other tools can read what ingest writes.
if ! python3 -c "import pyarrow" >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check pyarrow >/dev/null
fi
# chromium: the download page (issue 11) is driven in headless Chromium; the test says SKIPPED
# without it.
# An S3 protocol server for the object storage test (issue 9): moto implements the
# conditional PUT (If-None-Match) that the commit protocol needs.
if ! python3 -c "import moto.server" >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check 'moto[server]>=5.1,<6' >/dev/null \
    || echo "moto could not be installed; the S3 server test will be skipped" >&2
fi
if ! command -v chromium >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
    || echo "chromium could not be installed; the download page's browser test will be skipped" >&2
fi
# A full disk shows up as a linker crash, far from its cause: say how much room there is.
df -h . "${TMPDIR:-/tmp}" | sed 's/^/disk: /' >&2
# Build every target in one go with the same feature resolution `cargo test --workspace` uses,
# so the `evn` binary the integration tests run shares its dependencies with the tests (a bare
# `cargo build -p evn-cli` resolves features differently and compiles arrow, parquet, printpdf
# a second time, which cost CI minutes).
cargo build --workspace --all-targets --locked
cargo test --workspace --locked
