# shellcheck shell=bash disable=SC2034 # (variables shared between the sourced files)
# Start-up time of a 4-place `hello` under each launcher at hand, as a small table (sourced;
# printed, never asserted: a shared CI machine's times vary).
#
# Each figure is the median of 5 wall times of the whole run (start, bootstrap, one finish
# over 4 places, one at!, exit); min and max beside it. A launcher that is not installed (or
# Slurm without its daemons) gets a row saying so.

STARTUP_RUNS=5

# startup_row LABEL CMD...: times CMD (bounded) STARTUP_RUNS times and prints the row.
startup_row() {
    local label="$1" i t0 t1 times=() status
    shift
    for ((i = 0; i < STARTUP_RUNS; i++)); do
        t0=$(date +%s%N)
        "$@" >/dev/null 2>&1
        status=$?
        t1=$(date +%s%N)
        if [ "$status" -ne 0 ]; then
            printf '| %-22s | failed (exit status %s) | | |\n' "$label" "$status"
            return
        fi
        times+=($(((t1 - t0) / 1000000)))
    done
    mapfile -t times < <(printf '%s\n' "${times[@]}" | sort -n)
    printf '| %-22s | %8s | %8s | %8s |\n' "$label" "${times[2]}" "${times[0]}" "${times[4]}"
}

startup_env_loopback() {
    ENV_RUNNERS=(run_here run_here run_here run_here)
    env_job 60 "127.0.0.1:$ENV_LOCAL_PORT" "$HELLO"
    return "$CASE_RC"
}

# startup_table: one row per launcher (srun rows when a Slurm cluster is up).
startup_table() {
    echo
    echo "start-up of a 4-place hello: wall time in ms, median of $STARTUP_RUNS (not asserted)"
    echo "| launcher               |   median |      min |      max |"
    echo "|------------------------|----------|----------|----------|"
    startup_row "local (ATOLL_PLACES=4)" timeout -s KILL 60 env ATOLL_PLACES=4 "$HELLO"
    if command -v mpirun >/dev/null; then
        startup_row "mpirun -np 4" timeout -s KILL 60 mpirun --oversubscribe --allow-run-as-root -np 4 "$HELLO"
    else
        echo "| mpirun -np 4           | not installed | | |"
    fi
    if command -v mpiexec.mpich >/dev/null; then
        startup_row "mpiexec.mpich -n 4" timeout -s KILL 60 mpiexec.mpich -n 4 "$HELLO"
    else
        echo "| mpiexec.mpich -n 4     | not installed | | |"
    fi
    if [ -n "${SLURM_DIR:-}" ]; then
        startup_row "srun --mpi=pmix -n 4" timeout -s KILL 60 srun --mpi=pmix -n 4 "$HELLO"
        startup_row "srun --mpi=pmi2 -n 4" timeout -s KILL 60 srun --mpi=pmi2 -n 4 "$HELLO"
    else
        echo "| srun -n 4              | no Slurm cluster | | |"
    fi
    startup_row "env (loopback)" startup_env_loopback
    echo
}
