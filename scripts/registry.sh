#!/usr/bin/env bash
# registry.sh - upkit's own throwaway OCI registries on loopback, for tests, demos and benchmarks.
#
#   scripts/registry.sh install [FLAVOR...]   install/build the registry binaries (default: all)
#   scripts/registry.sh bin FLAVOR            print the binary path; exit 1 (naming the fix) if missing
#   scripts/registry.sh start FLAVOR [PORT]   start one (or reuse the running one); prints HOST:PORT
#   scripts/registry.sh addr FLAVOR           print HOST:PORT of the running one; exit 1 if none
#   scripts/registry.sh stop [FLAVOR|all]     stop it (by its recorded PID) and delete its state
#
# FLAVOR:
#   distribution  CNCF distribution 2.8 from the Debian package docker-registry
#                 (`docker-registry serve CONFIG`). Answers 404 to the referrers API, so clients
#                 use the `sha256-<hex>` fallback tag scheme. Alias: v2.
#   olareg        github.com/olareg/olareg at the version of scripts/tools.txt, an OCI 1.1
#                 registry that serves GET /v2/<name>/referrers/<digest>. Built once from the Go
#                 module proxy by scripts/test-deps.sh into its tools cache
#                 ($UPKIT_TOOLS_DIR, default ${XDG_CACHE_HOME:-$HOME/.cache}/upkit/tools).
#
# Every registry listens on 127.0.0.1 only, plain HTTP, no auth, storage in its own state directory
# ${TMPDIR:-/tmp}/upkit-registry-FLAVOR/ (config, data/, log, pid, addr). stdout carries only
# what the command prints (a path or an address); messages go to stderr.
#
# The Go tests do not use `start`: internal/testutil/registrytest runs the same binaries directly, one
# fresh registry per test, and FAILS (never skips) with the install command when one is missing.
#
# Env: UPKIT_TOOLS_DIR (tools cache), UPKIT_OLAREG_BIN and UPKIT_DISTRIBUTION_BIN (use these
#      binaries), UPKIT_REGISTRY_START_TIMEOUT (s, default 30).
set -euo pipefail

TMPROOT=${TMPDIR:-/tmp}
TMPROOT=${TMPROOT%/}
HOST=127.0.0.1
HERE=$(cd "$(dirname "$0")" && pwd)
OLAREG_VERSION=$(awk '$1 == "olareg" { print $3 }' "$HERE/tools.txt")
BINDIR=${UPKIT_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/upkit/tools}
START_TIMEOUT=${UPKIT_REGISTRY_START_TIMEOUT:-30}
FLAVORS="distribution olareg"

say() { printf 'registry.sh: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

flavor_of() {
	case ${1:-} in
	distribution | v2 | --distribution | --v2) echo distribution ;;
	olareg | --olareg) echo olareg ;;
	*) die "unknown registry flavor '${1:-}' (want: distribution, olareg)" ;;
	esac
}

olareg_path() { printf '%s/olareg-%s/olareg' "$BINDIR" "$OLAREG_VERSION"; }

# find_bin FLAVOR: print the binary's path, or fail naming what to run.
find_bin() {
	local b
	case $1 in
	distribution)
		b=${UPKIT_DISTRIBUTION_BIN:-$(command -v docker-registry || true)}
		[ -z "$b" ] && [ -x /usr/bin/docker-registry ] && b=/usr/bin/docker-registry
		[ -n "$b" ] && [ -x "$b" ] ||
			die "docker-registry not found: run '$0 install distribution' (apt-get install docker-registry)"
		;;
	olareg)
		b=${UPKIT_OLAREG_BIN:-$(olareg_path)}
		[ -x "$b" ] ||
			die "olareg not found at $b: run '$0 install olareg' (builds github.com/olareg/olareg@$OLAREG_VERSION)"
		;;
	esac
	echo "$b"
}

# Both install through scripts/test-deps.sh, the one place that installs what the tests use.
install_distribution() { "$HERE/test-deps.sh" docker-registry; }
install_olareg() { "$HERE/test-deps.sh" olareg; }

state_dir() { printf '%s/upkit-registry-%s' "$TMPROOT" "$1"; }

port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# answering ADDR: does GET /v2/ return 200 or 401?
answering() {
	local code
	code=$({ exec 3<>"/dev/tcp/${1%:*}/${1##*:}" &&
		printf 'GET /v2/ HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3 &&
		head -n1 <&3 | cut -d' ' -f2; } 2>/dev/null) || code=000
	[ "$code" = 200 ] || [ "$code" = 401 ]
}

# ours PID DIR: is PID alive and a process we started from DIR?
ours() {
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
	[ -r "/proc/$1/cmdline" ] || return 0
	tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}

running_addr() {
	local dir
	dir=$(state_dir "$1")
	[ -f "$dir/pid" ] && [ -f "$dir/addr" ] && ours "$(cat "$dir/pid")" "$dir" || return 1
	cat "$dir/addr"
}

write_distribution_config() { # DIR PORT
	cat >"$1/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $1/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $HOST:$2
  secret: upkit-throwaway-test-registry
EOF
}

cmd_start() {
	local flavor=$1 port=${2:-} dir bin addr pid deadline
	dir=$(state_dir "$flavor")
	if addr=$(running_addr "$flavor"); then
		say "$flavor registry already running at $addr"
		echo "$addr"
		return
	fi
	bin=$(find_bin "$flavor")
	rm -rf "$dir"
	mkdir -p "$dir/data"
	if [ -z "$port" ]; then
		port=$([ "$flavor" = distribution ] && echo 5000 || echo 5002)
		while port_busy "$port"; do port=$((port + 1)); done
	elif port_busy "$port"; then
		die "port $HOST:$port is already in use"
	fi
	addr=$HOST:$port
	case $flavor in
	distribution)
		write_distribution_config "$dir" "$port"
		set -- "$bin" serve "$dir/config.yml"
		;;
	olareg)
		set -- "$bin" serve --addr "$HOST" --port "$port" --dir "$dir/data" --api-delete --api-blob-delete
		;;
	esac
	# setsid: a Ctrl-C in the caller's terminal does not reach the registry; fds 3+ are not
	# inherited (bash closes none by itself), so a caller's pipe does not stay open.
	setsid "$@" </dev/null >"$dir/log" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
	pid=$!
	echo "$pid" >"$dir/pid"
	echo "$addr" >"$dir/addr"
	deadline=$((SECONDS + START_TIMEOUT))
	while [ "$SECONDS" -lt "$deadline" ]; do
		kill -0 "$pid" 2>/dev/null || {
			tail -n 20 "$dir/log" >&2 || true
			die "$flavor registry exited at start (log above)"
		}
		if answering "$addr"; then
			say "$flavor registry (pid $pid) at http://$addr/v2/, state in $dir"
			echo "$addr"
			return
		fi
		sleep 0.1
	done
	kill "$pid" 2>/dev/null || true
	tail -n 20 "$dir/log" >&2 || true
	die "$flavor registry did not answer at http://$addr/v2/ within ${START_TIMEOUT}s"
}

cmd_stop() {
	local flavor=$1 dir pid i
	dir=$(state_dir "$flavor")
	[ -d "$dir" ] || return 0
	if [ -f "$dir/pid" ]; then
		pid=$(cat "$dir/pid")
		if ours "$pid" "$dir"; then
			kill -TERM "$pid" 2>/dev/null || true
			for i in $(seq 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
			say "stopped $flavor registry (pid $pid)"
		fi
	fi
	rm -rf "$dir"
}

main() {
	local cmd=${1:-} f
	[ $# -gt 0 ] && shift
	case $cmd in
	install)
		[ $# -eq 0 ] && set -- $FLAVORS
		for f in "$@"; do
			f=$(flavor_of "$f")
			"install_$f"
		done
		;;
	bin) find_bin "$(flavor_of "${1:-}")" ;;
	start) cmd_start "$(flavor_of "${1:-}")" "${2:-}" ;;
	addr)
		f=$(flavor_of "${1:-}")
		running_addr "$f" || die "no $f registry running"
		;;
	stop)
		if [ -z "${1:-}" ] || [ "$1" = all ]; then
			for f in $FLAVORS; do cmd_stop "$f"; done
		else
			cmd_stop "$(flavor_of "$1")"
		fi
		;;
	*)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
		exit 2
		;;
	esac
}

main "$@"
