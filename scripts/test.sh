#!/usr/bin/env bash
# README command 2: installs what the tests need (poppler's pdftotext), then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pdftotext >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils) >/dev/null
fi
cargo build -p evn-cli --locked
cargo test --workspace --locked
