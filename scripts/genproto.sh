#!/usr/bin/env bash
# Generates the Python code for protos/ into stackemu/<pkg>/v1/ (the import path the
# generated modules expect). The output is not committed: `make` runs this whenever a
# proto is newer than its generated code.
set -euo pipefail
cd "$(dirname "$0")/.."
find stackemu -name '*_pb2*.py*' -path '*/v1/*' -delete
.venv/bin/python -m grpc_tools.protoc -I protos \
    --python_out=. --pyi_out=. --grpc_python_out=. \
    $(find protos -name '*.proto' | sort)
