#!/usr/bin/env bash
# Runs one command inside a throwaway Slurm cluster, then stops everything (for reproducing a
# launch case by hand).
#
#   bash ci/launch/cluster.sh one CMD...   # one node (this host); CMD runs here
#   bash ci/launch/cluster.sh two CMD...   # nodes h1 and h2 (network namespaces); CMD runs on h1
#
# e.g. `bash ci/launch/cluster.sh two srun --mpi=pmix -N 2 -n 4 target/release/examples/hello`.
# In CMD, $H1_ADDR and $H2_ADDR are the hosts' addresses and atoll0 their device (exported).
set -euo pipefail
here="$(dirname "$0")"
source "$here/lib.sh"
source "$here/munge.sh"
source "$here/slurm.sh"
source "$here/netns.sh"
if [ $# -lt 2 ] || { [ "$1" != one ] && [ "$1" != two ]; }; then
    echo "usage: $0 one|two CMD..." >&2
    exit 2
fi
reason="$(daemon_skip_reason)"
[ -z "$reason" ] || { log "cannot start Slurm: $reason"; exit 1; }
munge_up
if [ "$1" = one ]; then
    slurm_up "$(mktemp -d /tmp/atoll-slurm.XXXXXX)" "$(hostname -s):127.0.0.1:4:run_here"
    runner=run_here
else
    reason="$(netns_skip_reason)"
    [ -z "$reason" ] || { log "cannot make two hosts: $reason"; exit 1; }
    netns_up
    export H1_ADDR H2_ADDR
    slurm_up "$(mktemp -d /tmp/atoll-slurm.XXXXXX)" "h1:$H1_ADDR:2:on_h1" "h2:$H2_ADDR:2:on_h2"
    runner=on_h1
fi
shift
status=0
"$runner" "$@" || status=$?
exit "$status"
