#!/usr/bin/env bash
# Make this checkout ready on a stock Debian 12 (or newer) machine, with its
# system Python: Debian's externally managed Python takes no packages, so
# everything goes into a virtual environment, ./.venv.
#
#   ./bootstrap.sh          what running pbx needs: .venv with pbx installed
#                           (then: .venv/bin/twistd -n pbx)
#   ./bootstrap.sh --test   what the tests need: the real peers from Debian
#                           (SIPp, sipsak, baresip, SIPVicious, fail2ban, Chromium), a PostgreSQL
#                           server with a database "test" trusting local
#                           connections when none answers on 127.0.0.1:5432,
#                           and tox in .venv (then: .venv/bin/tox)
#
# Safe to run again. Debian packages need root or sudo; when they are all
# there already, neither is needed.
set -euo pipefail
cd "$(dirname "$0")"

mode=run
case "${1:-}" in
  "") ;;
  --test) mode=test ;;
  *) echo "usage: ./bootstrap.sh [--test]" >&2; exit 2 ;;
esac

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

python=${PYTHON:-python3}
need=()
command -v "$python" >/dev/null || need+=(python3)
# venv without ensurepip (python3-venv) makes an environment with no pip.
"$python" -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
command -v openssl >/dev/null || need+=(openssl)
if [ "$mode" = test ]; then
  command -v sipp >/dev/null || need+=(sip-tester)
  command -v sipsak >/dev/null || need+=(sipsak)
  command -v baresip >/dev/null || need+=(baresip-core)
  command -v flite >/dev/null || need+=(flite)
  command -v sox >/dev/null || need+=(sox)
  command -v espeak-ng >/dev/null || need+=(espeak-ng)
  command -v chromium >/dev/null || need+=(chromium)
  # Playwright's bundled Node.js driver links libatomic.
  /sbin/ldconfig -p | grep -q "libatomic.so.1 " || need+=(libatomic1)
  command -v git >/dev/null || need+=(git)
  command -v svwar >/dev/null || need+=(sipvicious)
  command -v fail2ban-regex >/dev/null || need+=(fail2ban)
fi
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if [ "$mode" = test ] && ! pg_up; then
  command -v pg_ctlcluster >/dev/null || need+=(postgresql)
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
    echo "bootstrap: needs root or sudo to install: ${need[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing ${need[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

"$python" - <<'EOF'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"bootstrap: pbx needs Python 3.11 or newer, not {sys.version.split()[0]}")
EOF

if [ ! -x .venv/bin/pip ]; then
  rm -rf .venv
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$mode" = run ]; then
  .venv/bin/python -m pip install -q .
  echo "bootstrap: pbx is installed in .venv; start it with .venv/bin/twistd -n pbx"
  exit 0
fi

.venv/bin/python -m pip install -q tox
as_postgres() {
  if [ -z "$SUDO" ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}
if ! pg_up; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  conf=/etc/postgresql/$version/main/pg_hba.conf
  if ! $SUDO grep -q "pbx-test" "$conf"; then
    # First match wins in pg_hba.conf: these go above Debian's own lines.
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust # pbx-test\nhost all all ::1/128 trust # pbx-test' "$conf"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
  as_postgres psql -qc "select 1" >/dev/null
  as_postgres psql -tAc "select 1 from pg_database where datname='test'" | grep -q 1 \
    || as_postgres createdb test
fi
pg_up || { echo "bootstrap: PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1; }
echo "bootstrap: SIPp, sipsak, baresip, SIPVicious, fail2ban, Chromium, PostgreSQL and tox (.venv/bin/tox) are ready"
