#!/bin/sh
# Run by `cargo xtask deploy` on the target machine (locally, or through ssh as `sh -s`).
# Installs the package $XMD_DEB into $XMD_ROOT (/ : dpkg -i; anything else: a scratch
# root, extracted with dpkg-deb -x and no maintainer scripts), writes the serve arguments
# $XMD_ARGS to /etc/default/xdp-mountd, and starts the service: with systemd when it runs
# and the root is /, otherwise as the unit would run it (user nobody, the unit's
# capabilities), detached, with a pid file and a log under the root.
set -eu
set -f # the arguments are words, never globs
root=${XMD_ROOT:-/}
root=${root%/}
say() { echo "deploy: $*"; }

if [ -z "$root" ]; then
    dpkg -i "$XMD_DEB" >/dev/null
    say "installed $(dpkg-query -W -f='${Package} ${Version}' xdp-mountd) with dpkg -i"
else
    mkdir -p "$root"
    dpkg-deb -x "$XMD_DEB" "$root"
    say "extracted the package into the scratch root $root (no maintainer scripts ran)"
fi
if [ "${XMD_REMOVE_DEB:-0}" = 1 ]; then
    rm -f "$XMD_DEB"
fi

defaults="$root/etc/default/xdp-mountd"
printf '# Written by cargo xtask deploy.\nXDP_MOUNTD_ARGS="%s"\n' "$XMD_ARGS" >"$defaults"
say "wrote $defaults: XDP_MOUNTD_ARGS=\"$XMD_ARGS\""

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable xdp-mountd.service 2>/dev/null
    systemctl restart xdp-mountd.service
    say "systemd: enabled and (re)started xdp-mountd.service"
    exit 0
fi

if [ -n "$root" ]; then
    why="a scratch root is not a system systemd manages"
else
    why="systemd is not running here"
fi
unit=$(find "$root/lib/systemd/system" "$root/usr/lib/systemd/system" \
    -name xdp-mountd.service 2>/dev/null | head -n 1)
[ -n "$unit" ] || { say "no xdp-mountd.service in the package"; exit 1; }
# The unit's AmbientCapabilities= as setpriv wants them: +net_admin,+bpf,...
caps=$(sed -n 's/^AmbientCapabilities=//p' "$unit" | tr ' ' '\n' | sed -n 's/^CAP_\(.*\)/+\1/p' |
    tr 'A-Z' 'a-z' | paste -sd, -)
mkdir -p "$root/run/xdp-mountd" "$root/var/lib/xdp-mountd" "$root/var/log"
chown nobody "$root/run/xdp-mountd" "$root/var/lib/xdp-mountd"
pidfile="$root/run/xdp-mountd.pid"
log="$root/var/log/xdp-mountd.log"
if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
    say "stopped the previous instance (pid $(cat "$pidfile"))"
    sleep 1
fi
# shellcheck disable=SC2086 # XMD_ARGS is a list of words, as in the unit's ExecStart
setsid setpriv --reuid=nobody --regid=nogroup --clear-groups \
    --inh-caps="-all,$caps" --ambient-caps="-all,$caps" \
    "$root/usr/sbin/xdp-mountd" serve $XMD_ARGS </dev/null >"$log" 2>&1 &
pid=$!
echo "$pid" >"$pidfile"
tries=0
until grep -q READY "$log"; do
    tries=$((tries + 1))
    if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -gt 100 ]; then
        say "xdp-mountd did not start; its log:"
        cat "$log"
        exit 1
    fi
    sleep 0.1
done
say "$why: started $root/usr/sbin/xdp-mountd as user nobody with capabilities $caps" \
    "(pid $pid, log $log; stop it with: kill \$(cat $pidfile))"
