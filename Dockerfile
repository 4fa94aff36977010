# One image for every service of a host (NIC, IP, UDP, socket) and for the CLI:
# `python -m services.<layer>` picks the layer, STACKEMU_* variables configure it
# (docker-compose.yml; services/*/__main__.py name them).

# Build: the Python dependencies into a venv, the protobuf code generated from protos/.
FROM python:3.11-slim AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/stackemu
# The dependencies first (pyproject.toml alone), so a change to the code reuses this layer.
# grpcio-tools (protoc) goes into the build stage's own Python, never into the venv.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
open('runtime.txt', 'w').write('\n'.join(d for d in deps if not d.startswith('grpcio-tools')) + '\n'); \
open('build.txt', 'w').write('\n'.join(d for d in deps if d.startswith(('grpcio-tools', 'protobuf'))) + '\n')" \
 && /opt/stackemu/bin/pip install -r runtime.txt \
 && pip install -r build.txt
COPY protos/ protos/
COPY services/ services/
COPY stackemu/ stackemu/
COPY compose/healthcheck.py /opt/stackemu/bin/stackemu-healthcheck
# The host secrets' maker (docker-compose.yml's `secrets`, the Kubernetes init container).
COPY compose/hostsecret.py /opt/stackemu/bin/stackemu-hostsecret
# The stack file of the compose services by name, for a CLI run inside the network (the demo).
COPY compose/stack-internal.json /opt/stackemu/share/stack-internal.json
# scripts/genproto.sh's protoc command, with this stage's Python.
RUN find stackemu -name '*_pb2*.py*' -path '*/v1/*' -delete \
 && find protos -name '*.proto' -print0 | sort -z \
  | xargs -0 python -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. \
 && /opt/stackemu/bin/pip install --no-deps . \
 && chmod 0755 /opt/stackemu/bin/stackemu-healthcheck /opt/stackemu/bin/stackemu-hostsecret

# Run: the venv alone (no compiler, no protoc, no sources), as an unprivileged user.
FROM python:3.11-slim
LABEL org.opencontainers.image.title="stackemu" \
      org.opencontainers.image.description="The Linux UDP/IPv4 stack emulated as four gRPC services per host"
RUN groupadd --system --gid 10001 stackemu \
 && useradd --system --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin stackemu
COPY --from=build /opt/stackemu /opt/stackemu
ENV PATH=/opt/stackemu/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/stackemu
# The gRPC health service (grpc.health.v1) of the service on STACKEMU_LISTEN's port.
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 CMD ["stackemu-healthcheck"]
CMD ["stackemu", "--help"]
