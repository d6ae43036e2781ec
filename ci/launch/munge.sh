# shellcheck shell=bash disable=SC2034 # (variables shared between the sourced files)
# munge, the authentication Slurm uses (sourced by the Slurm scripts).
#
# munge_up: reuses a munged that already answers, or starts one (as the munge user, with the
# key Debian's postinst made) and stops it when the sourcing script exits. Needs root.

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

munge_up() {
    if munge_ok; then
        log "munged already answers: using it"
        return 0
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        timeout -s KILL 10 runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    fi
    rm -f /run/munge/munged.pid
    # munged daemonizes and writes its pid file; the foreground part ends at once.
    timeout -s KILL 10 runuser -u munge -- /usr/sbin/munged || {
        log "munged failed to start (see /var/log/munge/munged.log)"
        return 1
    }
    cleanup_push munge_down
    wait_for 5 munge_ok || {
        log "munged started but 'munge -n | unmunge' fails after 5 s"
        return 1
    }
    log "munged started (pid $(cat /run/munge/munged.pid))"
}

# munge_down: stops the munged that munge_up started.
munge_down() {
    local pid
    pid="$(cat /run/munge/munged.pid 2>/dev/null)" || return 0
    kill "$pid" 2>/dev/null || return 0
    wait_for 5 sh -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
}
