#!/usr/bin/env bash
# Prove that pbx starts in FIPS mode (security.fips: true) on an OpenSSL
# FIPS provider built here from source, and refuses to start without it.
# What it proves and why it is built this way: README.rst beside this file.
#
#   bash tests/fips/prove.sh        # from anywhere; builds into $PBX_FIPS_DIR
#
# Idempotent: the source, the provider and the virtual environment are kept
# in PBX_FIPS_DIR (default /tmp/pbx-fips) and reused; pbx itself is
# reinstalled from this checkout on every run. Prints one line per check and
# exits 1 if any failed. Needs: python3 with venv, a C compiler and make,
# perl, curl, the system's `openssl` 3.x, sipsak; network for Debian's pool
# and PyPI on the first run only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=${PBX_FIPS_DIR:-/tmp/pbx-fips}
PYTHON=${PBX_FIPS_PYTHON:-python3}
# Debian's upstream tarball of OpenSSL 3.0.19 (the system's version on
# bookworm when this was written), checked against the sha256 in its .dsc.
VERSION=3.0.19
SHA256=fa5a4143b8aae18be53ef2f3caf29a2e0747430b8bc74d32d88335b94ab63072
URLS=(
    "http://deb.debian.org/debian-security/pool/updates/main/o/openssl/openssl_${VERSION}.orig.tar.gz"
    "http://deb.debian.org/debian/pool/main/o/openssl/openssl_${VERSION}.orig.tar.gz"
)

mkdir -p "$DIR"
cd "$DIR"
PASSED=0
FAILED=0
PBX_PID=

ok() { echo "ok    $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL  $*"; FAILED=$((FAILED + 1)); }
# check NAME COMMAND...: run COMMAND quietly (its output in $DIR/last.out).
check() {
    local name=$1
    shift
    if "$@" >"$DIR/last.out" 2>&1; then ok "$name"; else fail "$name"; sed 's/^/      | /' "$DIR/last.out" | tail -15; fi
}
step() { echo "== $*"; }
stop_pbx() {
    if [ -n "$PBX_PID" ]; then
        kill "$PBX_PID" 2>/dev/null || true
        wait "$PBX_PID" 2>/dev/null || true
        PBX_PID=
    fi
}
trap stop_pbx EXIT

# --- 1. the FIPS provider ------------------------------------------------
step "OpenSSL ${VERSION} FIPS provider in $DIR"
tarball=openssl_${VERSION}.orig.tar.gz
if ! echo "$SHA256  $tarball" | sha256sum -c --status 2>/dev/null; then
    rm -f "$tarball"
    for url in "${URLS[@]}"; do
        curl -fsS -o "$tarball" "$url" && break || rm -f "$tarball"
    done
fi
check "source $tarball matches Debian's sha256" sha256sum -c <(echo "$SHA256  $tarball")
src=openssl-${VERSION}
if [ ! -f "$src/providers/fips.so" ]; then
    rm -rf "$src"
    tar xzf "$tarball"
    started=$SECONDS
    (cd "$src" && ./Configure enable-fips linux-x86_64 && make build_generated \
        && make -j"$(nproc)" providers/fips.so) >"$DIR/build.log" 2>&1 \
        || { fail "build providers/fips.so (see $DIR/build.log)"; exit 1; }
    echo "      built in $((SECONDS - started)) s"
fi
check "providers/fips.so built (./Configure enable-fips)" test -f "$src/providers/fips.so"

# Two copies of one module: the system OpenSSL (behind hashlib) and the one
# inside the cryptography wheel each start their own; one file started by
# both is started only by the first (README.rst, "Two OpenSSLs").
mkdir -p modules
for copy in fips.so fips-wheel.so; do
    cmp -s "$src/providers/fips.so" "modules/$copy" || cp "$src/providers/fips.so" "modules/$copy"
done
check "openssl fipsinstall: self-tests pass, fipsmodule.cnf written" \
    openssl fipsinstall -module modules/fips.so -out fipsmodule.cnf
params=$(grep -v -e '^\[' -e '^activate' fipsmodule.cnf)

# write_conf FILE COPIES: an openssl.cnf for FIPS mode. COPIES=2: a copy of
# fips.so for each OpenSSL of the process; COPIES=1: one fips.so for both,
# the obvious config, which leaves the second OpenSSL with no provider.
write_conf() {
    if [ "$2" = 2 ]; then
        cat >"$1" <<EOF
# FIPS mode for both OpenSSLs of a pbx process (written by prove.sh).
openssl_conf = openssl_init

[openssl_init]
providers = provider_sect
alg_section = algorithm_sect

[provider_sect]
fips = fips_sect
fips_wheel = fips_wheel_sect
base = base_sect

# OpenSSL 3.0 activates a provider whose section has an activate key, any
# value; 3.2 and later read the value, and 0 is no. So the system OpenSSL
# 3.0 starts this copy and the wheel's OpenSSL does not.
[fips_sect]
activate = 0
module = $DIR/modules/fips.so
$params

# Same name: OpenSSL 3.0 has a "fips" active already and skips this; the
# wheel's OpenSSL starts its own copy.
[fips_wheel_sect]
identity = fips
activate = 1
module = $DIR/modules/fips-wheel.so
$params

[base_sect]
activate = 1

[algorithm_sect]
default_properties = fips=yes
EOF
    else
        cat >"$1" <<EOF
# FIPS mode with one fips.so for every OpenSSL (written by prove.sh).
openssl_conf = openssl_init

[openssl_init]
providers = provider_sect
alg_section = algorithm_sect

[provider_sect]
fips = fips_sect
base = base_sect

[fips_sect]
activate = 1
module = $DIR/modules/fips.so
$params

[base_sect]
activate = 1

[algorithm_sect]
default_properties = fips=yes
EOF
    fi
}
write_conf openssl.cnf 2
write_conf openssl-one-copy.cnf 1
check "system openssl lists the FIPS provider active" \
    env OPENSSL_CONF="$DIR/openssl.cnf" bash -c 'openssl list -providers | grep -A2 "OpenSSL FIPS Provider" | grep -q "status: active"'

# --- 2. pbx in a scratch virtual environment ----------------------------
step "pbx from $ROOT in $DIR/venv"
if [ ! -x venv/bin/twistd ]; then
    rm -rf venv
    "$PYTHON" -m venv venv
    venv/bin/pip install -q "$ROOT" >"$DIR/pip.log" 2>&1 || { fail "pip install (see $DIR/pip.log)"; exit 1; }
else
    venv/bin/pip install -q --no-deps --force-reinstall "$ROOT" >"$DIR/pip.log" 2>&1 \
        || { fail "pip install (see $DIR/pip.log)"; exit 1; }
fi
PY=$DIR/venv/bin/python
ok "pbx installed ($(venv/bin/pip show cryptography 2>/dev/null | sed -n 's/^Version: /cryptography /p'))"

# --- 3. the two libraries, each alone and both in one process ------------
step "crypto libraries with OPENSSL_CONF=$DIR/openssl.cnf"
probe() {
    # probe CONF ORDER: import the libraries in ORDER (hashlib,cryptography or
    # the reverse) and check each: FIPS flag, SHA-256 known answer, MD5 refused.
    OPENSSL_CONF=$1 "$PY" - "$2" <<'EOF'
import sys
abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
results = {}
def hashlib_side():
    import _hashlib
    try:
        sha = _hashlib.new("sha256", b"abc").hexdigest() == abc
    except ValueError:
        sha = False
    try:
        _hashlib.new("md5"); md5 = "md5 answered"
    except ValueError:
        md5 = "md5 refused"
    results["hashlib"] = (bool(_hashlib.get_fips_mode()), sha, md5)
def cryptography_side():
    from cryptography.hazmat.bindings._rust import openssl
    from cryptography.hazmat.primitives import hashes
    try:
        h = hashes.Hash(hashes.SHA256()); h.update(b"abc"); sha = h.finalize().hex() == abc
    except Exception:
        sha = False
    try:
        hashes.Hash(hashes.MD5()); md5 = "md5 answered"
    except Exception:
        md5 = "md5 refused"
    results["cryptography"] = (bool(openssl.is_fips_enabled()), sha, md5)
for name in sys.argv[1].split(","):
    {"hashlib": hashlib_side, "cryptography": cryptography_side}[name]()
maps = open("/proc/self/maps").read()
copies = sorted({line.rsplit("/", 1)[1] for line in maps.splitlines() if "/modules/fips" in line})
for name, (fips, sha, md5) in results.items():
    print(f"{name}: fips mode {fips}, sha256 {'right' if sha else 'FAILS'}, {md5}")
print("fips modules mapped:", " ".join(copies))
sys.exit(0 if all(f and s and m == "md5 refused" for f, s, m in results.values()) else 1)
EOF
}
for order in hashlib cryptography hashlib,cryptography cryptography,hashlib; do
    if probe "$DIR/openssl.cnf" "$order" >"$DIR/last.out" 2>&1; then
        ok "$order: in FIPS mode, SHA-256 right, MD5 refused ($(tail -1 "$DIR/last.out"))"
    else
        fail "$order"; sed 's/^/      | /' "$DIR/last.out"
    fi
done
for order in hashlib,cryptography cryptography,hashlib; do
    if probe "$DIR/openssl-one-copy.cnf" "$order" >"$DIR/last.out" 2>&1; then
        fail "one fips.so for both ($order): expected the second library to fail"
    else
        ok "one fips.so for both ($order): the second says FIPS mode but cannot hash: $(grep FAILS "$DIR/last.out" | cut -d, -f1,2)"
    fi
done

# --- 4. pbx starts in FIPS mode -----------------------------------------
step "twistd -n pbx with security.fips: true"
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SIP=$(free_port)
TLS=$(free_port)
API=$(free_port)
ADMIN_PASSWORD=Proof-of-Startup-7q2w
PHONE_PASSWORD=Quiet-Harbour-Lamp-k8r3
rm -rf run
mkdir -p run
cat >run/pbx.yml <<EOF
sip:
  domain: pbx.test
  listen: ["udp:$SIP:interface=127.0.0.1", "tcp:$SIP:interface=127.0.0.1", "tls:$TLS:interface=127.0.0.1"]
security: {fips: true}
api:
  listen: "tcp:$API:interface=127.0.0.1"
  admins: [{username: admin, password: "$ADMIN_PASSWORD"}]
extensions:
  "1001": {password: "$PHONE_PASSWORD"}
state_dir: $DIR/run/state
EOF
(cd run && exec env OPENSSL_CONF="$DIR/openssl.cnf" "$DIR/venv/bin/twistd" -n --pidfile= pbx --config pbx.yml) \
    >run/pbx.log 2>&1 &
PBX_PID=$!
for _ in $(seq 1 240); do
    grep -q 'pbx ready' run/pbx.log && break
    kill -0 "$PBX_PID" 2>/dev/null || break
    sleep 0.5
done
if grep -q 'pbx ready' run/pbx.log; then
    ok "pbx ready: $(grep -o 'listeners=.*' run/pbx.log)"
else
    fail "pbx did not reach 'pbx ready'"; sed 's/^/      | /' run/pbx.log | tail -20; exit 1
fi

api() {
    # api PATH: GET it with an admin token (login first).
    "$PY" - "$API" "$ADMIN_PASSWORD" "$1" <<'EOF'
import json, sys, urllib.request
port, password, path = sys.argv[1:4]
base = f"http://127.0.0.1:{port}/api/v1"
login = urllib.request.Request(f"{base}/auth/login", json.dumps({"username": "admin", "password": password}).encode(),
                               {"Content-Type": "application/json"})
token = json.load(urllib.request.urlopen(login, timeout=10))["token"]
answer = urllib.request.urlopen(urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {token}"}), timeout=10)
print(json.dumps(json.load(answer)))
EOF
}
if status=$(api /status 2>&1) && fips=$(echo "$status" | "$PY" -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["fips"], sort_keys=True))'); then
    echo "      fips: $fips"
    check "GET /api/v1/status (admin login: PBKDF2 in FIPS mode): fips enabled, both libraries in FIPS mode and answering" \
        "$PY" -c 'import json, sys; f = json.loads(sys.argv[1]); sys.exit(not (f["enabled"] and all(f[k]["fips"] and f[k].get("sha256", True) for k in ("cryptography", "hashlib"))))' "$fips"
else
    fail "GET /api/v1/status"; echo "$status" | sed 's/^/      | /'
fi

registered() { api /registrations | "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)["registrations"]))'; }
sipsak -E udp -U -C "sip:1001@127.0.0.1:$(free_port)" -u 1001 -x 120 -a "$PHONE_PASSWORD" \
    -s "sip:1001@127.0.0.1:$SIP" -i -vv >run/sipsak.out 2>&1 || true
if grep -q 'algorithm=SHA-256' run/sipsak.out && ! grep -q 'algorithm=MD5' run/sipsak.out \
    && grep -q 'unsupported authentication algorithm' run/sipsak.out && [ "$(registered)" = 0 ]; then
    ok "sipsak (MD5 only): challenged with SHA-256 alone, cannot answer, not registered"
else
    fail "sipsak refused"; sed 's/^/      | /' run/sipsak.out | tail -15
fi
if "$PY" "$ROOT/tests/fips/sha256_register.py" 127.0.0.1 "$SIP" pbx.test 1001 "$PHONE_PASSWORD" >run/sha256.out 2>&1 \
    && [ "$(registered)" = 1 ]; then
    ok "SHA-256 digest phone registered: $(tr '\n' ' ' <run/sha256.out)"
else
    fail "SHA-256 digest phone"; sed 's/^/      | /' run/sha256.out
fi
# TLS from a client outside FIPS mode (the system openssl, no OPENSSL_CONF).
tls() { env -u OPENSSL_CONF openssl s_client -connect "127.0.0.1:$TLS" -brief "$@" </dev/null 2>&1; }
if tls -tls1_3 | grep -q 'Ciphersuite: TLS_AES_256_GCM_SHA384'; then
    ok "TLS 1.3 handshake: $(tls -tls1_3 | grep -e Protocol -e Ciphersuite | tr -s ' \n' ' ')"
else
    fail "TLS 1.3 handshake"; tls -tls1_3 | sed 's/^/      | /' | tail -5
fi
if tls -tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256 | grep -q 'Ciphersuite:'; then
    fail "ChaCha20-Poly1305 (not approved) was accepted"
else
    ok "TLS with ChaCha20-Poly1305 only: refused"
fi
stop_pbx

# --- 5. and refuses to start without it ----------------------------------
step "refusals"
refused() {
    # refused NAME PATTERN ENV...: pbx exits non-zero, printing one line matching PATTERN.
    local name=$1 pattern=$2
    shift 2
    local code=0
    (cd run && env "$@" "$DIR/venv/bin/twistd" -n --pidfile= pbx --config pbx.yml) >run/refused.out 2>&1 || code=$?
    local lines
    lines=$(grep -c . run/refused.out || true)
    if [ "$code" != 0 ] && [ "$lines" = 1 ] && grep -q -e "$pattern" run/refused.out; then
        ok "$name: exit $code: $(cat run/refused.out)"
    else
        fail "$name (exit $code, $lines lines)"; sed 's/^/      | /' run/refused.out | tail -10
    fi
}
refused "OPENSSL_CONF unset" "^pbx: pbx.yml: security.fips: is true, but cryptography's .* and hashlib's .* are not in FIPS mode" \
    -u OPENSSL_CONF
refused "one fips.so for both OpenSSLs" "^pbx: cryptography's .* (in FIPS mode) cannot compute SHA-256" \
    OPENSSL_CONF="$DIR/openssl-one-copy.cnf"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
