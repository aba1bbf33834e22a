#!/usr/bin/env bash
# cmp.sh A B [rounds]: interleaved split.sh runs of two binaries
for r in $(seq ${3:-3}); do
  for b in "$1" "$2"; do echo -n "$(basename $b): "; BIN=$b bash "$(dirname "$0")/split.sh"; done
done
