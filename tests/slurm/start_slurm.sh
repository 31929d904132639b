#!/usr/bin/env bash
# start_slurm.sh - a single-node Slurm cluster on this Debian machine, for the Slurm test
# (tests/test_slurm_cluster.py): munged, MariaDB + slurmdbd (so that `sacct` keeps every job's
# record), slurmctld and slurmd, without systemd, with fake GPUs. Must run as root.
#
# Every daemon this script starts is recorded in $SLURM_RUN_DIR/started/<name>.pid
# ("<pid> <start time in clock ticks>"), so that stop_slurm.sh stops exactly those processes and
# nothing else. A munged or MariaDB that was already answering is used, not recorded, not stopped.
# The configuration files it writes under /etc/slurm carry the marker line below; it refuses
# to overwrite a slurm.conf without it (a real cluster's), and stop_slurm.sh removes them.
#
# Environment (all optional):
#   SLURM_RUN_DIR      state, spool, logs, pid records, MariaDB datadir  (default ${TMPDIR:-/tmp}/pcam-slurm)
#   SLURM_PARTITIONS   partition names, space separated, all on this node; the first is the default
#                      (default "debug"). The test passes the names the project's profile uses.
#   SLURM_CLUSTER      ClusterName                                      (default pcamtest)
#   SLURM_NODE_MEM_MB  RealMemory the node advertises                   (default min(4000, 90% of RAM))
#                      More than the machine has is allowed (SlurmdParameters=config_overrides):
#                      nothing here enforces memory (no cgroups), so a job's --mem is bookkeeping,
#                      and the profile's real-cluster requests fit unchanged.
#   SLURM_FAKE_GPUS    fake GPUs on the node, 0-4                         (default 1)
#                      gres.conf File=/dev/null, /dev/zero, ...: Slurm allocates them and sets
#                      CUDA_VISIBLE_DEVICES; no CUDA driver sees them, so jobs compute on the CPU.
#   SLURM_SKIP_INSTALL 1 = never call apt-get                             (default 0)
#   SLURM_WAIT_S       seconds to wait for the node to become idle      (default 60)
#
# Adapted from a start script tested on Debian 12 with Slurm 22.05.8. Traps it avoids:
#   - NodeAddr=127.0.0.1 and SlurmctldHost=<host>(127.0.0.1): no DNS needed;
#   - ProctrackType=proctrack/linuxproc, TaskPlugin=task/none: no cgroups in containers;
#   - the node's topology copied from `slurmd -C` (else it drains for "Low socket*core count");
#   - fake GPUs need File= in gres.conf (else the node goes INVAL: "0 < 1" gpus);
#   - DefMemPerCPU, else a job without --mem takes the whole node's memory;
#   - AccountingStoreFlags=job_comment: the Slurm executor plugin names each job's rule only in
#     its comment (the job name is the run's id), so without it sacct cannot tell rules apart;
#   - AccountingStorageTRES=gres/gpu: else sacct's AllocTRES shows no GPU.
set -euo pipefail

RUN_DIR=${SLURM_RUN_DIR:-${TMPDIR:-/tmp}/pcam-slurm}
read -r -a PARTITIONS <<< "${SLURM_PARTITIONS:-debug}"
CLUSTER=${SLURM_CLUSTER:-pcamtest}
FAKE_GPUS=${SLURM_FAKE_GPUS:-1}
WAIT_S=${SLURM_WAIT_S:-60}
DB_PASS=pcamtestdb
MARKER="# written by pcam tests/slurm/start_slurm.sh"

log() { printf '[start_slurm %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
[ "${#PARTITIONS[@]}" -gt 0 ] || die "SLURM_PARTITIONS is empty"
T_START=$(date +%s.%N)

# ---------------------------------------------------------------- install
PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "${SLURM_SKIP_INSTALL:-0}" = 1 ] && die "missing packages: ${missing[*]}"
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  log "install done"
fi

# ---------------------------------------------------------------- helpers
STARTED=$RUN_DIR/started
mkdir -p "$RUN_DIR"/{state,spool,log,pidfiles} "$STARTED"
chmod 755 "$RUN_DIR"

# start time (field 22 of /proc/PID/stat) of a live, non-zombie process; empty otherwise
proc_starttime() { awk '$3 != "Z" {print $22}' "/proc/$1/stat" 2>/dev/null; }

# is the process recorded in $STARTED/<name>.pid still the one we started?
recorded_alive() {
  local f=$STARTED/$1.pid pid st
  [ -f "$f" ] || return 1
  read -r pid st < "$f" || return 1
  [ -n "$pid" ] && [ "$(proc_starttime "$pid")" = "$st" ]
}

record_pid() {   # record_pid <name> <pid>
  local st
  st=$(proc_starttime "$2") || true
  [ -n "$st" ] || die "$1 (pid $2) is not running"
  echo "$2 $st" > "$STARTED/$1.pid"
  log "$1 started, pid $2"
}

wait_for() {     # wait_for <seconds> <description> <command...>
  local secs=$1 what=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "timeout after ${secs}s waiting for $what"
    sleep 0.2
  done
}

wait_pidfile() { # wait_pidfile <file> ; prints pid
  local i
  for i in $(seq 1 100); do
    if [ -s "$1" ]; then cat "$1"; return 0; fi
    sleep 0.1
  done
  return 1
}

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q . ; }
start_daemon() { # start_daemon <name> <port>: start /usr/sbin/<name> and record it;
                 # returns 1 (starting nothing) when the one recorded earlier is alive
  local name=$1 port=$2 pid
  recorded_alive "$name" && return 1
  port_busy "$port" && die "port $port ($name) already in use by a process this script did not start"
  rm -f "$RUN_DIR/pidfiles/$name.pid"
  "/usr/sbin/$name"
  pid=$(wait_pidfile "$RUN_DIR/pidfiles/$name.pid") || die "$name wrote no pid file (see $RUN_DIR/log/$name.log)"
  record_pid "$name" "$pid"
}

write_conf() {   # write_conf <path>: stdin -> path, never over a file someone else wrote
  if [ -e "$1" ] && ! head -1 "$1" | grep -qxF "$MARKER"; then
    die "$1 exists and was not written by this script (a real cluster's?); not overwriting it"
  fi
  { echo "$MARKER"; cat; } > "$1"
}

HOST=$(hostname -s)

# ---------------------------------------------------------------- config
# Node topology exactly as slurmd sees the hardware (avoids "Low socket*core count" drains).
HW=$(slurmd -C 2>/dev/null | head -1 || true)
hwval() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$HW"; }
CPUS=$(hwval CPUs); BOARDS=$(hwval Boards); SOCKETS=$(hwval SocketsPerBoard)
CORES=$(hwval CoresPerSocket); THREADS=$(hwval ThreadsPerCore); HWMEM=$(hwval RealMemory)
if [ -n "$CPUS" ] && [ -n "$CORES" ]; then
  TOPO="CPUs=$CPUS Boards=${BOARDS:-1} SocketsPerBoard=${SOCKETS:-1} CoresPerSocket=$CORES ThreadsPerCore=${THREADS:-1}"
else
  TOPO="CPUs=$(nproc)"
  HWMEM=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 ))
fi
MEM=${SLURM_NODE_MEM_MB:-$(( HWMEM * 9 / 10 < 4000 ? HWMEM * 9 / 10 : 4000 ))}

mkdir -p /etc/slurm
GRES_NODE=""; GRES_TYPES=""
if [ "$FAKE_GPUS" -gt 0 ]; then
  GRES_NODE=" Gres=gpu:$FAKE_GPUS"
  GRES_TYPES="GresTypes=gpu
AccountingStorageTRES=gres/gpu"
  devs=(/dev/null /dev/zero /dev/full /dev/urandom)  # one distinct device file per fake GPU
  [ "$FAKE_GPUS" -le "${#devs[@]}" ] || die "SLURM_FAKE_GPUS max ${#devs[@]}"
  files=$(IFS=,; echo "${devs[*]:0:$FAKE_GPUS}")
  write_conf /etc/slurm/gres.conf <<EOF
AutoDetect=off
NodeName=$HOST Name=gpu File=$files
EOF
elif [ -e /etc/slurm/gres.conf ]; then
  head -1 /etc/slurm/gres.conf | grep -qxF "$MARKER" && rm -f /etc/slurm/gres.conf
fi

PARTITION_LINES=""
default=YES
for p in "${PARTITIONS[@]}"; do
  PARTITION_LINES+="PartitionName=$p Nodes=$HOST Default=$default MaxTime=INFINITE State=UP"$'\n'
  default=NO
done

write_conf /etc/slurm/slurm.conf <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# no cgroups: linuxproc process tracking, no task containment, no memory enforcement
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# jobs without --mem must not grab the whole node
DefMemPerCPU=256
# the node advertises SLURM_NODE_MEM_MB even when the machine has less
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
StateSaveLocation=$RUN_DIR/state
SlurmdSpoolDir=$RUN_DIR/spool
SlurmctldPidFile=$RUN_DIR/pidfiles/slurmctld.pid
SlurmdPidFile=$RUN_DIR/pidfiles/slurmd.pid
SlurmctldLogFile=$RUN_DIR/log/slurmctld.log
SlurmdLogFile=$RUN_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$GRES_TYPES
NodeName=$HOST NodeAddr=127.0.0.1 $TOPO RealMemory=$MEM$GRES_NODE State=UNKNOWN
$PARTITION_LINES
EOF
log "wrote /etc/slurm/slurm.conf (node $HOST: $TOPO RealMemory=$MEM${GRES_NODE}; partitions ${PARTITIONS[*]})"

# ---------------------------------------------------------------- munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "a munged is already answering; using it (not recorded, will not be stopped)"
else
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key; chmod 700 /etc/munge; chmod 600 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge; chmod 755 /run/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  pid=$(wait_pidfile /run/munge/munged.pid) || die "munged wrote no pid file"
  record_pid munged "$pid"
  wait_for 10 munged bash -c 'munge -n | unmunge'
fi

# ---------------------------------------------------------------- accounting
if mariadb-admin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1; then
  log "a MariaDB is already answering on /run/mysqld/mysqld.sock; using it (not recorded)"
else
  # private datadir next to slurmctld's state, so job ids and the accounting DB
  # are created and wiped together (wiping only one gives duplicate job ids in sacct)
  DB_DIR=$RUN_DIR/mysql
  DB_OPTS=(--innodb-log-file-size=8M --innodb-buffer-pool-size=64M)
  if [ ! -d "$DB_DIR/mysql" ]; then
    log "initialising MariaDB datadir $DB_DIR"
    mkdir -p "$DB_DIR"; chown mysql:mysql "$DB_DIR"
    mariadb-install-db --user=mysql --datadir="$DB_DIR" "${DB_OPTS[@]}" \
      >"$RUN_DIR/log/mariadb-install-db.log" 2>&1 || die "mariadb-install-db failed"
  fi
  mkdir -p /run/mysqld; chown mysql:root /run/mysqld
  rm -f /run/mysqld/mariadbd.pid
  setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DB_DIR" "${DB_OPTS[@]}" \
    --pid-file=/run/mysqld/mariadbd.pid --socket=/run/mysqld/mysqld.sock \
    --skip-networking --log-error="$DB_DIR/mariadbd.err" \
    </dev/null >"$RUN_DIR/log/mariadbd.out" 2>&1 &
  wait_for 60 mariadb mariadb-admin --socket=/run/mysqld/mysqld.sock ping
  pid=$(wait_pidfile /run/mysqld/mariadbd.pid) || die "mariadbd wrote no pid file"
  record_pid mariadbd "$pid"
fi
mariadb --socket=/run/mysqld/mysqld.sock -e "
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
  ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

write_conf /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
DebugLevel=info
LogFile=$RUN_DIR/log/slurmdbd.log
PidFile=$RUN_DIR/pidfiles/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 /etc/slurm/slurmdbd.conf

start_daemon slurmdbd 6819 || log "slurmdbd already running (recorded)"
wait_for 30 slurmdbd sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
  sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

# ---------------------------------------------------------------- slurmctld / slurmd
start_daemon slurmctld 6817 || { log "slurmctld already running (recorded); reconfiguring"; scontrol reconfigure; }
wait_for 30 slurmctld bash -c 'scontrol ping | grep -q "is UP"'

start_daemon slurmd 6818 || log "slurmd already running (recorded)"

# a node left DOWN/DRAIN by an earlier run is resumed
end=$(( $(date +%s) + WAIT_S ))
while :; do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1)
  case "$state" in
    idle) break;;
    drain*|down*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true;;
  esac
  [ "$(date +%s)" -lt "$end" ] || { sinfo -R; die "node $HOST not idle after ${WAIT_S}s (state: ${state:-?}); see $RUN_DIR/log/"; }
  sleep 0.2
done

# smoke test: a real job step through munge -> slurmctld -> slurmd -> slurmstepd
timeout 30 srun -N1 -n1 -t 1 -J start_slurm_smoke true \
  || die "smoke test 'srun true' failed; see $RUN_DIR/log/"

sinfo
log "cluster up in $(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s (logs in $RUN_DIR/log)"
