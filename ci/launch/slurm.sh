#!/usr/bin/env bash
# A throwaway Slurm cluster: munge, slurmctld and one slurmd per node, all in one temp dir.
#
# Sourced: defines slurm_up / slurm_down (used by ci/launch/tests.sh).
# Run:     `bash ci/launch/slurm.sh` starts a single-node cluster on this host, waits until
#          its node is idle, runs `srun -n 4 hostname`, and stops everything (a self-check).
#
# Every file (slurm.conf, state, spool, logs, pid files, the PMIx TmpFS) lives in the cluster's
# own directory and the ports are Slurm's plus 10000 (ATOLL_CI_SLURM_PORT overrides), so a
# cluster started here never meets another one on the same machine. MpiDefault=none: each test
# names its PMI (`--mpi=pmix`, `--mpi=pmi2`) or none. KillOnBadExit=1: a task that fails ends its
# step at once (its peers would otherwise wait for it in the bootstrap until the case's limit).

# slurm_up DIR NODE_SPEC...: starts a cluster whose controller runs on the first node and
# waits (at most 20 s) until every node is idle. NODE_SPEC is NAME:ADDR:CPUS:RUNNER, RUNNER
# a command (function) that runs its arguments on that node (`run_here` for this host).
# Exports SLURM_CONF; the cluster is stopped by slurm_down, queued on exit.
slurm_up() {
    local dir="$1"
    shift
    local port="${ATOLL_CI_SLURM_PORT:-16817}" spec name addr cpus runner names=() nodelines=""
    mkdir -p "$dir/state" "$dir/log" "$dir/run"
    local first="$1"
    for spec in "$@"; do
        IFS=: read -r name addr cpus runner <<<"$spec"
        names+=("$name")
        nodelines+="NodeName=$name NodeAddr=$addr CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN"$'\n'
        mkdir -p "$dir/spool-$name" "$dir/tmp-$name"
    done
    IFS=: read -r name addr cpus runner <<<"$first"
    local nodelist
    nodelist="$(IFS=,; echo "${names[*]}")"
    cat >"$dir/slurm.conf" <<CONF
ClusterName=atollci
SlurmctldHost=$name($addr)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
KillOnBadExit=1
MailProg=/bin/true
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool-%n
TmpFS=$dir/tmp-%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
${nodelines}PartitionName=debug Nodes=$nodelist Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
    export SLURM_CONF="$dir/slurm.conf"
    SLURM_CTLD_RUNNER="$runner"
    SLURM_DIR="$dir"
    SLURM_PIDS=()
    cleanup_push slurm_down
    "$runner" slurmctld -D >"$dir/log/slurmctld.out" 2>&1 &
    SLURM_PIDS+=("$!")
    for spec in "$@"; do
        IFS=: read -r name addr cpus runner <<<"$spec"
        "$runner" slurmd -D -N "$name" >"$dir/log/slurmd-$name.out" 2>&1 &
        SLURM_PIDS+=("$!")
    done
    if ! wait_for 20 slurm_all_idle "$#"; then
        log "Slurm nodes not idle after 20 s:"
        "$SLURM_CTLD_RUNNER" timeout -s KILL 5 sinfo -N >&2 || true
        slurm_logs >&2
        return 1
    fi
    log "Slurm cluster up: nodes $nodelist ($SLURM_CONF)"
}

# slurm_all_idle N: whether N nodes report exactly `idle`.
slurm_all_idle() {
    [ "$("$SLURM_CTLD_RUNNER" timeout -s KILL 5 sinfo -h -N -o '%T' 2>/dev/null | grep -cx idle)" -eq "$1" ]
}

# slurm_logs: the tail of every log of the cluster (for a failure's report).
slurm_logs() {
    local f
    for f in "$SLURM_DIR"/log/*; do
        echo "--- $f"
        tail -n 15 "$f"
    done
}

# slurm_down: stops the daemons (scontrol shutdown, then SIGKILL after 10 s), kills any
# slurmstepd of this cluster left behind (found by its SLURM_CONF), removes the directory.
slurm_down() {
    [ -n "${SLURM_DIR:-}" ] || return 0
    "$SLURM_CTLD_RUNNER" timeout -s KILL 10 scontrol shutdown >/dev/null 2>&1 || true
    local pid deadline=$((SECONDS + 10))
    for pid in "${SLURM_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for pid in $(slurm_stepds); do
        log "killing slurmstepd $pid left by the cluster"
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$SLURM_DIR"
    unset SLURM_DIR SLURM_CONF
}

# slurm_stepds: pids of slurmstepd processes whose environment names this cluster's slurm.conf.
slurm_stepds() {
    local p
    for p in $(pgrep -x slurmstepd 2>/dev/null); do
        tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qx "SLURM_CONF=$SLURM_CONF" && echo "$p"
    done
}

# case_after_timeout: after a launch ran out of time, cancels every job of the running cluster
# and waits (at most 20 s) until none is left, so that the next case finds the nodes free.
case_after_timeout() {
    [ -n "${SLURM_DIR:-}" ] || return 0
    "$SLURM_CTLD_RUNNER" timeout -s KILL 10 scancel --full --signal=KILL --user=root >/dev/null 2>&1
    "$SLURM_CTLD_RUNNER" timeout -s KILL 10 scancel --user=root >/dev/null 2>&1
    wait_for 20 slurm_no_jobs || log "jobs still queued 20 s after scancel"
}
slurm_no_jobs() { [ -z "$("$SLURM_CTLD_RUNNER" timeout -s KILL 5 squeue -h 2>/dev/null)" ]; }

# run_here CMD...: runs CMD on this host (the RUNNER of a single-node cluster).
run_here() { "$@"; }

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    here="$(dirname "$0")"
    source "$here/lib.sh"
    source "$here/munge.sh"
    reason="$(daemon_skip_reason)"
    if [ -n "$reason" ]; then
        log "skipped: $reason"
        exit 0
    fi
    munge_up
    slurm_up "$(mktemp -d /tmp/atoll-slurm.XXXXXX)" "$(hostname -s):127.0.0.1:4:run_here"
    timeout -s KILL 20 srun -n 4 hostname
fi
