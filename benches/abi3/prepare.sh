#!/usr/bin/env bash
# Builds the "before" binary of benches/abi3: commit 282f85e, whose workers embedded
# CPython 3.11 (linked against pyenv's 3.11.7, as that commit's .cargo/config.toml
# says), into target/bench-before/release/ferricorn. Called by benches/run.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# Outside the repository: nested in it, cargo would take it for a workspace member.
src="${TMPDIR:-/tmp}/ferricorn-bench-before-src"
if [ ! -d "$src" ]; then
  git -C "$root" worktree add --detach "$src" 282f85e
fi
(cd "$src" && cargo build --release --locked --bin ferricorn --target-dir "$root/target/bench-before")
