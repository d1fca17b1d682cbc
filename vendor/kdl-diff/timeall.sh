#!/usr/bin/env bash
# timeall.sh IMPL [SIZES...]: time each family at each size, 10 s cap per parse.
impl=$1; shift
sizes=${*:-"1024 4096 16384 65536"}
bin="$(dirname "$0")/target/release/kdl-diff"
for fam in $($bin families | cut -f1); do
  line="$fam"
  for s in $sizes; do
    out=$(timeout 10 $bin time $impl $fam $s 2>/dev/null)
    if [ -z "$out" ]; then line="$line\t>10s"; skip=1; break; fi
    line="$line\t$(echo "$out" | awk '{print $2"ms/"$3"/"$4"d"}')"
  done
  echo -e "$line"
done
