#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the SLURM end-to-end test (tests/test_slurm.py).
# Debian packages (munge, slurmctld, slurmd, slurm-client); run as root; works without systemd or cgroups.
# Fake GPU GRES on the node so that the real profile's GPU requests (--gres=gpu:1) schedule on a GPU-less box.
#
#   local_cluster.sh install | start | stop | status
#
# Everything it writes lives under $LOSSATLAS_SLURM_BASE (default /tmp/lossatlas-slurm), plus /etc/slurm and the
# munge runtime dirs; `stop` ends exactly the daemons `start` started (by their pid files).
set -euo pipefail

BASE=${LOSSATLAS_SLURM_BASE:-/tmp/lossatlas-slurm}
FAKE_GPUS=${LOSSATLAS_SLURM_GPUS:-4}
CONF=/etc/slurm
HOST=$(hostname -s)

say() { printf '[local_cluster] %s\n' "$*" >&2; }

poll() { # poll SECONDS CMD... : retry every 0.25 s
    local limit=$(( $1 * 4 )); shift
    for _ in $(seq 1 "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
    return 1
}

install() {
    export DEBIAN_FRONTEND=noninteractive
    if command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        say "SLURM already installed"; return 0
    fi
    apt-get update -q
    apt-get install -y -q --no-install-recommends munge slurmctld slurmd slurm-client
}

write_conf() {
    mkdir -p "$BASE"/{state,spool,log,run,gpu} "$CONF"
    local mem
    # The profile's requests are sized for cluster nodes (a group of 4 figure jobs asks for 10 GB); the test's jobs
    # use a fraction of that. Declare at least 64 GB so they run side by side: config_overrides (below) keeps a
    # node with less memory than declared in service (without it, RealMemory above what slurmd detects drains it).
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
    mem=$(( mem * 9 / 10 ))
    [ "$mem" -ge 64000 ] || mem=64000
    # The real profile asks for 4 CPUs per GPU job; declare at least 4 per fake GPU so it schedules unchanged on a
    # small test machine, all GPUs busy at once (SlurmdParameters=config_overrides lets slurmd accept more CPUs than
    # it detects; the jobs mostly wait on start-up and polling). `nproc --all`: plain nproc obeys OMP_NUM_THREADS,
    # which the test process may have set to 1.
    cpus=$(nproc --all)
    [ "$cpus" -ge $(( 4 * FAKE_GPUS )) ] || cpus=$(( 4 * FAKE_GPUS ))
    # gres/gpu needs File= entries that exist; /dev/null links stand in for devices.
    for i in $(seq 0 $(( FAKE_GPUS - 1 ))); do ln -sfn /dev/null "$BASE/gpu/nvidia$i"; done
    echo "NodeName=$HOST Name=gpu File=$BASE/gpu/nvidia[0-$(( FAKE_GPUS - 1 ))]" > "$CONF/gres.conf"
    cat > "$CONF/slurm.conf" <<CONF
# written by lossatlas tests/slurm/local_cluster.sh: a single-node test cluster
ClusterName=lossatlas-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# squeue-based status checks need finished jobs to stay visible for a while, and the test reads every job of
# its run from squeue at the end
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
GresTypes=gpu
SlurmdParameters=config_overrides
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$FAKE_GPUS State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
CONF
}

start_munge() {
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
    cp /run/munge/munged.pid "$BASE/run/munged.pid"
}

node_ready() { sinfo -h -n "$HOST" -o %T | grep -qE '^(idle|mixed|allocated)'; }

start() {
    stop 2>/dev/null || true
    getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >> /etc/hosts
    write_conf
    start_munge
    /usr/sbin/slurmctld -c
    poll 30 scontrol ping || { tail -40 "$BASE/log/slurmctld.log"; exit 1; }
    /usr/sbin/slurmd
    poll 60 node_ready || { sinfo -N -l; tail -40 "$BASE/log/slurmd.log"; exit 1; }
    say "cluster up: $(sinfo -h -o '%P %D %T' | tr '\n' ' ')"
}

stop_pid() { # stop_pid NAME PIDFILE: SIGTERM, wait up to 15 s, then SIGKILL
    local f=$2 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        poll 15 sh -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
        say "stopped $1 ($pid)"
    fi
    rm -f "$f"
}

stop() {
    stop_pid slurmd "$BASE/run/slurmd.pid"
    stop_pid slurmctld "$BASE/run/slurmctld.pid"
    stop_pid munged "$BASE/run/munged.pid"
}

status() {
    for d in slurmd slurmctld munged; do
        f="$BASE/run/$d.pid"
        if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then echo "$d running ($(cat "$f"))"; else echo "$d stopped"; fi
    done
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
