# shellcheck shell=bash disable=SC2034 # (variables shared between the sourced files)
# Shared helpers of the launch scripts (sourced, never run).
#
# - `log`, `skip_all`: visible progress and skip reasons.
# - `need_root_netns`: whether daemons and network namespaces can be used here.
# - `cleanup_push CMD`: commands run, last first, when the sourcing script exits (trap EXIT).
# - `wait_for LIMIT_S CMD...`: polls CMD every 0.1 s until it succeeds, at most LIMIT_S seconds.

log() { printf '[launch] %s\n' "$*" >&2; }

# cleanup_push CMD: run CMD when the script exits (most recently pushed first).
ATOLL_CLEANUP=()
cleanup_push() { ATOLL_CLEANUP=("$1" "${ATOLL_CLEANUP[@]}"); }
atoll_cleanup_run() {
    local rc=$? c
    for c in "${ATOLL_CLEANUP[@]}"; do
        eval "$c" || log "cleanup step failed: $c"
    done
    ATOLL_CLEANUP=()
    return "$rc"
}
trap atoll_cleanup_run EXIT
# A signal ends the script through its EXIT trap (bash runs it after the running command ends;
# every command here is bounded).
trap 'exit 143' TERM INT HUP

# wait_for LIMIT_S CMD...: true as soon as CMD succeeds, false after LIMIT_S seconds.
wait_for() {
    local limit="$1" i
    shift
    for ((i = 0; i < limit * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# can_run_daemons: empty when root with the tools the daemons need, else the reason printed.
daemon_skip_reason() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "not root (munged, slurmctld and slurmd need root)"
    elif ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v srun >/dev/null; then
        echo "Slurm is not installed (Debian: slurm-wlm)"
    elif ! command -v munged >/dev/null; then
        echo "munge is not installed (Debian: munge)"
    fi
}

# netns_skip_reason: empty when two network namespaces can be made here, else the reason.
netns_skip_reason() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "not root (ip netns needs CAP_SYS_ADMIN)"
    elif ! command -v ip >/dev/null || ! command -v nsenter >/dev/null || ! command -v unshare >/dev/null; then
        echo "ip, nsenter or unshare missing (Debian: iproute2, util-linux)"
    elif ! ip netns add atoll-probe-$$ 2>/dev/null; then
        echo "'ip netns add' fails here (no network namespaces: a container without CAP_SYS_ADMIN?)"
    else
        ip netns del atoll-probe-$$
    fi
}
