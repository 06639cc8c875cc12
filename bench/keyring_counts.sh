#!/usr/bin/env bash
# Per-request instruction counts: (Ir at N2 - Ir at N1) / (N2 - N1).
bin=${1:-${CARGO_TARGET_DIR:-$PWD/target}/release/examples/keyring_counts}
for what in session csrf; do
  for ring in one three; do
    ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$what" "$ring" "$1" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
    a=$(ir 2000); b=$(ir 12000)
    echo "$what $ring $(( (b - a) / 10000 ))"
  done
done
