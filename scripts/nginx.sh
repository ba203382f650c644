#!/usr/bin/env bash
# Runs the gateway's nginx as an ordinary foreground process with the config that
# deploy/nginx/render.py wrote:
#
#     scripts/nginx.sh            serve (what the Procfile runs)
#     scripts/nginx.sh -t         test the config
#     scripts/nginx.sh -s reload  signal the running gateway
#
# Absolute paths on purpose: nginx resolves a relative -c against the -p prefix, not
# the working directory. /usr/sbin is often not on a non-root PATH, hence the search.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${NGINX_PREFIX:-$root/var/nginx}
conf=${NGINX_CONF:-$prefix/nginx.conf}

nginx=$(command -v nginx 2>/dev/null || true)
for candidate in /usr/sbin/nginx /usr/local/sbin/nginx /usr/local/bin/nginx /opt/homebrew/bin/nginx; do
    [[ -n $nginx ]] && break
    [[ -x $candidate ]] && nginx=$candidate
done
if [[ -z $nginx ]]; then
    echo "scripts/nginx.sh: nginx not found; 'make services' installs it (as root), or install the nginx package" >&2
    exit 1
fi
if [[ ! -f $conf ]]; then
    echo "scripts/nginx.sh: $conf is missing; render it with: python deploy/nginx/render.py" >&2
    exit 1
fi

args=(-p "$prefix/" -c "$conf")
# -e (nginx >= 1.19.5) keeps the error log that precedes reading the config off
# /var/log/nginx, which a non-root user cannot open.
if "$nginx" -h 2>&1 | grep -q -- ' -e '; then
    args=(-e stderr "${args[@]}")
fi
if (($# == 0)); then
    set -- -g 'daemon off;'
fi
exec "$nginx" "${args[@]}" "$@"
