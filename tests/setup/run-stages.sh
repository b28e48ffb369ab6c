#!/usr/bin/env bash
# Run `make` targets (the stages of `make test`) in lanes side by side:
#   run-stages.sh "a b c" "d e"
# runs a, b, c one after the other while d, e run one after the other beside them. A stage's
# output goes to build/test-logs/<stage>.log and is printed whole when the stage ends (never
# interleaved with another lane's), followed by "== <stage> passed|FAILED in N s". A failed
# stage does not stop its lane (the run reports every stage); the script then exits 1. It ends
# with each stage's time, the lanes' times and the load average at start and end.
set -euo pipefail
cd "$(dirname "$0")/../.."
logs=build/test-logs
rm -rf "$logs"
mkdir -p "$logs"
lock=$logs/.print-lock
started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

run_lane() { # lane number, stages...
  local lane=$1; shift
  local lane_start; lane_start=$(date +%s)
  for stage in "$@"; do
    local start rc seconds
    start=$(date +%s)
    rc=0
    make --no-print-directory "$stage" >"$logs/$stage.log" 2>&1 </dev/null || rc=$?
    seconds=$(( $(date +%s) - start ))
    {
      flock 9
      echo "== $stage (lane $lane) output:"
      cat "$logs/$stage.log"
      if [ "$rc" = 0 ]; then echo "== $stage passed in $seconds s"; else echo "== $stage FAILED (exit $rc) in $seconds s"; fi
    } 9>"$lock"
    echo "$stage $rc $seconds $lane" >>"$logs/.results"
  done
  echo "lane $lane: $* - $(( $(date +%s) - lane_start )) s" >>"$logs/.lanes"
}

lane=0
pids=()
for stages in "$@"; do
  lane=$((lane + 1))
  # shellcheck disable=SC2086 # a lane is a space-separated list of stages
  run_lane "$lane" $stages &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || true; done

echo "== stage times (wall clock; lanes ran side by side)"
failed=0
while read -r stage rc seconds lane_no; do
  if [ "$rc" = 0 ]; then result=passed; else result="FAILED (exit $rc)"; failed=1; fi
  printf '   %-24s lane %s  %5s s  %s\n' "$stage" "$lane_no" "$seconds" "$result"
done <"$logs/.results"
sed 's/^/   /' "$logs/.lanes"
expected=$(echo "$@" | wc -w)
if [ "$(wc -l <"$logs/.results")" != "$expected" ]; then
  echo "== only $(wc -l <"$logs/.results") of $expected stages reported a result"
  failed=1
fi
echo "== stages: $(( $(date +%s) - started )) s; load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$failed"
