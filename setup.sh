#!/usr/bin/env bash
# setup.sh - install what is missing, build, then run lmtpd or the tests.
#
#   ./setup.sh run    build, start the callout services (ocp-services on
#                     conf/services.conf.example) and lmtpd on
#                     conf/lmtpd.conf.example (127.0.0.1:2424 and
#                     ./var/run/lmtpd.sock, mail under ./var/mail); runs
#                     until one of them exits or setup.sh gets SIGTERM,
#                     SIGINT (Ctrl-C) or SIGHUP, and then stops both.
#                     LMTPD_CONF and SERVICES_CONF name other configurations;
#                     SKIP_BUILD=1 uses the build that is there
#   ./setup.sh build  install the build dependencies and build, nothing else
#   ./setup.sh test   build and run the whole test suite, then again under
#                     ASan+UBSan (SANITIZE=0 skips that), then each fuzz
#                     target briefly; the last line is "N passed, M failed"
#
# Needs Debian 12 (or similar) and root for apt-get when packages are
# missing. Extra configure flags: CONFIGURE_FLAGS="--enable-sanitizers".
set -euo pipefail
cd "$(dirname "$0")"

mode=${1:-}
case $mode in run|test|build) ;; *) echo "usage: $0 run|test|build" >&2; exit 64 ;; esac
skip_build=""
[ "$mode" = run ] && [ "${SKIP_BUILD:-0}" = 1 ] && [ -x lmtpd/lmtpd ] && [ -x services/ocp-services ] && skip_build=1

build_pkgs="build-essential autoconf automake pkg-config libglib2.0-dev libgmime-3.0-dev libssl-dev libldap-dev libpq-dev libcrypt-dev libsqlite3-dev libsoup-3.0-dev python3"
test_pkgs="swaks postfix dovecot-core dovecot-imapd dovecot-sieve socat openssl spamassassin spamd spamc rspamd clamav-daemon clang libclang-rt-14-dev slapd ldap-utils postgresql sieve-connect chromium python3-websocket sqlite3 strace"

missing=()
pkgs=$build_pkgs
[ "$mode" = test ] && pkgs="$pkgs $test_pkgs"
[ -n "$skip_build" ] && pkgs=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Postfix and Dovecot are only tools for the tests here: configure
  # nothing and start no services while installing.
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  # slapd too: the LDAP tests run their own, on a generated configuration
  echo "slapd slapd/no_configuration boolean true" | $sudo debconf-set-selections
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -n "$made_policy" ] && $sudo rm -f /usr/sbin/policy-rc.d
fi

flags="${CONFIGURE_FLAGS:-}"
[ "$mode" = test ] && flags="--enable-werror $flags"
if [ -z "$skip_build" ]; then
  if [ ! -x configure ]; then ./autogen.sh >/dev/null; fi
  if [ ! -f Makefile ] || [ "$(cat .configure-flags 2>/dev/null)" != "$flags" ]; then
    # shellcheck disable=SC2086
    ./configure -q $flags
    echo "$flags" > .configure-flags
  fi
  make -s -j"$(nproc)"
fi
[ "$mode" = build ] && exit 0

if [ "$mode" = run ]; then
  # lmtpd never writes mail as root: the example config switches to "lmtpd"
  if [ -z "${LMTPD_CONF:-}" ] && [ "$(id -u)" -eq 0 ] && ! id lmtpd >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin lmtpd
  fi
  # paths in the example config are relative to this directory, which the
  # mail user must be able to search (a mktemp -d checkout is 0700)
  if [ -z "${LMTPD_CONF:-}" ] && [ "$(id -u)" -eq 0 ] && ! su -s /bin/sh lmtpd -c "cd '$PWD'" 2>/dev/null; then
    echo "setup: letting user lmtpd search $PWD (chmod o+x)" >&2
    chmod o+x .
  fi
  # Both run in the background and the shell waits for them: a signal to
  # the shell then runs its trap at once (a foreground child would delay
  # it, and SIGTERM from a service manager or kill would reach only the
  # shell, leaving lmtpd running).  Background children of a script ignore
  # SIGINT, so Ctrl-C too goes through the trap.
  pids=()
  stop_all() {
    trap - TERM INT HUP EXIT
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  }
  trap 'stop_all; exit 143' TERM
  trap 'stop_all; exit 130' INT
  trap 'stop_all; exit 129' HUP
  trap stop_all EXIT
  services_conf=${SERVICES_CONF:-conf/services.conf.example}
  lmtpd_conf=${LMTPD_CONF:-conf/lmtpd.conf.example}
  if [ -z "${LMTPD_CONF:-}" ]; then
    # the example with its admin web page on: a token made once (0600,
    # read by lmtpd before it drops privileges), the login link printed
    # (in a directory of its own: the ones lmtpd makes are the mail user's)
    mkdir -p var/admin
    if [ ! -s var/admin/token ]; then
      (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > var/admin/token)
    fi
    sed -e 's|^#listen = inet:127.0.0.1:8025$|listen = inet:127.0.0.1:8025|' \
        -e 's|^#token_file = /etc/lmtpd/admin.token$|token_file = ./var/admin/token|' \
        conf/lmtpd.conf.example > var/admin/lmtpd.conf
    lmtpd_conf=var/admin/lmtpd.conf
    echo "setup: the admin page: http://127.0.0.1:8025/login?token=$(cat var/admin/token)" >&2
  fi
  echo "setup: starting ocp-services on $services_conf" >&2
  ./services/ocp-services -c "$services_conf" &
  pids+=($!)
  echo "setup: starting lmtpd on $lmtpd_conf (Ctrl-C stops both)" >&2
  ./lmtpd/lmtpd -c "$lmtpd_conf" &
  pids+=($!)
  # until either one exits: then the other is stopped too
  rc=0
  wait -n "${pids[@]}" || rc=$?
  stop_all
  exit "$rc"
fi

rc=0
make -s -j"$(nproc)" check >test-output.log 2>&1 || rc=$?
grep -E '^(PASS|FAIL|ERROR|XPASS|SKIP):' test-output.log || true
pass=$(awk '/^# PASS:/ {print $3}' test-output.log | tail -1)
fail=$(awk '/^# (FAIL|ERROR|XPASS):/ {n += $3} END {print n + 0}' test-output.log)
if [ -z "$pass" ]; then
  cat test-output.log
  pass=0; fail=$((fail + 1))
fi
# the whole suite again under ASan+UBSan, in a copy of the tracked files
# (build-asan/); SANITIZE=0 skips it
if [ "${SANITIZE:-1}" != 0 ]; then
  rm -rf build-asan && mkdir -p build-asan/src
  git ls-files -z | tar --null -T - -cf - | tar -xf - -C build-asan/src
  asan_rc=0
  (cd build-asan/src && ./autogen.sh >/dev/null 2>&1 && ./configure -q --enable-werror --enable-sanitizers \
     && make -s -j"$(nproc)" >/dev/null 2>&1 && make -s -j"$(nproc)" check) >asan-output.log 2>&1 || asan_rc=$?
  echo "---- the suite under ASan+UBSan (build-asan/):"
  grep -E '^(PASS|FAIL|ERROR|XPASS|SKIP):' asan-output.log | sed 's/^/asan /' || true
  apass=$(awk '/^# PASS:/ {print $3}' asan-output.log | tail -1)
  afail=$(awk '/^# (FAIL|ERROR|XPASS):/ {n += $3} END {print n + 0}' asan-output.log)
  if [ -z "$apass" ] || { [ "$asan_rc" -ne 0 ] && [ "$afail" -eq 0 ]; }; then
    tail -50 asan-output.log; apass=${apass:-0}; afail=$((afail + 1))
  fi
  if [ "$afail" -ne 0 ]; then
    for f in $(grep -lE '^(not ok|ERROR)' build-asan/src/tests/unit/*.log build-asan/src/tests/integration/*.log 2>/dev/null); do
      echo "---- $f"; cat "$f"
    done
  fi
  pass=$((pass + apass)); fail=$((fail + afail))
fi
# each libFuzzer target for a short budget (ASan+UBSan); longer: tests/fuzz/run.sh 600
if command -v clang >/dev/null; then
  FUZZ_BUILD="$PWD/build-fuzz" tests/fuzz/run.sh "${FUZZ_SECONDS:-10}" >fuzz-output.log 2>&1 || true
  cat fuzz-output.log
  ok=$(grep -c ', no finding$' fuzz-output.log || true)
  bad=$(grep -c 'FINDING' fuzz-output.log || true)
  [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ] && bad=1  # the build failed
  pass=$((pass + ok)); fail=$((fail + bad))
fi
if [ "$rc" -ne 0 ] || [ "$fail" -ne 0 ]; then
  for f in $(grep -lE '^(not ok|ERROR)' tests/unit/*.log tests/integration/*.log 2>/dev/null); do
    echo "---- $f"; cat "$f"
  done
  [ "$fail" -eq 0 ] && fail=1
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
