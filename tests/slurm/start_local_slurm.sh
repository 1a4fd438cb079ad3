#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the submitit launcher tests. Idempotent: a
# cluster this script already started is reused; anything missing is installed or started.
#
#   tests/slurm/start_local_slurm.sh [STATE_DIR]     (default /tmp/r1exp-slurm)
#
# Needs root (apt-get, daemons). Installs Debian's slurm-wlm + munge when missing. The config
# lives in STATE_DIR (nothing under /etc/slurm is touched): clients find it through SLURM_CONF,
# which the last line of output prints as `SLURM_CONF=<path>`. Daemons started here write
# their pids to STATE_DIR/*.pid; stop_local_slurm.sh stops exactly those.
#
# Settings that work in a container/VM without systemd or cgroups: munged as the munge user,
# SlurmUser=root, proctrack/linuxproc, task/none, select/cons_tres, one node named by
# `hostname -s` with the CPUs and memory `slurmd -C` reports. No accounting daemon, so sacct
# fails; submitit then tells a job is done by its result file (it warns, and that is fine).
set -euo pipefail

STATE=${1:-/tmp/r1exp-slurm}
CONF=$STATE/slurm.conf
export SLURM_CONF=$CONF

log() { echo "[start_local_slurm] $*" >&2; }

if [[ $(id -u) != 0 ]]; then
    log "must run as root (installs packages, starts slurmctld/slurmd as root)"; exit 2
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # Exit status 3 tells the test fixture the packages cannot be had here (it skips then).
    apt-get update -qq >&2 || exit 3
    apt-get install -y -qq slurm-wlm munge >&2 || exit 3
fi

# --- munge: authentication between slurmctld, slurmd and the clients ---------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
mkdir -p "$STATE"
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
    munge -n | unmunge >/dev/null
    cp /run/munge/munged.pid "$STATE/munged.pid"   # started here: stop_local_slurm.sh stops it
fi

# --- slurm.conf for one node: this machine -------------------------------------------------------
mkdir -p "$STATE/ctld" "$STATE/d"
HOST=$(hostname -s)
NODE_LINE=$(slurmd -C | head -1)   # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
cat > "$CONF.new" <<EOF
ClusterName=r1exp-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
$NODE_LINE State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
if ! cmp -s "$CONF.new" "$CONF" 2>/dev/null; then
    mv "$CONF.new" "$CONF"
    CONF_CHANGED=1
else
    rm "$CONF.new"
    CONF_CHANGED=0
fi

# A pid file names our daemon only while that pid is still that program (pids get reused).
running() { [[ -s $STATE/$1.pid ]] && grep -qx "$1" "/proc/$(cat "$STATE/$1.pid")/comm" 2>/dev/null; }

if running slurmctld && [[ $CONF_CHANGED == 1 ]]; then
    log "slurm.conf changed: reconfiguring"
    scontrol reconfigure >&2 || true
fi
if ! running slurmctld; then
    log "starting slurmctld"
    slurmctld -f "$CONF" -c   # -c: forget jobs an earlier test cluster left in STATE
fi
if ! running slurmd; then
    log "starting slurmd"
    slurmd -f "$CONF"
fi

# --- wait until the node takes jobs ----------------------------------------------------------------
for _ in $(seq 120); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    case $state in
        idle*|mixed*|allocated*) break ;;
        down*|drain*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
if [[ $state != idle* && $state != mixed* && $state != allocated* ]]; then
    log "node $HOST is '$state', not idle; see $STATE/slurmctld.log and $STATE/slurmd.log"
    exit 1
fi
log "node $HOST is $state"
echo "SLURM_CONF=$CONF"
