# shellcheck shell=bash disable=SC2034 # (variables shared between the sourced files)
# Cases across two hosts (network namespaces h1 and h2, see netns.sh): the env bootstrap with
# two places per host, and `srun -N 2 -n 4` on a two-node Slurm cluster (sourced).
#
# The shm provider cannot span hosts: a job placed on both is refused with an error naming
# the network providers, which also proves that the bootstrap's all-gather crossed the hosts.
# The network providers run the programs when the build has their cargo feature (CARGO_ARGS
# names `ucx` or `ofi`), over TCP on the veth pair between the hosts and over shared memory
# between the places of one host. The `ofi::routes` cases check which endpoint each place
# uses; the UCX `transports` cases check which transports UCX chose for each endpoint (UCX
# gets `UCX_TLS=sm,tcp,self`), and a UCX job without a network transport (`UCX_TLS=sm,self`)
# must be refused, which shows that UCX too sees two hosts (see netns.sh).

# has_feature NAME: whether the build's cargo arguments name feature NAME.
has_feature() { [[ " ${CARGO_ARGS[*]} " =~ [\ /,=]$1([\ ,]|$) ]]; }

# The variables that put each network provider on the veth pair over TCP. UCX: and on shared
# memory between the places of one host.
UCX_ENV=(ATOLL_PROVIDER=ucx "UCX_TLS=sm,tcp,self" UCX_NET_DEVICES="$H1_DEV")
# libfabric: tcp across the hosts, and its shm provider (loaded because FI_PROVIDER names it)
# between the places of one host.
OFI_ENV=(ATOLL_PROVIDER=ofi "FI_PROVIDER=shm,tcp;ofi_rxm" FI_TCP_IFACE="$H1_DEV")

# expect_ofi_routes: each place of a 4-place job with places 0 and 1 on one host and 2 and 3
# on the other logged (ATOLL_LOG) that it reaches its own host's places over shm and the
# others over tcp.
expect_ofi_routes() {
    expect_status ok
    expect_line 'ofi routes here=[01] network=tcp;ofi_rxm over_shm=\[0, 1\]$' 2
    expect_line 'ofi routes here=[23] network=tcp;ofi_rxm over_shm=\[2, 3\]$' 2
}
OFI_ROUTES_LOG=ATOLL_LOG=atoll_comm::ofi::routes=debug

# The error of the shm provider for a job on both hosts.
SHM_ACROSS_HOSTS='on 2 hosts \((h1, h2|h2, h1)\).*ATOLL_PROVIDER=(ucx|ofi)'

# Atoll's debug line of each UCX endpoint (comm/src/ucx/mod.rs) at ATOLL_LOG's level:
# `UCX endpoint place=P host=H reach=SameHost|OtherHost|Itself peer_failure=B lanes=tl/dev[..]+..`
UCX_LOG=ATOLL_LOG=atoll_comm::ucx=debug

# expect_ucx_transports: the hello of 4 places, 2 per host, went over shared memory within
# each host and over tcp across: each place has one endpoint to a place of its host, whose
# lanes are UCX shared-memory transports only, and two to the other host's places, over
# tcp on the veth only, with peer-failure handling; and UCX complained of nothing.
expect_ucx_transports() {
    local sm='(posix|sysv|cma|xpmem|knem)/memory' ep='UCX endpoint place=[0-9]+ host=h[12]'
    expect_hello
    expect_line "$ep reach=SameHost peer_failure=false lanes=$sm" 4
    expect_line "$ep reach=OtherHost peer_failure=true lanes=tcp/$H1_DEV" 8
    expect_no_line 'reach=SameHost .*lanes=.*tcp/'
    expect_no_line "reach=OtherHost .*lanes=.*(self/|$sm)"
    expect_no_line '[.][a-z]+:[0-9]+ +UCX +(ERROR|WARN) '
}

two_host_env_cases() {
    local port=$((20000 + ($$ + 13) % 20000))
    ENV_RUNNERS=(on_h1 on_h1 on_h2 on_h2)
    case_begin env_two_hosts::shm_is_refused
    env_job "$ERR_LIMIT" "$H1_ADDR:$port" "$HELLO"
    expect_failure_naming "$SHM_ACROSS_HOSTS"
    case_end
    if has_feature ucx; then
        ENV_EXTRA=("${UCX_ENV[@]}")
        check_env_job env_two_hosts_ucx "$H1_ADDR:$port" on_h1 on_h1 on_h2 on_h2
        case_begin env_two_hosts_ucx::transports
        ENV_EXTRA=("${UCX_ENV[@]}" "$UCX_LOG")
        env_job "$OK_LIMIT" "$H1_ADDR:$port" "$HELLO"
        expect_ucx_transports
        case_end
        # Without a network transport no place of the other host can be reached: UCX does not
        # take the two hosts for one (which would let it share memory across them).
        case_begin env_two_hosts_ucx::sm_only_is_refused
        ENV_EXTRA=(ATOLL_PROVIDER=ucx "UCX_TLS=sm,self")
        env_job "$ERR_LIMIT" "$H1_ADDR:$port" "$HELLO"
        expect_failure_naming 'no transport of UCX_TLS=sm,self reaches place [0-9]+; it runs on another host'
        case_end
    else
        case_skip env_two_hosts_ucx "the build has no ucx feature"
    fi
    if has_feature ofi; then
        ENV_EXTRA=("${OFI_ENV[@]}")
        check_env_job env_two_hosts_ofi "$H1_ADDR:$port" on_h1 on_h1 on_h2 on_h2
        ENV_EXTRA=("${OFI_ENV[@]}" "$OFI_ROUTES_LOG")
        case_begin env_two_hosts_ofi::routes
        env_job "$OK_LIMIT" "$H1_ADDR:$port" "$HELLO"
        expect_ofi_routes
        case_end
    else
        case_skip env_two_hosts_ofi "the build has no ofi feature"
    fi
    ENV_EXTRA=()
}

two_node_slurm_cases() {
    case_begin srun_two_nodes::hostname
    case_run "$OK_LIMIT" on_h1 srun -N 2 -n 4 hostname
    expect_status ok
    expect_line '^h1$' 2
    expect_line '^h2$' 2
    case_end
    local mpi
    for mpi in pmix pmi2; do
        case_begin "srun_two_nodes_$mpi::shm_is_refused"
        case_run "$ERR_LIMIT" on_h1 srun --mpi="$mpi" -N 2 -n 4 "$HELLO"
        expect_failure_naming "$SHM_ACROSS_HOSTS"
        case_end
    done
    # Each network provider under both of Slurm's PMIs.
    local provider
    for provider in ucx ofi; do
        if ! has_feature "$provider"; then
            case_skip "srun_two_nodes_$provider" "the build has no $provider feature"
            continue
        fi
        if [ "$provider" = ucx ]; then
            ENV_EXTRA=("${UCX_ENV[@]}")
        else
            ENV_EXTRA=("${OFI_ENV[@]}")
        fi
        for mpi in pmix pmi2; do
            check_programs "srun_two_nodes_${mpi}_$provider" on_h1 srun --mpi="$mpi" -N 2 -n 4
            if [ "$provider" = ucx ]; then
                case_begin "srun_two_nodes_${mpi}_ucx::transports"
                case_run "$OK_LIMIT" on_h1 env "${UCX_ENV[@]}" "$UCX_LOG" srun --mpi="$mpi" -N 2 -n 4 "$HELLO"
                expect_ucx_transports
                case_end
            fi
        done
    done
    if has_feature ofi; then
        case_begin srun_two_nodes_pmix_ofi::routes
        case_run "$OK_LIMIT" on_h1 env "${OFI_ENV[@]}" "$OFI_ROUTES_LOG" srun --mpi=pmix -N 2 -n 4 "$HELLO"
        expect_ofi_routes
        case_end
    fi
    ENV_EXTRA=()
}
