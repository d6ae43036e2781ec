# shellcheck shell=bash disable=SC2034 # (variables shared between the sourced files)
# Test cases of the launch scripts, reported the way libtest reports them (sourced).
#
#   case_begin NAME
#   case_run LIMIT_S CMD...      # CMD bounded by `timeout -k 5`; output and status kept
#   expect_status ok|fail        # exit status 0, or non-zero without being killed
#   expect_line REGEX [COUNT]    # lines matching REGEX (grep -E): at least one, or exactly COUNT
#   expect_no_line REGEX
#   expect_within SECONDS        # the command ended (by itself or not) within SECONDS of wall time
#   case_end                     # prints `test launch::NAME ... ok|FAILED` (+ output on failure)
#   case_skip NAME REASON        # prints `test launch::NAME ... ignored, REASON`
#   case_summary                 # `test result: ...` (counted by ci/test.sh); false if any failed
#
# The bound is SIGTERM at LIMIT_S and SIGKILL 5 s later: srun and mpirun end their job's tasks
# on SIGTERM (a killed srun leaves its job holding the nodes), and SIGKILL ends what ignores it.
# A CMD that is a shell function is a runner (on_h1, run_here): it gets `timeout -k 5 LIMIT_S`
# and the rest of the command as its arguments, so the bound applies inside it. After a case
# that ran out of time, the hook `case_after_timeout` (if defined) clears up.

CASES_PASSED=0
CASES_FAILED=0
CASES_IGNORED=0
CASES_FAILED_NAMES=()

case_begin() {
    CASE_NAME="$1"
    CASE_PROBLEMS=()
    CASE_OUT=""
    CASE_RC=0
    CASE_MS=0
    CASE_STARTED=$(date +%s%N)
}

case_run() {
    local limit="$1" t0
    shift
    CASE_LIMIT="$limit"
    t0=$(date +%s%N)
    if [ "$(type -t "$1")" = function ]; then
        CASE_OUT="$("$1" timeout -k 5 "$limit" "${@:2}" 2>&1)"
    else
        CASE_OUT="$(timeout -k 5 "$limit" "$@" 2>&1)"
    fi
    CASE_RC=$?
    CASE_MS=$((($(date +%s%N) - t0) / 1000000))
    if { [ "$CASE_RC" -eq 124 ] || [ "$CASE_RC" -eq 137 ]; } && [ "$(type -t case_after_timeout)" = function ]; then
        case_after_timeout
    fi
    CASE_CMD="$*"
}

# case_problem TEXT: records why the case failed.
case_problem() { CASE_PROBLEMS+=("$1"); }

expect_status() {
    if [ "$CASE_RC" -eq 137 ] || [ "$CASE_RC" -eq 124 ]; then
        case_problem "killed after ${CASE_LIMIT} s: a hang"
    elif [ "$1" = ok ] && [ "$CASE_RC" -ne 0 ]; then
        case_problem "exit status $CASE_RC, expected 0"
    elif [ "$1" = fail ] && [ "$CASE_RC" -eq 0 ]; then
        case_problem "exit status 0, expected a failure"
    fi
}

expect_line() {
    local n
    n="$(grep -cE -- "$1" <<<"$CASE_OUT")"
    if [ $# -ge 2 ] && [ "$n" -ne "$2" ]; then
        case_problem "$n lines match '$1', expected $2"
    elif [ "$n" -eq 0 ]; then
        case_problem "no line matches '$1'"
    fi
}

expect_no_line() {
    if grep -qE -- "$1" <<<"$CASE_OUT"; then
        case_problem "a line matches '$1': $(grep -m1 -E -- "$1" <<<"$CASE_OUT")"
    fi
}

# expect_within SECONDS: the command of case_run ran less than SECONDS (wall time): a bound on
# how soon a failure is reported, not a performance figure.
expect_within() {
    if [ "$CASE_MS" -ge $(($1 * 1000)) ]; then
        case_problem "it ended after $((CASE_MS / 1000)).$(printf '%03d' $((CASE_MS % 1000))) s, not within $1 s"
    fi
}

case_end() {
    local ms=$((($(date +%s%N) - CASE_STARTED) / 1000000)) took p
    took="$((ms / 1000)).$((ms % 1000 / 100))"
    if [ ${#CASE_PROBLEMS[@]} -eq 0 ]; then
        echo "test launch::$CASE_NAME ... ok (${took} s)"
        CASES_PASSED=$((CASES_PASSED + 1))
        return 0
    fi
    echo "test launch::$CASE_NAME ... FAILED"
    echo "---- launch::$CASE_NAME: $CASE_CMD"
    for p in "${CASE_PROBLEMS[@]}"; do
        echo "  problem: $p"
    done
    echo "  output (last 40 lines):"
    tail -n 40 <<<"$CASE_OUT" | sed 's/^/    /'
    CASES_FAILED=$((CASES_FAILED + 1))
    CASES_FAILED_NAMES+=("$CASE_NAME")
    return 1
}

case_skip() {
    echo "test launch::$1 ... ignored, $2"
    CASES_IGNORED=$((CASES_IGNORED + 1))
}

case_summary() {
    local verdict=ok
    if [ "$CASES_FAILED" -ne 0 ]; then
        verdict=FAILED
        echo "failures:"
        printf '    launch::%s\n' "${CASES_FAILED_NAMES[@]}"
    fi
    echo "test result: $verdict. $CASES_PASSED passed; $CASES_FAILED failed; $CASES_IGNORED ignored; 0 measured; 0 filtered out"
    [ "$CASES_FAILED" -eq 0 ]
}
