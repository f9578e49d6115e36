#!/usr/bin/env bash
# A one-node Slurm cluster on 127.0.0.1 for the sharded-run tests (tests/slurm.rs):
# installs Debian's slurm-wlm and munge by package name (once per machine), writes a
# one-node /etc/slurm/slurm.conf sized to this machine, and starts munged, slurmctld and
# slurmd as plain daemons (no systemd needed; containers have none). Idempotent: with
# everything up it only checks and returns. Prints `export ASSAY_SLURM=1` (and where the
# daemons log) for the caller to eval:
#
#   eval "$(scripts/start-slurm.sh)"
#
# Slurm's daemons run as root (SlurmUser=root, SlurmdUser=root); with
# ProctrackType=proctrack/linuxproc and TaskPlugin=task/none they need no cgroups, which
# is what lets them run inside a container. An /etc/slurm/slurm.conf this script did not
# write is left alone: if that cluster already answers, it is used as it is.
set -euo pipefail

conf=/etc/slurm/slurm.conf
marker="# Written by assay scripts/start-slurm.sh"
spool=/var/spool/slurm
logs=/var/log/slurm
node=$(hostname -s)
timeout=${ASSAY_SLURM_START_TIMEOUT:-60}

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  as_root=(sudo)
fi

say() { echo "start-slurm.sh: $*" >&2; }

# The node's state as sinfo reports it ("idle", "mixed", "allocated", "down*", ...), or
# nothing when the controller does not answer.
node_state() {
  timeout 10 sinfo -h -N -n "$node" -o '%T' 2>/dev/null | head -n1 || true
}

node_ready() {
  case "$(node_state)" in
    idle | mixed | allocated | completing) return 0 ;;
    *) return 1 ;;
  esac
}

# A daemon is up when its pid file names a live process of that name (a stale pid file
# left by a machine restart may name another process by now).
running() {
  local pidfile=$1 pid name
  name=$(basename "$pidfile" .pid)
  pid=$("${as_root[@]}" cat "$pidfile" 2>/dev/null || true)
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]
}

emit() {
  echo "export ASSAY_SLURM=1"
  echo "export ASSAY_SLURM_LOGS=$logs"
}

# Fast path: everything up already. (On a cluster this script configured, the daemons'
# pid files are checked too: slurmctld notices a dead slurmd only after SlurmdTimeout.)
ours() { [ -f "$conf" ] && grep -qF "$marker" "$conf"; }
if command -v sinfo >/dev/null && command -v sbatch >/dev/null && node_ready \
  && { ! ours || { running /run/munge/munged.pid && running /run/slurmctld.pid && running /run/slurmd.pid; }; }; then
  emit
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
  || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge with apt-get (once)"
  "${as_root[@]}" apt-get update -qq >&2 || true
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurm-wlm munge >&2
fi

# --- munge: the key, then the daemon (as the munge user, as its service unit runs it) ---
if ! "${as_root[@]}" test -s /etc/munge/munge.key; then
  say "creating /etc/munge/munge.key"
  "${as_root[@]}" mkdir -p /etc/munge
  "${as_root[@]}" mungekey --create --keyfile=/etc/munge/munge.key >&2
  "${as_root[@]}" chown munge:munge /etc/munge/munge.key
  "${as_root[@]}" chmod 0400 /etc/munge/munge.key
fi
if ! running /run/munge/munged.pid; then
  say "starting munged"
  "${as_root[@]}" mkdir -p /run/munge /var/lib/munge /var/log/munge
  "${as_root[@]}" chown munge:munge /run/munge /var/lib/munge /var/log/munge
  "${as_root[@]}" chmod 0755 /run/munge
  "${as_root[@]}" runuser -u munge -- /usr/sbin/munged >&2
fi
for _ in $(seq 50); do
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
  sleep 0.1
done
if ! munge -n | unmunge >/dev/null; then
  say "munged does not answer (see /var/log/munge/munged.log)"
  exit 1
fi

# --- slurm.conf: one node, this machine's CPUs and memory as slurmd detects them ---
if [ -f "$conf" ] && ! ours; then
  say "$conf was not written by this script; leaving it alone"
  if ! running /run/slurmctld.pid; then "${as_root[@]}" slurmctld >&2; fi
  if ! running /run/slurmd.pid; then "${as_root[@]}" slurmd >&2; fi
else
  # `slurmd -C` prints e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1
  # CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"; keep the hardware fields.
  hardware=$(slurmd -C | head -n1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')
  if [ -z "$hardware" ]; then
    hardware="CPUs=$(nproc) RealMemory=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024)) "
  fi
  new=$(
    cat <<EOF
$marker: a one-node cluster on 127.0.0.1.
ClusterName=assay
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for a while.
MinJobAge=300
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$spool/ctld
SlurmdSpoolDir=$spool/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$node NodeAddr=127.0.0.1 ${hardware}State=UNKNOWN
PartitionName=assay Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  )
  changed=0
  if [ "$(cat "$conf" 2>/dev/null)" != "$new" ]; then
    say "writing $conf"
    "${as_root[@]}" mkdir -p /etc/slurm
    printf '%s\n' "$new" | "${as_root[@]}" tee "$conf" >/dev/null
    changed=1
  fi
  "${as_root[@]}" mkdir -p "$spool/ctld" "$spool/d" "$logs"
  # A new configuration needs fresh daemons.
  if [ "$changed" = 1 ]; then
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
      if running "$pidfile"; then
        say "restarting the daemon of $pidfile for the new configuration"
        "${as_root[@]}" kill "$("${as_root[@]}" cat "$pidfile")"
        for _ in $(seq 100); do running "$pidfile" || break; sleep 0.1; done
      fi
    done
  fi
  if ! running /run/slurmctld.pid; then
    say "starting slurmctld"
    "${as_root[@]}" slurmctld >&2
  fi
  if ! running /run/slurmd.pid; then
    say "starting slurmd"
    "${as_root[@]}" slurmd >&2
  fi
fi

# --- wait until the node takes jobs ---
deadline=$((SECONDS + timeout))
resumed=0
until node_ready; do
  state=$(node_state)
  # A node left down or drained by an earlier run (e.g. the machine was restarted under
  # the daemons) is returned to service once.
  case "$state" in
    down* | drain* | fail*)
      if [ "$resumed" = 0 ]; then
        say "node $node is $state; resuming it"
        "${as_root[@]}" scontrol update NodeName="$node" State=RESUME >&2 || true
        resumed=1
      fi
      ;;
  esac
  if [ "$SECONDS" -ge "$deadline" ]; then
    say "node $node not idle after ${timeout}s (state: ${state:-no answer from slurmctld})"
    for log in "$logs/slurmctld.log" "$logs/slurmd.log"; do
      echo "--- last lines of $log" >&2
      "${as_root[@]}" tail -n 20 "$log" >&2 || true
    done
    exit 1
  fi
  sleep 0.5
done
say "$(sinfo -N -o '%N %P %T %c %m' | tr '\n' ';')"
emit
