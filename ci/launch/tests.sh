#!/usr/bin/env bash
# Atoll's programs under real launchers, with real daemons (run by ci/test.sh).
#
#   bash ci/launch/tests.sh [CARGO_ARGS...]
#
# CARGO_ARGS are the feature arguments of the workspace's release build (ci/test.sh passes its
# own, so the build is reused, never redone); `ucx` or `ofi` among them turns on the two-host
# runs over those providers. Each case is one launch bounded by `timeout -s KILL` and checked
# on its output; the cases print `test launch::NAME ... ok|FAILED|ignored, reason` and one
# `test result:` line, and the script fails if any case failed. Launchers that are not
# installed, daemons that need root, and network namespaces that the machine refuses are
# skipped with the reason printed. Nothing is left behind: daemons stopped, namespaces and
# temp dirs removed (trap EXIT).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
LAUNCH_DIR=ci/launch
source "$LAUNCH_DIR/lib.sh"
source "$LAUNCH_DIR/check.sh"
source "$LAUNCH_DIR/munge.sh"
source "$LAUNCH_DIR/slurm.sh"
source "$LAUNCH_DIR/netns.sh"
source "$LAUNCH_DIR/programs.sh"
source "$LAUNCH_DIR/startup.sh"
source "$LAUNCH_DIR/twohosts.sh"

CARGO_ARGS=("$@")
find_programs "${CARGO_ARGS[@]}" || exit 1

# The limit of one launch that should succeed, and of one that should fail with a clear
# error (past 15 s the launch counts as a hang). A PMI server or coordinator that does not
# answer must be an error within REFUSAL_S of the start (ATOLL_CONNECT_TIMEOUT_S is 8 s by
# default under external bootstraps), and so must a launcher that gives no PMI.
OK_LIMIT=90
ERR_LIMIT=15
REFUSAL_S=10
QS_N=200000

# ---- Open MPI's mpirun (PMIx) and MPICH's mpiexec (hydra, PMI-1) on this host
if command -v mpirun >/dev/null; then
    MPIRUN=(mpirun --oversubscribe --allow-run-as-root -np 4)
    check_programs mpirun "${MPIRUN[@]}"
    case_begin mpirun_refuses_a_different_binary
    case_run "$ERR_LIMIT" mpirun --oversubscribe --allow-run-as-root -np 2 "$HELLO" : -np 2 "$QUICKSORT" "$QS_N"
    expect_failure_naming 'runs a different build of the program'
    case_end
else
    case_skip mpirun "mpirun not installed (Debian: openmpi-bin)"
fi
if command -v mpiexec.mpich >/dev/null; then
    check_programs mpiexec mpiexec.mpich -n 4
else
    case_skip mpiexec "mpiexec.mpich not installed (Debian: mpich)"
fi

# ---- Bootstraps that are told of a server that is not there
case_begin pmix_client_without_server
case_run "$ERR_LIMIT" env PMIX_RANK=0 PMIX_NAMESPACE=atoll-ci-none \
    PMIX_SERVER_URI41="atoll-ci-none.0;tcp4://127.0.0.1:9" PMIX_SERVER_URI4="atoll-ci-none.0;tcp4://127.0.0.1:9" \
    PMIX_SERVER_URI3="atoll-ci-none.0;tcp4://127.0.0.1:9" PMIX_SERVER_URI2="atoll-ci-none.0;tcp4://127.0.0.1:9" \
    "$HELLO"
expect_failure_naming 'PMIx server .*(not reachable|does not answer).*launcher.*still running'
expect_within "$REFUSAL_S"
case_end
if command -v nc >/dev/null; then
    # A coordinator that accepts connections and never says a word.
    port=$((20000 + $$ % 20000))
    # Nothing of it may hold this script's output open: an orphaned listener would keep the
    # pipe to ci/test.sh's tee alive after the script ends.
    timeout 60 nc -lk 127.0.0.1 "$port" </dev/null >/dev/null 2>&1 &
    silent=$!
    wait_for 5 sh -c "ss -Hltn 'sport = :$port' | grep -q ."
    case_begin env_coordinator_never_answers
    case_run "$ERR_LIMIT" env -u ATOLL_CONNECT_TIMEOUT_S ATOLL_COORDINATOR="127.0.0.1:$port" ATOLL_ENV_RANK=1 ATOLL_PLACES=2 \
        ATOLL_ENV_SECRET="$(new_secret)" "$HELLO"
    expect_failure_naming "coordinator at 127\\.0\\.0\\.1:$port \\(ATOLL_COORDINATOR\\) did not answer.*is place 0 running"
    expect_within "$REFUSAL_S"
    case_end
    # TERM reaches `timeout`, which passes it on to nc (a KILL would orphan nc).
    kill -TERM "$silent" 2>/dev/null
    wait "$silent" 2>/dev/null
else
    case_skip env_coordinator_never_answers "nc not installed (Debian: netcat-openbsd)"
fi

# ---- The env bootstrap on this host (4 processes on loopback)
ENV_LOCAL_PORT=$((20000 + ($$ + 7) % 20000))
check_env_job env_loopback "127.0.0.1:$ENV_LOCAL_PORT" run_here run_here run_here run_here

# ---- Slurm on one node: srun --mpi=pmix and --mpi=pmi2
reason="$(daemon_skip_reason)"
if [ -n "$reason" ]; then
    case_skip slurm "$reason"
    startup_table
elif ! munge_up || ! slurm_up "$(mktemp -d /tmp/atoll-slurm.XXXXXX)" "$(hostname -s):127.0.0.1:4:run_here"; then
    case_begin slurm_one_node_starts
    case_problem "munge or the Slurm daemons did not start (see above)"
    case_end
else
    check_programs srun_pmix srun --mpi=pmix -n 4
    check_programs srun_pmi2 srun --mpi=pmi2 -n 4
    case_begin srun_without_pmi_is_refused
    case_run "$ERR_LIMIT" srun -n 2 "$HELLO"
    expect_failure_naming 'started by srun.*--mpi=(pmi2|pmix)'
    expect_within "$REFUSAL_S"
    case_end
    startup_table
    slurm_down
fi

# ---- Two hosts (network namespaces): srun -N 2 and the env bootstrap across them
reason="$(netns_skip_reason)"
if [ -n "$reason" ]; then
    case_skip two_hosts "$reason"
else
    netns_up
    two_host_env_cases
    reason="$(daemon_skip_reason)"
    if [ -n "$reason" ]; then
        case_skip slurm_two_nodes "$reason"
    elif ! munge_up || ! slurm_up "$(mktemp -d /tmp/atoll-slurm.XXXXXX)" "h1:$H1_ADDR:2:on_h1" "h2:$H2_ADDR:2:on_h2"; then
        case_begin slurm_two_nodes_start
        case_problem "munge or the Slurm daemons did not start (see above)"
        case_end
    else
        two_node_slurm_cases
        slurm_down
    fi
    netns_down
fi

case_summary
