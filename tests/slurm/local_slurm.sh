#!/usr/bin/env bash
# local_slurm.sh: a private, single-node SLURM cluster for tests (Debian 12, root, no systemd needed).
#
#   local_slurm.sh install   apt-get install slurm-wlm munge slurmdbd mariadb-server (idempotent; starts nothing)
#   local_slurm.sh start     start munged, mariadbd, slurmdbd, slurmctld, slurmd; wait until the node is idle
#   local_slurm.sh status    what is running (exit 0 when the whole cluster is up)
#   local_slurm.sh test      sbatch round trip and a fake-GPU job whose AllocTRES shows gres/gpu (via sacct)
#   local_slurm.sh env       print `export SLURM_CONF=...`: eval it in a shell to use sbatch/squeue/sacct
#   local_slurm.sh stop      cancel our jobs, then stop exactly the daemons `start` recorded
#   local_slurm.sh purge     stop, then delete the state directory (configs, database, spool, logs)
#
# Isolation. Every file (slurm.conf, gres.conf, slurmdbd.conf, the munge key and socket, the MariaDB data
# directory, spool, logs, PID records) lives in the state directory $LOCAL_SLURM_STATE (default
# /var/tmp/tms-local-slurm). The daemons find the config through SLURM_CONF=$LOCAL_SLURM_STATE/etc/slurm.conf
# (slurmdbd.conf and gres.conf are read from the same directory), talk to a private munged through
# AuthInfo=socket=..., and listen on non-default ports (16817-16819, MariaDB 16306), so a real SLURM, munge
# or MariaDB on the same machine is neither read nor disturbed. `start` refuses to run when one of those
# ports is taken.
# The one file outside the state directory: a symlink /etc/slurm/slurm.conf -> our slurm.conf, made by
# `start` and removed by `stop`. It is needed because snakemake-executor-plugin-slurm-jobstep (0.6.1)
# removes SLURM_CONF from the environment of the `srun` it runs inside every job, so that srun only
# finds a config at the default path. `start` refuses to run when /etc/slurm/slurm.conf exists and is
# not our symlink: it never overwrites a real configuration.
#
# Stopping. `start` records every PID it starts in $LOCAL_SLURM_STATE/pids. `stop` signals only those
# PIDs, and only after checking that /proc/PID/cmdline names the expected program and that the process
# belongs to this state directory (its command line or its SLURM_CONF); TERM first, KILL after a grace
# period. It never kills by name. Job steps (slurmstepd) left behind by slurmd are found by their open
# file descriptors into the state directory, nothing else.
#
# Settings (environment): LOCAL_SLURM_STATE, LOCAL_SLURM_GPUS (fake GPUs, default 1),
# LOCAL_SLURM_CLUSTER (default tmslocal), LOCAL_SLURM_PORT_BASE (default 16817: ctld, +1 slurmd,
# +2 slurmdbd), LOCAL_SLURM_DB_PORT (default 16306), LOCAL_SLURM_ACCOUNT (default "default").
#
# Partitions: `debug` (default) and `gpu`, both on the one node, so a profile can send GPU rules to a
# partition of their own as on a real cluster. The fake GPUs are gres `gpu:fake:N`, each backed by a
# character device (a copy of /dev/null) so slurmd counts them; jobs see CUDA_VISIBLE_DEVICES as usual.

set -euo pipefail

STATE=${LOCAL_SLURM_STATE:-/var/tmp/tms-local-slurm}
GPUS=${LOCAL_SLURM_GPUS:-1}
CLUSTER=${LOCAL_SLURM_CLUSTER:-tmslocal}
PORT_BASE=${LOCAL_SLURM_PORT_BASE:-16817}
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=${LOCAL_SLURM_DB_PORT:-16306}
ACCOUNT=${LOCAL_SLURM_ACCOUNT:-default}

ETC=$STATE/etc
CONF=$ETC/slurm.conf
LOG=$STATE/log
RUN=$STATE/run
PIDS=$STATE/pids
MUNGE_DIR=$STATE/munge
MUNGE_SOCKET=$MUNGE_DIR/munge.socket
DB_DIR=$STATE/mysql
DB_DATA=$DB_DIR/data
DB_SOCKET=$DB_DIR/mysqld.sock

SYS_CONF=/etc/slurm/slurm.conf
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)

export SLURM_CONF=$CONF

say() { printf '[local_slurm] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }
step_start() { STEP_T=$(date +%s.%N); }
step_done() { say "$1 ($(elapsed "$STEP_T"))"; }

need_root() { [[ $(id -u) -eq 0 ]] || die "run as root (the daemons run as root/munge/mysql and need mknod)"; }

# ---------------------------------------------------------------------------------------------- install
packages_missing() {
    local p missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    echo "${missing[@]:-}"
}

cmd_install() {
    need_root
    step_start
    local missing
    missing=$(packages_missing)
    if [[ -z $missing ]]; then
        step_done "install: ${PACKAGES[*]} already installed"
        return 0
    fi
    # Keep the packages' postinst scripts from starting system daemons (no systemd here; on a machine
    # with one, deb-systemd-invoke honours policy-rc.d too). Only installed when no policy exists.
    local policy=/usr/sbin/policy-rc.d guard=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, written by tms tests/slurm/local_slurm.sh install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        guard=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    local apt_log
    apt_log=$(mktemp /tmp/local_slurm_apt.XXXXXX)
    local apt=(apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0)
    # shellcheck disable=SC2086
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" $missing >"$apt_log" 2>&1; then
        say "install: apt-get install failed; running apt-get update and retrying"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$apt_log" 2>&1 || true
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" $missing >>"$apt_log" 2>&1 || {
            tail -n 30 "$apt_log" >&2
            die "apt-get install $missing failed (log: $apt_log)"
        }
    fi
    rm -f "$apt_log"
    if [[ $guard -eq 1 ]]; then rm -f "$policy"; trap - EXIT; fi
    missing=$(packages_missing)
    [[ -z $missing ]] || die "still missing after install: $missing"
    step_done "install: installed $(dpkg-query -W -f='${Version}' slurmctld) slurm, munge, slurmdbd, mariadb-server"
}

# ------------------------------------------------------------------------------------ PID bookkeeping
# pids file: one line per daemon: "<name> <pid>", in start order.

proc_alive() { # alive and not a zombie
    local pid=$1 st
    [[ -r /proc/$pid/stat ]] || return 1
    st=$(awk '{ sub(/^.*\) /, ""); print $1 }' 2>/dev/null <"/proc/$pid/stat") || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

# Is PID the daemon NAME that this state directory started? (guards against PID reuse)
proc_is_ours() {
    local name=$1 pid=$2 cmd exe
    proc_alive "$pid" || return 1
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    exe=${cmd%% *}
    [[ ${exe##*/} == "$name" ]] || return 1
    [[ $cmd == *"$STATE"* ]] && return 0
    # slurmdbd takes no config path on its command line: it finds slurmdbd.conf through SLURM_CONF
    tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qx "SLURM_CONF=$CONF"
}

record_pid() { echo "$1 $2" >>"$PIDS"; }

recorded() { [[ -f $PIDS ]] && cat "$PIDS" || true; }

recorded_pid() { recorded | awk -v n="$1" '$1 == n { p = $2 } END { print p }'; }

daemon_running() { local pid; pid=$(recorded_pid "$1"); [[ -n $pid ]] && proc_is_ours "$1" "$pid"; }

# Start a daemon in the background, detached from our session and with no inherited stdio (so a
# caller capturing our output is not kept waiting), and record its PID. The command must exec the
# daemon itself (setpriv execs), so $! is the daemon's PID.
launch() {
    local name=$1 logfile=$2
    shift 2
    setsid "$@" </dev/null >>"$logfile" 2>&1 &
    local pid=$!
    record_pid "$name" "$pid"
    say "  $name started (pid $pid)"
}

wait_for() { # wait_for SECONDS DESCRIPTION LOGFILE COMMAND...
    local limit=$1 what=$2 logfile=$3
    shift 3
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            say "timed out after ${limit}s waiting for: $what"
            [[ -f $logfile ]] && { say "last lines of $logfile:"; tail -n 25 "$logfile" >&2; }
            return 1
        fi
        sleep 0.2
    done
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ----------------------------------------------------------------------------------------------- start
node_name() { hostname -s; }

hardware_line() {
    # CPUs/RealMemory from `slurmd -C`; fall back to nproc/free.
    local line cpus mem
    line=$(slurmd -C 2>/dev/null | head -n 1 || true)
    if [[ $line == NodeName=* && $line == *RealMemory=* ]]; then
        mem=$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<<"$line")
        line=$(sed -E 's/^NodeName=[^ ]+ //; s/ ?RealMemory=[0-9]+//' <<<"$line")
    else
        cpus=$(nproc)
        mem=$(free -m | awk '/^Mem:/ { print $2 }')
        line="CPUs=$cpus"
    fi
    # leave 10% of the memory to the system and the daemons
    echo "$line RealMemory=$((mem * 9 / 10))"
}

write_configs() {
    local node hw gres_file db_pass
    node=$(node_name)
    hw=$(hardware_line)
    mkdir -p "$ETC" "$LOG" "$RUN" "$STATE/spool/slurmctld" "$STATE/spool/slurmd" "$STATE/dev"
    chmod 755 "$STATE"

    # fake GPUs: one character device (major 1, minor 3: like /dev/null) per GPU
    if ((GPUS == 1)); then gres_file="$STATE/dev/nvidia0"; else gres_file="$STATE/dev/nvidia[0-$((GPUS - 1))]"; fi
    local k
    for ((k = 0; k < GPUS; k++)); do
        [[ -c $STATE/dev/nvidia$k ]] || mknod -m 666 "$STATE/dev/nvidia$k" c 1 3 2>/dev/null || {
            ((GPUS == 1)) || die "mknod failed: cannot fake $GPUS GPUs without device nodes"
            gres_file=/dev/null
        }
    done

    cat >"$CONF" <<EOF
# written by tms tests/slurm/local_slurm.sh: a private single-node test cluster (do not use in production)
ClusterName=$CLUSTER
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
MpiDefault=none
# no cgroups: works in containers and VMs without systemd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
# keep finished jobs visible to squeue for a while (the plugin's squeue status mode needs >= 120 s)
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
MailProg=/bin/true
GresTypes=gpu
JobCompType=jobcomp/none
# store the job comment (the plugin puts rule and wildcards there) so sacct can show it
AccountingStoreFlags=job_comment
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# with munge, AccountingStoragePass names the munged socket used to talk to slurmdbd
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
NodeName=$node NodeAddr=127.0.0.1 $hw Gres=gpu:fake:$GPUS State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node Default=NO MaxTime=INFINITE State=UP
EOF

    cat >"$ETC/gres.conf" <<EOF
AutoDetect=off
NodeName=$node Name=gpu Type=fake File=$gres_file
EOF

    if [[ -f $ETC/db.pass ]]; then
        db_pass=$(cat "$ETC/db.pass")
    else
        db_pass=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
        (umask 077 && echo "$db_pass" >"$ETC/db.pass")
    fi
    (umask 077 && cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$node
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$db_pass
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$ETC/slurmdbd.conf"
}

start_munge() {
    mkdir -p "$MUNGE_DIR"
    chown munge:munge "$MUNGE_DIR"
    chmod 755 "$MUNGE_DIR" # clients need to reach the socket; the key itself is 0400
    if [[ ! -s $MUNGE_DIR/munge.key ]]; then
        dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$MUNGE_DIR/munge.key"
    chmod 400 "$MUNGE_DIR/munge.key"
    launch munged "$LOG/munged.out" setpriv --reuid=munge --regid=munge --init-groups \
        /usr/sbin/munged --foreground --socket="$MUNGE_SOCKET" --key-file="$MUNGE_DIR/munge.key" \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed"
    munge_ok() { munge -n --socket="$MUNGE_SOCKET" | unmunge --socket="$MUNGE_SOCKET"; }
    wait_for 20 "munged" "$LOG/munged.out" munge_ok
}

db() { mariadb --no-defaults --socket="$DB_SOCKET" -uroot "$@"; }

start_mariadb() {
    mkdir -p "$DB_DIR"
    chown mysql:mysql "$DB_DIR"
    if [[ ! -d $DB_DATA/mysql ]]; then
        rm -rf "$DB_DATA"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DATA" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 ||
            { tail -n 20 "$LOG/mariadb-install.log" >&2; say "mariadb-install-db failed"; return 1; }
    fi
    launch mariadbd "$LOG/mariadbd.out" /usr/sbin/mariadbd --no-defaults --user=mysql \
        --datadir="$DB_DATA" --socket="$DB_SOCKET" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --pid-file="$DB_DIR/mariadbd.pid" --log-error="$DB_DIR/mariadbd.log" --skip-name-resolve \
        --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 --skip-log-bin
    wait_for 60 "mariadbd" "$DB_DIR/mariadbd.log" db -e 'SELECT 1' || return 1
    local pass
    pass=$(cat "$ETC/db.pass")
    db <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

sacctmgr_has() { [[ -n $(sacctmgr -n -P "$@" 2>/dev/null) ]]; }

start_slurmdbd() {
    launch slurmdbd "$LOG/slurmdbd.out" /usr/sbin/slurmdbd -D
    wait_for 60 "slurmdbd" "$LOG/slurmdbd.log" sacctmgr -n list cluster || return 1
    sacctmgr_has list cluster "$CLUSTER" format=cluster ||
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || return 1
}

add_accounts() {
    sacctmgr_has list account "$ACCOUNT" format=account ||
        sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="tms tests" Organization=tms >/dev/null ||
        return 1
    local user
    for user in $(printf '%s\n' root "${SUDO_USER:-}" "$(id -un)" | sort -u); do
        [[ -n $user ]] || continue
        sacctmgr_has list assoc user="$user" account="$ACCOUNT" cluster="$CLUSTER" format=user ||
            sacctmgr -i add user "$user" Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null || return 1
        sacctmgr -i modify user where name="$user" set DefaultAccount="$ACCOUNT" >/dev/null 2>&1 || true
    done
}

node_state() { sinfo -h -p debug -o %t 2>/dev/null | head -n 1; }

start_slurm() {
    launch slurmctld "$LOG/slurmctld.out" /usr/sbin/slurmctld -D -f "$CONF"
    ctld_up() { scontrol ping | grep -q 'UP'; }
    wait_for 60 "slurmctld" "$LOG/slurmctld.log" ctld_up || return 1
    # jobs still queued or running in the saved state belong to a previous start whose processes are
    # gone: cancel them so the node comes back idle
    local stale
    stale=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    if [[ -n ${stale// /} ]]; then
        say "  cancelling jobs left from a previous start: $stale"
        # shellcheck disable=SC2086
        scancel $stale 2>/dev/null || true
    fi
    launch slurmd "$LOG/slurmd.out" /usr/sbin/slurmd -D -f "$CONF" -N "$(node_name)"
    # `idle` exactly: `idle*` means the node has not answered yet, drain/down mean it will not run jobs
    node_idle() { [[ $(node_state) == idle ]]; }
    if ! wait_for 30 "node idle" "$LOG/slurmd.log" node_idle; then
        say "node state is '$(node_state)'; trying to resume it"
        scontrol update NodeName="$(node_name)" State=RESUME 2>/dev/null || true
        wait_for 20 "node idle after resume" "$LOG/slurmctld.log" node_idle || {
            sinfo -R >&2 || true
            return 1
        }
    fi
}

check_ports() {
    local p busy=()
    for p in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT"; do
        port_in_use "$p" && busy+=("$p")
    done
    ((${#busy[@]} == 0)) || die "port(s) ${busy[*]} on 127.0.0.1 already in use by something else; set LOCAL_SLURM_PORT_BASE / LOCAL_SLURM_DB_PORT"
}

sys_conf_is_ours() { [[ -L $SYS_CONF && $(readlink "$SYS_CONF") == "$CONF" ]]; }

check_sys_conf() {
    sys_conf_is_ours && return 0
    if [[ -e $SYS_CONF || -L $SYS_CONF ]]; then
        die "$SYS_CONF exists and is not this test cluster's: refusing to start (jobs launched by the Snakemake SLURM plugin would read it, because its jobstep drops SLURM_CONF). Run the tests on a machine without a SLURM configuration, or move it away yourself."
    fi
}

link_sys_conf() {
    sys_conf_is_ours && return 0
    mkdir -p "${SYS_CONF%/*}"
    ln -s "$CONF" "$SYS_CONF"
}

unlink_sys_conf() {
    if sys_conf_is_ours; then
        rm -f "$SYS_CONF"
        say "  removed the symlink $SYS_CONF"
    fi
}

all_running() {
    local n
    for n in munged mariadbd slurmdbd slurmctld slurmd; do daemon_running "$n" || return 1; done
}

# (called in an `if`, where `set -e` is off: every step checks its own status)
start_all() {
    step_start; write_configs || return 1; link_sys_conf || return 1
    step_done "configs written to $ETC (and $SYS_CONF -> $CONF)"
    step_start; start_munge || return 1; step_done "munged up"
    step_start; start_mariadb || return 1; step_done "mariadbd up"
    step_start; start_slurmdbd || return 1; step_done "slurmdbd up"
    step_start; start_slurm || return 1; step_done "slurmctld + slurmd up, node idle"
    step_start; add_accounts || return 1; step_done "account '$ACCOUNT' with users"
}

cmd_start() {
    need_root
    [[ -z $(packages_missing) ]] || die "packages missing: $(packages_missing) (run: $0 install)"
    if all_running && [[ $(node_state) == idle ]]; then
        say "already running (state: $STATE)"
        return 0
    fi
    if [[ -s $PIDS ]]; then
        say "a previous cluster from $STATE is partly running; stopping it first"
        cmd_stop
    fi
    check_ports
    check_sys_conf
    local t=$(date +%s.%N)
    mkdir -p "$STATE"
    chmod 755 "$STATE"
    : >"$PIDS"
    if ! start_all; then
        say "start failed; stopping what was started"
        cmd_stop || true
        die "start failed (logs in $LOG)"
    fi
    say "cluster '$CLUSTER' up in $(elapsed "$t"): $(sinfo -h -o '%P %D %t %G' | tr '\n' ';')"
    say "use it with: export SLURM_CONF=$CONF"
}

# ------------------------------------------------------------------------------------------------ stop
signal_and_wait() { # signal_and_wait GRACE_SECONDS name... : TERM the named recorded daemons, KILL stragglers
    local grace=$1 n pid
    shift
    local targets=()
    for n in "$@"; do
        pid=$(recorded_pid "$n")
        [[ -n $pid ]] || continue
        if proc_is_ours "$n" "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            targets+=("$n:$pid")
        elif proc_alive "$pid"; then
            say "  not touching pid $pid: it is no longer our $n"
        fi
    done
    local deadline=$((SECONDS + grace)) left
    while :; do
        left=()
        for n in "${targets[@]}"; do proc_alive "${n#*:}" && left+=("$n"); done
        ((${#left[@]} == 0)) && break
        if ((SECONDS >= deadline)); then
            for n in "${left[@]}"; do
                proc_is_ours "${n%%:*}" "${n#*:}" && { say "  ${n%%:*} (pid ${n#*:}) ignored TERM; sending KILL"; kill -KILL "${n#*:}" 2>/dev/null || true; }
            done
            sleep 0.5
            break
        fi
        sleep 0.1
    done
    for n in "${targets[@]}"; do say "  ${n%%:*} (pid ${n#*:}) stopped"; done
}

# slurmstepd processes of jobs on our node hold our slurmd log (or spool files) open
our_stepds() {
    local p fd
    for p in /proc/[0-9]*; do
        [[ $(cat "$p/comm" 2>/dev/null) == slurmstepd ]] || continue
        for fd in "$p"/fd/*; do
            if [[ $(readlink "$fd" 2>/dev/null) == "$STATE"/* ]]; then echo "${p#/proc/}"; break; fi
        done
    done
}

# processes of jobs that ran on our cluster (their environment names our SLURM_CONF and cluster)
our_job_procs() {
    local p env
    for p in /proc/[0-9]*; do
        [[ ${p#/proc/} != "$$" ]] || continue
        env=$(tr '\0' '\n' 2>/dev/null <"$p/environ") || continue
        grep -qx "SLURM_CONF=$CONF" <<<"$env" || continue
        grep -qx "SLURM_CLUSTER_NAME=$CLUSTER" <<<"$env" || continue
        grep -q '^SLURM_JOB_ID=' <<<"$env" || continue
        echo "${p#/proc/}"
    done
}

# Normally empty: slurmd's job steps and the jobs' processes only outlive the cluster when slurmctld
# died before `stop` could cancel the jobs.
sweep_leftovers() {
    local pid pids
    pids=$(echo $(our_stepds) $(our_job_procs))
    [[ -n $pids ]] || return 0
    say "  leftover job processes (slurmstepd and job tasks): $pids: TERM"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    sleep 1
    pids=$(echo $(our_stepds) $(our_job_procs))
    # shellcheck disable=SC2086
    [[ -z $pids ]] || { say "  KILL $pids"; kill -KILL $pids 2>/dev/null || true; }
}

cmd_stop() {
    need_root
    local t=$(date +%s.%N)
    if [[ ! -s $PIDS ]]; then
        sweep_leftovers
        unlink_sys_conf
        say "nothing recorded in $PIDS: nothing to stop"
        return 0
    fi
    if daemon_running slurmctld; then
        local jobs
        jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
        if [[ -n ${jobs// /} ]]; then
            say "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            local deadline=$((SECONDS + 20))
            while [[ -n $(squeue -h -t all -o '%A %t' 2>/dev/null | awk '$2 != "CA" && $2 != "CD" && $2 != "F" && $2 != "TO" && $2 != "OOM"') ]] && ((SECONDS < deadline)); do
                sleep 0.5
            done
        fi
    fi
    signal_and_wait 15 slurmd slurmctld
    sweep_leftovers
    signal_and_wait 15 slurmdbd
    signal_and_wait 30 mariadbd
    signal_and_wait 10 munged
    # anything of ours still alive?
    local n pid left=0
    while read -r n pid; do
        [[ -n ${pid:-} ]] || continue
        if proc_is_ours "$n" "$pid"; then say "  STILL RUNNING: $n pid $pid"; left=1; fi
    done < <(recorded)
    [[ $left -eq 0 ]] || die "some daemons did not stop"
    : >"$PIDS"
    unlink_sys_conf
    say "stopped ($(elapsed "$t"))"
}

cmd_purge() {
    cmd_stop
    [[ -d $STATE ]] || return 0
    [[ $STATE == /*/* && -f $ETC/slurm.conf ]] || die "refusing to delete $STATE (does not look like our state directory)"
    rm -rf "$STATE"
    say "deleted $STATE"
}

# ----------------------------------------------------------------------------------------- status/test
cmd_status() {
    local n pid ok=0
    if [[ ! -s $PIDS ]]; then
        say "not running (no PIDs recorded in $PIDS)"
        return 3
    fi
    while read -r n pid; do
        if proc_is_ours "$n" "$pid"; then echo "$n $pid running"; else echo "$n $pid NOT running"; ok=3; fi
    done < <(recorded)
    if daemon_running slurmctld; then
        sinfo -o '%P %D %t %G %c %m' || true
        squeue -o '%i %P %j %k %T %b' || true
    fi
    return $ok
}

sacct_field() { sacct -X -n -P -j "$1" -o "$2" 2>/dev/null | head -n 1; }

wait_job_done() { # wait_job_done JOBID TIMEOUT -> prints final state
    local id=$1 limit=$2 st=""
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        st=$(sacct_field "$id" State)
        case $st in
            COMPLETED | FAILED* | CANCELLED* | TIMEOUT | OUT_OF_MEMORY | NODE_FAIL) echo "$st"; return 0 ;;
        esac
        sleep 0.3
    done
    echo "${st:-UNKNOWN}(timeout)"
}

cmd_test() {
    need_root
    all_running || die "cluster not running (run: $0 start)"
    local out id st tres
    mkdir -p "$LOG/test"
    step_start
    id=$(sbatch --parsable -p debug -t 2 --mem=100 -o "$LOG/test/%j.out" --wrap 'hostname; srun -n1 true')
    st=$(wait_job_done "$id" 60)
    [[ $st == COMPLETED ]] || die "sbatch round trip: job $id ended $st"
    step_done "sbatch round trip: job $id $st (sacct)"

    step_start
    id=$(sbatch --parsable -p gpu -t 2 --mem=100 --gpus=fake:1 -o "$LOG/test/%j.out" \
        --wrap 'echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES')
    st=$(wait_job_done "$id" 60)
    [[ $st == COMPLETED ]] || die "fake-GPU job $id ended $st"
    tres=$(sacct_field "$id" AllocTRES)
    [[ $tres == *gres/gpu* ]] || die "fake-GPU job $id: AllocTRES has no gres/gpu: '$tres'"
    out=$(cat "$LOG/test/$id.out")
    [[ $out == CUDA_VISIBLE_DEVICES=0* ]] || die "fake-GPU job $id saw '$out'"
    step_done "fake-GPU job $id $st, AllocTRES=$tres, $out"
}

cmd_env() { echo "export SLURM_CONF=$CONF"; }

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    purge) cmd_purge ;;
    status) cmd_status ;;
    test) cmd_test ;;
    env) cmd_env ;;
    *)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
