#!/usr/bin/env bash
# A one-node SLURM on 127.0.0.1 for testing the pipeline's cluster profiles.
#
#   cluster/slurm-local.sh start    install packages if missing, write the config, start the daemons,
#                                   wait until the node is idle (already running -> ok)
#   cluster/slurm-local.sh stop     stop only the daemons whose pids this script recorded
#   cluster/slurm-local.sh status   print the recorded daemons and `sinfo`; exit 0 when up, 3 when not
#
# Exit status: 0 ok; 1 start-up failed (the daemons' log tails are printed); 2 usage; 3 not running
# (status); 4 cannot run on this machine (not root, no apt-get, packages do not install, no mknod, a real
# site config in /etc/slurm), which tests treat as "skip" rather than "broken".
#
# Environment:
#   SLURM_LOCAL_DIR     state folder: config, pids, logs, spool (default /tmp/slurm-local)
#   SLURM_LOCAL_WAIT_S  how long `start` waits for an idle node (default 60)
#
# Accounting: no slurmdbd/mariadb. Profiles for this cluster poll job state with `squeue`
# (slurm-status-command: squeue), which works because MinJobAge=3600 keeps finished jobs visible to
# squeue for an hour, far above the plugin's 3 x init-seconds threshold and long enough for tests to
# inspect. Compared with slurmdbd that is two fewer daemons, no database to initialise, about 24 s less
# installing, and fewer ways for `start` to fail. The price: `sacct` exits 1 here ("accounting storage is
# disabled"), and the plugin reports failed jobs without SLURM's reason.
#
# The real config lives in the state folder; /etc/slurm/{slurm,gres}.conf are symlinks to it so that
# sbatch/squeue/sinfo, run by Snakemake, need no SLURM_CONF. A regular file there (a real site config)
# is never overwritten.
set -euo pipefail

export PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"
STATE_DIR="${SLURM_LOCAL_DIR:-/tmp/slurm-local}"
WAIT_S="${SLURM_LOCAL_WAIT_S:-60}"
PACKAGES=(munge slurmctld slurmd slurm-client)
REQUIRED_COMMANDS=(munged munge unmunge slurmctld slurmd sinfo sbatch squeue scontrol)
SLURM_ETC=/etc/slurm
NODE="$(hostname -s)"

log() { echo "slurm-local: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
unsupported() { log "ERROR: $*"; exit 4; }

pid_file() { echo "$STATE_DIR/$1.pid"; }

# Prints the recorded pid of daemon $1 if that process is alive and still runs that program (pids get
# reused, so a bare `kill -0` could point at a stranger).
live_pid() {
    local name=$1 file pid
    file="$(pid_file "$name")"
    [[ -s $file ]] || return 1
    pid="$(<"$file")"
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] || return 1
    echo "$pid"
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1; }

# Epoch seconds of the node's last slurmd registration (0 if unknown): "idle" counts only when it comes
# from the slurmd just started, not from node state a slurmctld kept from an earlier run.
slurmd_start_epoch() {
    local stamp
    stamp="$(scontrol show node "$NODE" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)"
    date -d "$stamp" +%s 2>/dev/null || echo 0
}

print_log_tails() {
    local file
    for file in "$STATE_DIR"/munged.out /var/log/munge/munged.log "$STATE_DIR"/slurmctld.log \
        "$STATE_DIR"/slurmctld.out "$STATE_DIR"/slurmd.log "$STATE_DIR"/slurmd.out; do
        [[ -s $file ]] || continue
        echo "----- last lines of $file -----" >&2
        tail -n 15 "$file" >&2
    done
}

install_packages() {
    local missing=() cmd
    for cmd in "${REQUIRED_COMMANDS[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null 2>&1 ||
        unsupported "missing ${missing[*]} and no apt-get to install ${PACKAGES[*]}; install them by hand"
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    # The lock timeout lets a concurrent apt run on the same machine finish instead of failing us.
    apt-get -o DPkg::Lock::Timeout=120 update -qq ||
        unsupported "apt-get update failed (no network to the package mirror?)"
    apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null ||
        unsupported "apt-get install ${PACKAGES[*]} failed"
    for cmd in "${REQUIRED_COMMANDS[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || unsupported "$cmd still missing after installing ${PACKAGES[*]}"
    done
}

write_config() {
    local hw cpus_topology real_mem
    mkdir -p "$STATE_DIR/ctld" "$STATE_DIR/slurmd"
    # The plugin asks for --gpus=1; slurmd 22.05 drops a GPU without a device file and marks the node
    # invalid, so give it a character device (same numbers as /dev/null) outside /dev.
    [[ -c $STATE_DIR/fake-gpu0 ]] || mknod "$STATE_DIR/fake-gpu0" c 1 3 ||
        unsupported "mknod $STATE_DIR/fake-gpu0 failed (no CAP_MKNOD?)"

    hw="$(slurmd -C | head -n1)"
    cpus_topology="$(grep -o 'CPUs=[0-9]* .*ThreadsPerCore=[0-9]*' <<<"$hw")" ||
        die "cannot parse the hardware line of slurmd -C: $hw"
    # Leave 10 % of the memory to the OS and the daemons.
    real_mem=$(($(grep -o 'RealMemory=[0-9]*' <<<"$hw" | cut -d= -f2) * 9 / 10))

    cat >"$STATE_DIR/slurm.conf" <<EOF
# Written by cluster/slurm-local.sh: a one-node test cluster on 127.0.0.1.
ClusterName=local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$STATE_DIR/ctld/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Keeps finished jobs visible to squeue for an hour: the profiles' status command relies on it.
MinJobAge=3600
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# Reject at submission what can never run here instead of leaving it PENDING forever.
EnforcePartLimits=ALL
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 $cpus_topology RealMemory=$real_mem Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$STATE_DIR/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu File=$STATE_DIR/fake-gpu0
EOF

    mkdir -p "$SLURM_ETC"
    local name target
    for name in slurm.conf gres.conf; do
        target="$SLURM_ETC/$name"
        if [[ -e $target && ! -L $target ]]; then
            unsupported "$target is a real file (a site config?); refusing to replace it"
        fi
        ln -sfn "$STATE_DIR/$name" "$target"
    done
}

# Starts "$@" detached (own session, stdio to a file, the lock fd closed so it is not held forever) and
# records its pid. The commands run in the foreground (-F/-D), so $! is the daemon itself.
launch() {
    local name=$1 pid tries
    shift
    setsid "$@" </dev/null >"$STATE_DIR/$name.out" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$(pid_file "$name")"
    # Until the exec chain (setsid, setpriv) reaches the daemon, live_pid would call it dead.
    for ((tries = 0; tries < 50; tries++)); do
        [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] && return 0
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
}

start_munge() {
    if live_pid munged >/dev/null; then return 0; fi
    if munge_works; then
        log "using the munged that is already running (not started here, so stop leaves it alone)"
        rm -f "$(pid_file munged)"
        return 0
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        setpriv --reuid=munge --regid=munge --init-groups mungekey --create --keyfile=/etc/munge/munge.key
    fi
    launch munged setpriv --reuid=munge --regid=munge --init-groups munged -F
    local deadline=$((SECONDS + 10))
    until munge_works; do
        ((SECONDS < deadline)) && live_pid munged >/dev/null || fail_start "munged did not come up"
        sleep 0.2
    done
}

# Waits until the node is in a state matching the regex $2, registered by a slurmd started at or after
# epoch $1.
wait_for_node() {
    local since=$1 wanted=$2 deadline=$((SECONDS + WAIT_S)) state="" daemon
    while ((SECONDS < deadline)); do
        for daemon in slurmctld slurmd; do
            live_pid "$daemon" >/dev/null || fail_start "$daemon exited during start-up"
        done
        state="$(node_state)"
        if [[ $state =~ $wanted ]] && (($(slurmd_start_epoch) >= since)); then
            return 0
        fi
        sleep 0.2
    done
    fail_start "node $NODE not in a state matching $wanted after ${WAIT_S} s" \
        "(last: '${state:-no answer from slurmctld}')"
}

# Shows why start-up failed, stops what this start launched (so a retry begins clean) and exits 1.
fail_start() {
    print_log_tails
    stop_daemons
    die "$*"
}

stop_daemons() {
    local name pid waited
    for name in slurmd slurmctld munged; do
        if pid="$(live_pid "$name")"; then
            kill -TERM "$pid" 2>/dev/null || true
            for ((waited = 0; waited < 50; waited++)); do
                live_pid "$name" >/dev/null || break
                sleep 0.2
            done
            if live_pid "$name" >/dev/null; then
                log "$name ($pid) ignored SIGTERM for 10 s; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            log "stopped $name ($pid)"
        fi
        rm -f "$(pid_file "$name")"
    done
}

cmd_start() {
    local began=$SECONDS began_epoch
    began_epoch=$(date +%s)
    if live_pid slurmctld >/dev/null && live_pid slurmd >/dev/null && munge_works; then
        # Busy is fine: another caller may be running jobs on it.
        wait_for_node 0 '^(idle|mixed|allocated|completing)'
        log "already running (state in $STATE_DIR)"
        return 0
    fi
    # A half-running set (one daemon died) is restarted as a whole.
    stop_daemons
    install_packages
    write_config
    start_munge
    # -c: forget jobs and node state of earlier runs, so every start is the same clean cluster.
    launch slurmctld slurmctld -D -c
    launch slurmd slurmd -D -N "$NODE"
    wait_for_node "$began_epoch" '^idle$'
    log "node $NODE idle after $((SECONDS - began)) s (state in $STATE_DIR)"
    sinfo >&2
}

cmd_stop() {
    if ! compgen -G "$STATE_DIR/*.pid" >/dev/null; then
        log "nothing recorded in $STATE_DIR: not started by this script"
        return 0
    fi
    stop_daemons
}

cmd_status() {
    local name pid up=0
    for name in munged slurmctld slurmd; do
        if pid="$(live_pid "$name")"; then
            echo "$name: running (pid $pid)"
        elif [[ $name == munged ]] && munge_works; then
            echo "munged: running (not started by this script)"
        else
            echo "$name: not running"
            up=3
        fi
    done
    if ((up == 0)); then
        sinfo
        [[ "$(node_state)" =~ ^(idle|mixed|allocated|completing) ]] || up=3
    fi
    return $up
}

main() {
    local command=${1:-}
    case $command in
    start | stop | status) ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
    esac
    if [[ $command == status ]]; then
        cmd_status || exit $?
        return 0
    fi
    ((EUID == 0)) ||
        unsupported "must run as root: it installs packages and starts munged, slurmctld and slurmd"
    mkdir -p "$STATE_DIR"
    # One start/stop at a time: tests and people may call this concurrently on a shared machine.
    exec 9>"$STATE_DIR/lock"
    flock -w 300 9 || die "another slurm-local.sh holds $STATE_DIR/lock"
    "cmd_$command"
}

main "$@"
