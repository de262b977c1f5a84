# Wingman Gateway as a container image.
#
#   podman build --format docker -t wingman-gateway .      (or: docker build -t wingman-gateway .)
#   podman run -p 127.0.0.1:3000:3000 -v wingman-state:/var/lib/wingman-gateway wingman-gateway
#
# BASE may be any Debian bookworm image with python3 and python3-venv.
ARG BASE=docker.io/library/python:3.11-slim-bookworm

# The wheel is built from this checkout and installed, with its
# dependencies, into a venv; only the venv reaches the final image.
# twistd's plugin cache is written at build time: the gateway's user cannot
# write to the venv.
FROM ${BASE} AS build
COPY . /src
RUN python3 -m venv /opt/wingman-gateway \
 && /opt/wingman-gateway/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src \
 && /opt/wingman-gateway/bin/pip install --no-cache-dir /wheels/*.whl \
 && /opt/wingman-gateway/bin/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

FROM ${BASE}
COPY --from=build /opt/wingman-gateway /opt/wingman-gateway
RUN groupadd --system --gid 10001 wingman \
 && useradd --system --uid 10001 --gid wingman --home-dir /var/lib/wingman-gateway --shell /usr/sbin/nologin wingman \
 && install -d -o wingman -g wingman -m 0700 /var/lib/wingman-gateway
# The key ring, the SSH host key and every other file the gateway keeps
# live in WINGMAN_HOME, the one volume. The key ring is always loaded, so
# WINGMAN_AUTH=true is enough to require tokens, and tokens made with
# `wingman gateway token` inside the container are accepted at once.
ENV PATH=/opt/wingman-gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    WINGMAN_HOME=/var/lib/wingman-gateway \
    WINGMAN_KEYRING=/var/lib/wingman-gateway/keys.json \
    WINGMAN_LISTEN=tcp:3000
VOLUME /var/lib/wingman-gateway
WORKDIR /var/lib/wingman-gateway
USER wingman
EXPOSE 3000
# twistd handles SIGTERM (even as PID 1): clients get close 1001, then it exits.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["python", "-m", "wingman_gateway.cli.healthcheck"]
ENTRYPOINT ["twistd", "--nodaemon", "--pidfile=", "wingman-gateway"]
