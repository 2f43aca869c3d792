#!/usr/bin/env bash
# Usage: some-bench | scripts/bench-record.sh SECTION
#
# Replaces the block between `<!-- bench:SECTION:begin -->` and
# `<!-- bench:SECTION:end -->` in docs/benchmarks.md with the markdown read on
# stdin, headed by the machine and the commit it was measured on. A section
# that does not exist yet is appended. The input is echoed, so a bench run
# still shows its results.
set -euo pipefail
section=${1:?usage: bench-record.sh SECTION}
file=${BENCH_DOC:-docs/benchmarks.md}
body=$(cat)
printf '%s\n' "$body"

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit+dirty"
stamp="_Measured $(date -u +%Y-%m-%d) on ${cpu:-unknown cpu}, $(nproc) cores, $(uname -sr); commit ${commit}._"
block=$(printf '<!-- bench:%s:begin -->\n%s\n\n%s\n<!-- bench:%s:end -->' "$section" "$stamp" "$body" "$section")

[ -f "$file" ] || printf '# Benchmarks\n' >"$file"
begin="<!-- bench:${section}:begin -->"
end="<!-- bench:${section}:end -->"
if grep -qF "$begin" "$file"; then
  BLOCK="$block" awk -v b="$begin" -v e="$end" '
    $0 == b { print ENVIRON["BLOCK"]; skip = 1; next }
    $0 == e { skip = 0; next }
    !skip { print }
  ' "$file" >"$file.tmp"
  mv "$file.tmp" "$file"
else
  printf '\n%s\n' "$block" >>"$file"
fi
