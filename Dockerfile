# syntax=docker/dockerfile:1
#
# kratos-email-gateway: the gateway host and its email plugin in one image.
#
#   docker build -t kratos-email-gateway .
#   docker run --rm -p 127.0.0.1:8080:8080 \
#     -e GATEWAY_WEBHOOK__API_KEY=... -e GATEWAY_SECRETS__CIPHER=... \
#     -e GATEWAY_SMTP__HOST=smtp.example.com -e GATEWAY_SMTP__AUTHORIZATION_CODE=... \
#     kratos-email-gateway
#
# docker-compose.yml runs it next to Kratos and Mailpit. Both binaries are
# static (CGO_ENABLED=0), so the runtime image needs no libc.

ARG GO_VERSION=1.26

# ---- build -----------------------------------------------------------------
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src

# Modules first, so editing the sources does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

COPY . .
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/gateway ./host/cmd/gateway && \
    go build -trimpath -ldflags="-s -w" -o /out/gateway-email-plugin ./plugin/cmd/gateway-email-plugin

# ---- runtime ---------------------------------------------------------------
# distroless static: CA certificates, tzdata, /tmp (go-plugin's socket), a
# nonroot user (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /out/gateway /usr/local/bin/gateway
COPY --from=build /out/gateway-email-plugin /usr/local/bin/gateway-email-plugin
# The documented config as shipped; mount your own over it (docker-compose.yml
# mounts ./configs at /etc/kratos-email-gateway) and keep secrets in GATEWAY_*.
COPY configs/gateway.yaml /etc/kratos-email-gateway/gateway.yaml

# plugin.path: the host launches the plugin from here (the file's default,
# bin/gateway-email-plugin, is relative to a checkout).
ENV GATEWAY_PLUGIN__PATH=/usr/local/bin/gateway-email-plugin
# Inside a container the listener must take connections from other
# containers; publish the port on 127.0.0.1 (or a private network) only.
ENV GATEWAY_LISTEN=0.0.0.0:8080

USER nonroot:nonroot
EXPOSE 8080

# No HEALTHCHECK: distroless has no shell or curl and `gateway` has no probe
# command. Probe GET /health/ready (and /health/alive) from the orchestrator.

ENTRYPOINT ["gateway"]
CMD ["serve", "--config", "/etc/kratos-email-gateway/gateway.yaml"]
