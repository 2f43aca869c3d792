#!/usr/bin/env bash
# `make demo`: a 4-host cluster on loopback: hello across it, then a Raft
# group of 3 replicas serving KV and a queue, then a crawl of the project's
# own local site (127.0.0.1) by 4 worker processes; then everything stops.
# Everything it starts is stopped on exit, even on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

WW=${WW:-target/debug/ww}
ROMS=target/rom
dir=$(mktemp -d -t ww-demo.XXXXXX)
pids=()
cleanup() {
  # Hosts are started inside $(...) subshells, which cannot add to `pids`:
  # each writes its pid to a file instead.
  for pidfile in "$dir"/*.pid; do
    [ -e "$pidfile" ] && pids+=("$(cat "$pidfile")")
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Wait up to 5 s for each to shut down cleanly, then SIGKILL it.
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Starts host N (joining $2 if given) and prints its first address.
start_host() {
  local n=$1 peer=${2:-}
  local args=(start --json --listen /ip4/127.0.0.1/tcp/0 --data-dir "$dir/host$n")
  [ -n "$peer" ] && args+=(--peer "$peer")
  WW_LOG=warn "$WW" "${args[@]}" >"$dir/host$n.json" 2>"$dir/host$n.log" &
  echo $! >"$dir/host$n.pid"
  for _ in $(seq 1 300); do
    [ -s "$dir/host$n.json" ] && break
    sleep 0.1
  done
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["addrs"][0])' "$dir/host$n.json"
}

say "starting 4 hosts on loopback"
h1=$(start_host 1)
h2=$(start_host 2 "$h1")
h3=$(start_host 3 "$h1")
h4=$(start_host 4 "$h1")
printf 'host 1: %s\nhost 2: %s\nhost 3: %s\nhost 4: %s\n' "$h1" "$h2" "$h3" "$h4"

say "ww sub test, attached to host 3"
"$WW" sub --peer "$h3" test --count 1 >"$dir/sub.out" 2>"$dir/sub.err" &
sub=$!
pids+=($sub)
for _ in $(seq 1 300); do
  grep -q subscribed "$dir/sub.err" 2>/dev/null && break
  sleep 0.1
done
cat "$dir/sub.err"

say "ww run --peer <host 1> hello.wasm"
"$WW" run --peer "$h1" "$ROMS/hello.wasm"

for _ in $(seq 1 300); do
  [ -s "$dir/sub.out" ] && break
  sleep 0.1
done
say "host 3's subscriber received"
cat "$dir/sub.out"
grep -qx "Hello, World" "$dir/sub.out"

raft() { "$WW" run --peer "$h1" "$ROMS/raft.wasm" "$@"; }
# Wait until every host sees the 4 hosts, so deploy can pick 3 of them.
for _ in $(seq 1 100); do
  [ "$("$WW" ls --peer "$h1" / | wc -l)" -eq 4 ] && break
  sleep 0.1
done
say "raft deploy: 3 replicas on hosts 2-4, each anchored at /<peer id>/raft/v1"
raft deploy
say "raft put greeting 'hello from raft' / raft get greeting"
raft put greeting "hello from raft"
[ "$(raft get greeting)" = "hello from raft" ]   # the bare value on stdout
raft get greeting
say "queue round trip: enqueue, lease, ack"
raft enqueue jobs "crawl http://127.0.0.1/a" "crawl http://127.0.0.1/b"
lease=$(raft lease jobs --n 2 --json)
echo "$lease"
receipts=$(python3 -c 'import json,sys; print(" ".join(m["receipt"] for m in json.loads(sys.argv[1])["messages"]))' "$lease")
raft ack jobs $receipts
raft stats jobs
# Followers hear of the last commits a moment after the leader (and a
# lookup that failed while hosts were still connecting is retried after
# 500 ms): wait, at most 5 s, until every replica has applied as much.
for _ in $(seq 1 50); do
  raft status --json | python3 -c '
import json, sys
replicas = json.load(sys.stdin)["replicas"]
sys.exit(0 if len({r["applied"] for r in replicas}) == 1 else 1)' 2>/dev/null && break
  sleep 0.1
done
say "raft status"
raft status

say "a local site to crawl: crawl-site on 127.0.0.1 (200 pages, robots.txt, redirects, errors)"
target/debug/crawl-site --port 0 --pages 200 >"$dir/site.out" 2>"$dir/site.err" &
pids+=($!)
for _ in $(seq 1 100); do
  [ -s "$dir/site.out" ] && break
  sleep 0.1
done
site=$(grep -o 'http://[^ ]*' "$dir/site.out")
echo "$site"
crawler() { "$WW" run --peer "$h1" "$ROMS/crawler.wasm" "$@"; }
say "crawler seed $site --allow-private; crawler workers 4"
crawler seed "$site" --allow-private --max-depth 1000 --max-pages 1000 --delay-ms 0 \
  --concurrency-per-origin 8 --max-attempts 2
crawler workers 4 --fetch-timeout-ms 2000
# The site has a page that never answers and one that answers 429: the
# crawl ends when every URL is fetched or given up. `status --watch` shows
# the progress (a live line on a terminal) and prints the final status.
say "crawler status --watch"
crawler status --watch
mkdir -p target/demo
crawler results --jsonl - > target/demo/results.jsonl
say "crawler results --jsonl - > target/demo/results.jsonl: $(wc -l < target/demo/results.jsonl) pages"
head -c 400 target/demo/results.jsonl; echo
crawler results --warc - > target/demo/results.warc
say "crawler results --warc - > target/demo/results.warc: $(grep -c '^WARC-Type: response' target/demo/results.warc) responses"
crawler workers 0
say "demo done"
