#!/usr/bin/env bash
# Stop the daemons that start_local_slurm.sh started (by the pids it recorded in STATE_DIR),
# and nothing else.   tests/slurm/stop_local_slurm.sh [STATE_DIR]
set -uo pipefail
STATE=${1:-/tmp/r1exp-slurm}
for name in slurmd slurmctld munged; do
    pidfile=$STATE/$name.pid
    [[ -s $pidfile ]] || continue
    pid=$(cat "$pidfile")
    if grep -qx "$name" "/proc/$pid/comm" 2>/dev/null; then   # still ours, not a reused pid
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$pidfile"
done
