# shellcheck shell=bash disable=SC2034 # (variables shared between the sourced files)
# The programs the launch cases run, and the checks of their output (sourced).
#
# find_programs CARGO_ARGS...: sets HELLO, QUICKSORT and CONFORMANCE (the comm conformance
# test binary) from the workspace's release build with those arguments. The build is the one
# ci/test.sh already made, so cargo only reports it.

find_programs() {
    local json
    json="$(cargo build --workspace --all-targets --release "$@" --message-format=json 2>/dev/null)" || {
        log "cargo build --workspace --all-targets --release $* failed: build the workspace first"
        return 1
    }
    HELLO="$(artifact_exe "$json" example hello)"
    QUICKSORT="$(artifact_exe "$json" example quicksort)"
    CONFORMANCE="$(artifact_exe "$json" test conformance)"
    if [ -z "$HELLO" ] || [ -z "$QUICKSORT" ] || [ -z "$CONFORMANCE" ]; then
        log "the build lacks an executable: hello='$HELLO' quicksort='$QUICKSORT' conformance='$CONFORMANCE'"
        return 1
    fi
    # The conformance cases, as the suite lists them (each place prints `CASE: ok` per case).
    mapfile -t CONFORMANCE_CASES < <(sed -n '/^const CASES: /,/^];/p' comm/tests/conformance.rs | grep -oE '"[a-z_]+"' | tr -d '"')
    if [ ${#CONFORMANCE_CASES[@]} -eq 0 ]; then
        log "no CASES list found in comm/tests/conformance.rs"
        return 1
    fi
}

# artifact_exe JSON KIND NAME: the executable cargo built for the target NAME of KIND.
artifact_exe() {
    grep '"reason":"compiler-artifact"' <<<"$1" | grep -F "\"kind\":[\"$2\"]" | grep -F "\"name\":\"$3\"" |
        grep -oE '"executable":"[^"]+"' | head -n 1 | sed 's/^"executable":"//; s/"$//'
}

# new_secret: 32 hexadecimal digits (an env job's ATOLL_ENV_SECRET).
new_secret() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# expect_failure_naming REGEX: the launch failed by itself (not killed), some line names the
# cause (REGEX, case-insensitive), and nothing panicked.
expect_failure_naming() {
    expect_status fail
    grep -qiE -- "$1" <<<"$CASE_OUT" || case_problem "no line names the cause (/$1/i)"
    expect_no_line 'panicked at'
}

# Checks of the three programs' output at 4 places under an external launcher: every place
# reports, and nothing is tagged `[place k]` (a tag would mean each process became a local
# launcher instead of joining the launcher's job).
expect_hello() {
    local k
    expect_status ok
    for k in 0 1 2 3; do
        expect_line "^hello from place $k of 4, asked by place 0\$"
    done
    expect_line '^place 3 answered: hello from place 3 of 4, asked by place 0$' 1
    expect_no_line '^\[place '
}
expect_quicksort() {
    expect_status ok
    expect_line "^sorted $QS_N (random|3-valued|equal) numbers on 4 places in .*\\(checked\\)\$" 3
    expect_no_line '^\[place '
}
expect_conformance() {
    local c
    expect_status ok
    for c in "${CONFORMANCE_CASES[@]}"; do
        expect_line "^$c: ok\$" 4
    done
    expect_no_line '^\[place '
}

# check_programs LABEL [RUNNER] LAUNCHER...: hello, quicksort and the conformance suite at 4
# places under LAUNCHER (whose arguments start 4 processes), with ENV_EXTRA's variables.
check_programs() {
    local label="$1"
    shift
    local pre=()
    if [ "$(type -t "$1")" = function ]; then
        pre=("$1")
        shift
    fi
    case_begin "$label::hello"
    case_run "$OK_LIMIT" "${pre[@]}" env "${ENV_EXTRA[@]}" "$@" "$HELLO"
    expect_hello
    case_end
    case_begin "$label::quicksort"
    case_run "$OK_LIMIT" "${pre[@]}" env "${ENV_EXTRA[@]}" "$@" "$QUICKSORT" "$QS_N"
    expect_quicksort
    case_end
    case_begin "$label::conformance"
    case_run "$OK_LIMIT" "${pre[@]}" env ATOLL_CONFORMANCE_CASE=all "${ENV_EXTRA[@]}" "$@" "$CONFORMANCE"
    expect_conformance
    case_end
}
ENV_EXTRA=()

# env_job LIMIT COORDINATOR CMD...: one place per runner of ENV_RUNNERS (rank = index),
# joined through the env bootstrap (ATOLL_COORDINATOR, ATOLL_ENV_RANK, ATOLL_PLACES,
# ATOLL_ENV_SECRET), with ENV_EXTRA's variables; each place bounded by LIMIT. Leaves the
# places' output (rank order) in CASE_OUT and the first failing status in CASE_RC.
env_job() {
    local limit="$1" coordinator="$2"
    shift 2
    local n=${#ENV_RUNNERS[@]} secret dir r pids=() status
    secret="$(new_secret)"
    dir="$(mktemp -d /tmp/atoll-env.XXXXXX)"
    for ((r = 0; r < n; r++)); do
        "${ENV_RUNNERS[r]}" timeout -s KILL "$limit" env ATOLL_COORDINATOR="$coordinator" ATOLL_ENV_RANK="$r" \
            ATOLL_PLACES="$n" ATOLL_ENV_SECRET="$secret" "${ENV_EXTRA[@]}" "$@" >"$dir/$r" 2>&1 &
        pids+=("$!")
    done
    CASE_RC=0
    for ((r = 0; r < n; r++)); do
        wait "${pids[r]}"
        status=$?
        if [ "$status" -ne 0 ] && { [ "$CASE_RC" -eq 0 ] || [ "$status" -eq 137 ]; }; then
            CASE_RC=$status
        fi
    done
    CASE_OUT="$(for ((r = 0; r < n; r++)); do cat "$dir/$r"; done)"
    CASE_LIMIT="$limit"
    CASE_CMD="env bootstrap, coordinator $coordinator, ranks on ${ENV_RUNNERS[*]}: $*"
    rm -rf "$dir"
}

# check_env_job LABEL COORDINATOR RUNNER...: hello, quicksort and the conformance suite as an
# env job of one place per RUNNER (4 of them).
check_env_job() {
    local label="$1" coordinator="$2"
    shift 2
    ENV_RUNNERS=("$@")
    case_begin "$label::hello"
    env_job "$OK_LIMIT" "$coordinator" "$HELLO"
    expect_hello
    case_end
    case_begin "$label::quicksort"
    env_job "$OK_LIMIT" "$coordinator" "$QUICKSORT" "$QS_N"
    expect_quicksort
    case_end
    case_begin "$label::conformance"
    ENV_EXTRA+=(ATOLL_CONFORMANCE_CASE=all)
    env_job "$OK_LIMIT" "$coordinator" "$CONFORMANCE"
    unset 'ENV_EXTRA[-1]'
    expect_conformance
    case_end
}
