#!/usr/bin/env bash
# Installs what the tests need, then runs every check and test of the workspace.
# This is the README's test command; .ci/run and ci/docker/Dockerfile call it unchanged.
#
# One build profile (--release) serves tests, examples and benchmarks: the workspace is
# compiled once. Tests that start processes bound their count and time and clean up.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Every cargo command below uses the same profile and features, so the workspace is built once.
FEATURES=(--features atoll/hwloc,atoll/ucx,atoll/ofi)

section() { printf '\n=== %s\n' "$*"; }

install_packages() {
    # Debian packages the build and the tests use (libudev-dev: hwloc links libudev; Open MPI:
    # the benchmarks' peer and mpirun; mpich: mpiexec; libpmix-dev: the PMIx headers comm's
    # layout test compiles against; UCX and libclang: the ucx provider and its bindgen bindings,
    # ucx-utils: ucx_perftest beside the comm benchmark; libfabric-dev: the ofi provider,
    # libfabric-bin: fi_info and fi_pingpong; slurm-wlm, munge: srun for ci/launch/tests.sh;
    # iproute2, netcat-openbsd: its two hosts in network namespaces and its silent
    # coordinator). Skipped when they are all present.
    local packages=(build-essential pkg-config libhwloc-dev libudev-dev openmpi-bin libopenmpi-dev
        mpich libpmix-dev libucx-dev ucx-utils libfabric-dev libfabric-bin libclang-dev
        slurm-wlm munge iproute2 netcat-openbsd)
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "missing Debian packages: ${missing[*]} (install them, or run this script as root)" >&2
        exit 1
    fi
    section "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

shm_leftovers() { ls /dev/shm 2>/dev/null | grep '^atoll-' | sort || true; }

install_packages
shm_before="$(shm_leftovers)"

section "rustfmt"
cargo fmt --all --check

section "clippy (-D warnings)"
cargo clippy --workspace --all-targets --release "${FEATURES[@]}" -- -D warnings

section "build (release: tests, examples, benches)"
cargo build --workspace --all-targets --release "${FEATURES[@]}"

section "examples (2 places, default provider)"
run_example() {
    # run_example NAME PATTERN [ARGS...]: the example's output must contain PATTERN, and no
    # error or warning line of UCX.
    local name="$1" pattern="$2"
    shift 2
    local out
    out="$(timeout -s KILL 120 cargo run --release "${FEATURES[@]}" --example "$name" -- "$@" 2>&1)" || {
        echo "$out"
        echo "example $name failed" >&2
        exit 1
    }
    echo "$out"
    grep -q -- "$pattern" <<<"$out" || {
        echo "example $name: output lacks '$pattern'" >&2
        exit 1
    }
    # UCX's own error and warning lines (`file.c:N UCX  ERROR ...`): a normal run has none.
    if grep -qE -- '[.][a-z]+:[0-9]+ +UCX +(ERROR|WARN) ' <<<"$out"; then
        echo "example $name: UCX reported an error or a warning" >&2
        exit 1
    fi
}
run_example hello '^\[place 0\] place 1 answered: hello from place 1 of 2'
run_example pingpong '^\[place 0\] place 0 done'
run_example fibonacci '^\[place 0\] fib(30) = 832040 .*(checked)' 30
ATOLL_PLACES=4 run_example fibonacci '^\[place 0\] fib(30) = 832040 on 4 places' 30
run_example quicksort '^\[place 0\] sorted 1000000 random numbers on 2 places in .*(checked)' 1000000
ATOLL_PLACES=4 run_example quicksort '^\[place 0\] sorted 1000000 random numbers on 4 places in .*(checked)' 1000000
run_example uts '^\[place 0\] UTS geometric tree (b0 4, m 4, depth 11, seed 19): 4894967 nodes on 2 places in .*(checked)'
ATOLL_PLACES=4 run_example uts '^\[place 0\] UTS geometric tree (b0 4, m 4, depth 11, seed 19): 4894967 nodes on 4 places in .*(checked)'
run_example channels_fibonacci '^\[place 0\] fib(30) = 832040 on 2 places over .* channels in .*(checked)' 30
ATOLL_PLACES=4 run_example channels_fibonacci '^\[place 0\] fib(30) = 832040 on 4 places over .* channels in .*(checked)' 30
ATOLL_PLACES=4 run_example pipeline '^\[place 0\] pipeline of 4 places streamed 1000000 values .*: 500000 arrived, sum 83333333333000000, in .*(checked)' 1000000

section "network providers: examples, comm conformance and runtime tests over UCX (sm, tcp) and libfabric (shm, tcp)"
run_provider() {
    # run_provider VAR=VALUE...: the examples, the comm conformance suite and the runtime's
    # basic tests with these variables set (ATOLL_PROVIDER and the transport's own).
    (
        export "$@"
        run_example hello '^\[place 0\] place 1 answered: hello from place 1 of 2'
        ATOLL_PLACES=4 run_example quicksort '^\[place 0\] sorted 1000000 random numbers on 4 places in .*(checked)' 1000000
        timeout -s KILL 900 cargo test --workspace --release "${FEATURES[@]}" --test conformance 2>&1 | tee -a "$results"
        timeout -s KILL 600 cargo test --workspace --release "${FEATURES[@]}" --test rt_basic 2>&1 | tee -a "$results"
    )
}
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
run_provider ATOLL_PROVIDER=ucx UCX_TLS=sm,self
run_provider ATOLL_PROVIDER=ucx UCX_TLS=tcp,self UCX_NET_DEVICES=lo
run_provider ATOLL_PROVIDER=ofi FI_PROVIDER=shm
run_provider ATOLL_PROVIDER=ofi "FI_PROVIDER=tcp;ofi_rxm" FI_TCP_IFACE=lo
# libfabric with shm and tcp loaded: one host, so every place is reached over the shm endpoint
# (the two-host runs of ci/launch mix the two); 12 places: addresses of two digits' ranks.
(
    export ATOLL_PROVIDER=ofi "FI_PROVIDER=shm,tcp;ofi_rxm" FI_TCP_IFACE=lo
    ATOLL_PLACES=12 run_example hello '^\[place 0\] place 11 answered: hello from place 11 of 12'
    timeout -s KILL 900 cargo test --workspace --release "${FEATURES[@]}" --test conformance 2>&1 | tee -a "$results"
)

section "tests (unit, doc, comm conformance at 2/3/8 places with and without chaos, launch, runtime, collectives at 1-8 places, benches as smoke runs)"
timeout -s KILL 2400 cargo test --workspace --release --all-targets "${FEATURES[@]}" 2>&1 | tee -a "$results"
timeout -s KILL 600 cargo test --workspace --release --doc "${FEATURES[@]}" 2>&1 | tee -a "$results"

section "launchers: mpirun, mpiexec, srun (one node, and two in network namespaces), env bootstrap"
# Real launchers and daemons (munge, slurmctld, slurmd) over the binaries built above; parts
# that need root or network namespaces say why they are skipped. Past the limit, SIGTERM lets
# the script stop its daemons and remove its namespaces (each launch in it is bounded to 95 s).
timeout -k 120 1200 bash ci/launch/tests.sh "${FEATURES[@]}" 2>&1 | tee -a "$results"

section "benchmark: collectives at 2 and 4 places beside Open MPI (full run)"
timeout -s KILL 900 cargo bench -p atoll-benches --bench collectives "${FEATURES[@]}" 2>&1 | tee -a "$results"

section "transports benchmark (full size, once: every provider beside ucx_perftest / fi_pingpong in the same run)"
timeout -s KILL 900 cargo bench -p atoll-benches --bench transports "${FEATURES[@]}"

section "channels benchmark (full size, once: channels and Open MPI in the same run)"
timeout -s KILL 600 cargo bench -p atoll-benches --bench channels "${FEATURES[@]}"

shm_after="$(shm_leftovers)"
if [ "$shm_after" != "$shm_before" ]; then
    echo "tests left shared-memory segments behind:" >&2
    comm -13 <(echo "$shm_before") <(echo "$shm_after") >&2
    exit 1
fi
section "all checks passed"
# One closing line for the whole suite (the last runner's own line may count few tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
