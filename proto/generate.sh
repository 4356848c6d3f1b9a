#!/usr/bin/env bash
# Generate the Python modules (and their type stubs) for every .proto under proto/.
# Run by `make install`; the generated files are not committed.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-../.venv/bin/python}
mapfile -t protos < <(find flotilla_proto -name '*.proto' | sort)
"$python" -m grpc_tools.protoc -I . \
  --python_out=. --grpc_python_out=. \
  --mypy_out=. --mypy_grpc_out=. \
  --plugin=protoc-gen-mypy="$(dirname "$python")/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$python")/protoc-gen-mypy_grpc" \
  "${protos[@]}"
# Every folder is a package, so `flotilla_proto.ledger.v1.ledger_pb2` imports cleanly.
find flotilla_proto -type d -exec sh -c 'touch "$1/__init__.py"' _ {} \;
echo "generated Python for ${#protos[@]} proto file(s)"
