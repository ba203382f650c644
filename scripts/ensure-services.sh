#!/usr/bin/env bash
# Makes sure PostgreSQL, Redis and RabbitMQ answer and that nginx and Chromium (for the
# browser tests) are installed, so that `make run` and `make test` work on a fresh machine.
#
# For each server: if its port answers, it is reused as it is. Otherwise it is started
# with `docker compose` when a Docker engine is reachable, else installed with apt and
# started without systemd when running as root, else we say what is missing and fail.
# Addresses come from DATABASE_URL, REDIS_URL and AMQP_URL when set.
# Quiet when everything is already there; every wait is bounded (ENSURE_WAIT_SECONDS).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

WAIT_SECONDS=${ENSURE_WAIT_SECONDS:-90}

say() { printf 'ensure-services: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# "host port" of a URL such as postgresql://user:pw@host:5432/db, or the defaults.
host_port() {
    local url=$1 default_host=$2 default_port=$3 rest host port
    if [[ -z $url ]]; then
        echo "$default_host $default_port"
        return
    fi
    rest=${url#*://}
    rest=${rest%%[/?#]*}
    rest=${rest##*@}
    if [[ $rest == \[* ]]; then
        host=${rest#[}
        host=${host%%]*}
        port=${rest#*]}
        port=${port#:}
    else
        host=${rest%%:*}
        port=${rest#"$host"}
        port=${port#:}
    fi
    echo "${host:-$default_host} ${port:-$default_port}"
}

answers() {
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

is_local() {
    [[ $1 == localhost || $1 == 127.* || $1 == ::1 ]]
}

wait_for() {
    local name=$1 host=$2 port=$3 deadline=$((SECONDS + WAIT_SECONDS))
    until answers "$host" "$port"; do
        if ((SECONDS >= deadline)); then
            die "$name did not answer on $host:$port within ${WAIT_SECONDS}s"
        fi
        sleep 1
    done
}

amqp_default_port=5672
[[ ${AMQP_URL:-} == amqps://* ]] && amqp_default_port=5671

declare -A HOST PORT PACKAGE
read -r HOST[postgres] PORT[postgres] < <(host_port "${DATABASE_URL:-}" 127.0.0.1 5432)
read -r HOST[redis] PORT[redis] < <(host_port "${REDIS_URL:-}" 127.0.0.1 6379)
read -r HOST[rabbitmq] PORT[rabbitmq] < <(host_port "${AMQP_URL:-}" 127.0.0.1 "$amqp_default_port")
PACKAGE=([postgres]=postgresql [redis]=redis-server [rabbitmq]=rabbitmq-server)

missing=()
for name in postgres redis rabbitmq; do
    answers "${HOST[$name]}" "${PORT[$name]}" || missing+=("$name")
done

find_nginx() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}
need_nginx=
[[ -n $(find_nginx) ]] || need_nginx=1

# The browser tests (tests/e2e/test_web.py) drive Debian's Chromium; Playwright's own
# browser download is never used (the machines that run this may have no internet).
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
need_chromium=
[[ -x $CHROMIUM ]] || need_chromium=1

if ((${#missing[@]} == 0)) && [[ -z $need_nginx ]] && [[ -z $need_chromium ]]; then
    exit 0
fi

can_apt() { [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; }

# apt's maintainer scripts would start each package's system service (nginx on port
# 80, the servers under systemd); we start what we need ourselves, so forbid that
# while we install, unless the machine already has a policy of its own.
POLICY=/usr/sbin/policy-rc.d
our_policy=
cleanup() { if [[ -n $our_policy ]]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT

apt_updated=
apt_install() {
    if [[ ! -e $POLICY ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY"
        chmod 755 "$POLICY"
        our_policy=1
    fi
    if [[ -z $apt_updated ]]; then
        say "apt-get update"
        apt-get update -q >/dev/null
        apt_updated=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=120 "$@" >/dev/null
}

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose "$@"
    else
        docker-compose "$@"
    fi
}

start_postgres() {
    local fresh=$1 version hba
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z $version ]]; then
        version=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
        [[ -n $version ]] || die "PostgreSQL is installed but no server version was found under /usr/lib/postgresql"
        pg_createcluster "$version" main >/dev/null
        fresh=1
    elif [[ ! -d /etc/postgresql/$version/main ]]; then
        pg_createcluster "$version" main >/dev/null
        fresh=1
    fi
    hba=/etc/postgresql/$version/main/pg_hba.conf
    if [[ -n $fresh ]] && ! grep -q '^# hoithi: development' "$hba"; then
        # Development only: the application connects as `postgres` over local TCP
        # without a password, as the default DATABASE_URL says.
        {
            echo '# hoithi: development access without a password, local TCP only'
            echo 'host all all 127.0.0.1/32 trust'
            echo 'host all all ::1/128 trust'
            cat "$hba"
        } >"$hba.new"
        chown --reference="$hba" "$hba.new"
        chmod --reference="$hba" "$hba.new"
        mv "$hba.new" "$hba"
        say "PostgreSQL: local TCP connections trusted (development), see $hba"
    fi
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
        say "pg_ctlcluster could not start $version/main (see /var/log/postgresql/)"
}

start_redis() {
    say "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port "${PORT[redis]}" \
        --save "" --appendonly no --dir /tmp >/dev/null || say "redis-server could not start"
}

start_rabbitmq() {
    say "starting RabbitMQ (its first start takes a while)"
    RABBITMQ_NODE_PORT=${PORT[rabbitmq]} rabbitmq-server -detached >/dev/null 2>&1 ||
        say "rabbitmq-server -detached failed (see /var/log/rabbitmq/)"
}

if ((${#missing[@]} > 0)); then
    for name in "${missing[@]}"; do
        is_local "${HOST[$name]}" ||
            die "$name does not answer on ${HOST[$name]}:${PORT[$name]}, which is not this machine; start it there or change the URL"
    done

    if command -v docker >/dev/null && docker info >/dev/null 2>&1 &&
        { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; }; then
        say "starting ${missing[*]} with docker compose"
        POSTGRES_HOST_PORT=${PORT[postgres]} REDIS_HOST_PORT=${PORT[redis]} RABBITMQ_HOST_PORT=${PORT[rabbitmq]} \
            compose up -d "${missing[@]}"
    elif can_apt; then
        for name in "${missing[@]}"; do
            fresh=
            case $name in
            postgres) command -v pg_ctlcluster >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 ||
                { apt_install postgresql; fresh=1; } ;;
            redis) command -v redis-server >/dev/null || apt_install redis-server ;;
            rabbitmq) command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server ;;
            esac
            "start_$name" "$fresh"
        done
    else
        packages=()
        say "not running, and neither a Docker engine nor root with apt-get to start them:"
        for name in "${missing[@]}"; do
            say "  $name, expected on ${HOST[$name]}:${PORT[$name]} (Debian package ${PACKAGE[$name]})"
            packages+=("${PACKAGE[$name]}")
        done
        say "Either install and start them (e.g. 'sudo apt-get install ${packages[*]}'), or start a Docker"
        say "engine and run 'docker compose up -d ${missing[*]}', or set DATABASE_URL, REDIS_URL and AMQP_URL"
        say "to servers that are running; then run this again."
        exit 1
    fi

    for name in "${missing[@]}"; do
        wait_for "$name" "${HOST[$name]}" "${PORT[$name]}"
    done
fi

if [[ -n $need_nginx ]]; then
    if can_apt; then
        apt_install nginx
        nginx_bin=$(find_nginx)
        [[ -n $nginx_bin ]] || die "nginx was installed but no nginx binary was found"
        # Should the package's own service have started anyway, stop it: the gateway
        # runs as our own process with its own config.
        if [[ -s /run/nginx.pid ]]; then
            "$nginx_bin" -s stop 2>/dev/null || kill "$(cat /run/nginx.pid)" 2>/dev/null || true
        fi
    else
        die "nginx is missing: install it (Debian/Ubuntu: 'sudo apt-get install nginx'; macOS: 'brew install nginx'). Only the binary is used; the gateway runs as its own process."
    fi
fi

if [[ -n $need_chromium ]]; then
    # Only the browser tests need it, so a missing Chromium warns rather than stops `make run`.
    if can_apt; then
        apt_install chromium || say "could not install chromium: the browser tests will fail"
    else
        say "Chromium is missing at $CHROMIUM: the browser tests (tests/e2e/test_web.py) need it."
        say "Install it (Debian: 'sudo apt-get install chromium') or set CHROMIUM to a Chromium/Chrome binary."
        say "Do not run 'playwright install': it downloads a browser from the internet."
    fi
fi
