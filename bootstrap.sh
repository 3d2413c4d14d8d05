#!/usr/bin/env bash
# Install the system software pbx's tests drive: real SIP peers from Debian
# (SIPp, sipsak, baresip) and, when none answers on 127.0.0.1:5432, a
# PostgreSQL server with a database "test" that trusts local connections.
# Safe to run again; needs root (or sudo).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v sipsak >/dev/null || need+=(sipsak)
command -v baresip >/dev/null || need+=(baresip-core)
command -v openssl >/dev/null || need+=(openssl)
command -v flite >/dev/null || need+=(flite)
command -v sox >/dev/null || need+=(sox)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_up; then
  command -v pg_ctlcluster >/dev/null || need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! pg_up; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  conf=/etc/postgresql/$version/main/pg_hba.conf
  if ! $SUDO grep -q "pbx-test" "$conf"; then
    printf 'host all all 127.0.0.1/32 trust # pbx-test\nhost all all ::1/128 trust # pbx-test\n' \
      | $SUDO tee -a "$conf" >/dev/null
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
  $SUDO -u postgres psql -qc "select 1" >/dev/null
  $SUDO -u postgres psql -tAc "select 1 from pg_database where datname='test'" | grep -q 1 \
    || $SUDO -u postgres createdb test
fi
pg_up || { echo "bootstrap: PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1; }
echo "bootstrap: sipp, sipsak, baresip and PostgreSQL are ready"
