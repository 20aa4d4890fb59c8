#!/usr/bin/env bash
# The whole test suite (what CI runs): install what is missing, then swift test.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh
swift build --build-tests
swift test --skip-build
