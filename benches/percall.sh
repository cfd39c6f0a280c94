#!/bin/sh
# Instructions per call of each `percall` case under callgrind (deterministic, unlike
# wall-clock on the shared 2-CPU VM): (Ir(N calls) - Ir(0 calls)) / N.
# Build first: AYA_BUILD_SKIP=1 cargo build --release -p benches --examples
B=${B:-target/release/examples/percall}
N=${N:-20000}
ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$B" "$1" "$2" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
for c in null mnt3 mnt3_first export100 mnt3_gateway; do
  a=$(ir "$c" 0); b=$(ir "$c" "$N")
  echo "$c $(( (b - a) / N ))"
done
