#!/usr/bin/env bash
# Micro-benchmarks of the hot path (criterion; about a minute after the build).
#   bash benches/micro/run.sh                 # all of them
#   bash benches/micro/run.sh wire            # only names matching a filter
# Extra arguments go to criterion (e.g. --quick, --save-baseline before).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo bench --bench hot_path -- "$@"
