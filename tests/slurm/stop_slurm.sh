#!/usr/bin/env bash
# stop_slurm.sh - stop ONLY what start_slurm.sh started, after cancelling the jobs left on
# that cluster, and remove the configuration files it wrote under /etc/slurm.
# Reads $SLURM_RUN_DIR/started/<name>.pid ("<pid> <starttime>") and signals a PID only if
# /proc/<pid>/stat still shows the recorded start time (so a recycled PID is never hit).
# Never kills by name. Safe to run twice.
set -uo pipefail

RUN_DIR=${SLURM_RUN_DIR:-${TMPDIR:-/tmp}/pcam-slurm}
STARTED=$RUN_DIR/started
MARKER="# written by pcam tests/slurm/start_slurm.sh"
log() { printf '[stop_slurm %(%H:%M:%S)T] %s\n' -1 "$*"; }

# start time (field 22 of /proc/PID/stat) of a live, non-zombie process; empty otherwise
proc_starttime() { awk '$3 != "Z" {print $22}' "/proc/$1/stat" 2>/dev/null; }

ours() {  # ours <name> -> prints pid if the recorded process is still alive
  local f=$STARTED/$1.pid pid st
  [ -f "$f" ] || return 1
  read -r pid st < "$f" || return 1
  [ -n "$pid" ] && [ "$(proc_starttime "$pid")" = "$st" ] && echo "$pid"
}

if [ -d "$STARTED" ]; then
  # Cancel the jobs of our cluster first, so that no job outlives slurmd.
  if ours slurmctld >/dev/null && command -v scancel >/dev/null; then
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null)
    if [ -n "$jobs" ]; then
      log "cancelling jobs left on the cluster: $(echo $jobs)"
      # shellcheck disable=SC2086
      timeout 10 scancel --full $jobs 2>/dev/null || true
      for _ in $(seq 1 50); do
        [ -z "$(timeout 10 squeue -h -t PD,R,CG,S -o %i 2>/dev/null)" ] && break
        sleep 0.2
      done
    fi
  fi

  stop_one() {
    local name=$1 pid
    if ! pid=$(ours "$name"); then
      [ -f "$STARTED/$name.pid" ] && log "$name: recorded process no longer running"
      rm -f "$STARTED/$name.pid"; return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 150); do            # up to 30 s
      [ -z "$(proc_starttime "$pid")" ] && break
      sleep 0.2
    done
    if [ -n "$(proc_starttime "$pid")" ] && ours "$name" >/dev/null; then
      log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null; sleep 0.5
    fi
    rm -f "$STARTED/$name.pid"
  }

  # reverse start order
  for name in slurmd slurmctld slurmdbd mariadbd munged; do
    stop_one "$name"
  done

  left=$(ls "$STARTED" 2>/dev/null)
  [ -z "$left" ] || log "WARNING: unexpected records left in $STARTED: $left"
else
  log "nothing recorded in $STARTED"
fi

for conf in /etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/slurmdbd.conf; do
  if [ -f "$conf" ] && head -1 "$conf" | grep -qxF "$MARKER"; then
    rm -f "$conf"
  fi
done
log "done"
