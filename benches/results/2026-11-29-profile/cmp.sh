#!/usr/bin/env bash
# cmp.sh A B [rounds]: interleaved split.sh runs of two binaries
for r in $(seq ${3:-3}); do
  for b in "$1" "$2"; do echo -n "$(basename $b): "; BIN=$b /tmp/ab/split.sh; done
done
