# StreamCDP container image: the single `cdp` binary, nothing else.
#
#   docker build -t streamcdp/cdp:dev .
#   docker run --rm streamcdp/cdp:dev --help
#
# docker-compose.yml and deploy/kubernetes run every processor from this one
# image with different arguments (`cdp run identity`, `cdp topology apply`, ...).
#
# No BuildKit-only syntax (RUN --mount, heredocs) so that the classic builder
# used by docker-compose 1.29 builds it too.

# ---- build stage -----------------------------------------------------------
FROM golang:1.26-bookworm AS build
WORKDIR /src

# Download modules in their own layer so source edits do not re-download them.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# CGO_ENABLED=0: a static binary that runs on distroless/static. The cgo-only
# local ClickHouse launcher (`cdp local`) is not needed in containers; the
# services come from the compose file or the cluster instead.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/cdp ./cmd/cdp

# ---- run stage -------------------------------------------------------------
# distroless/static: CA certificates and tzdata, no shell, no package manager.
# The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cdp /usr/local/bin/cdp
USER 65532:65532
# 8080: profile API (`cdp run api`); 9100: /healthz, /readyz, /metrics of every processor.
EXPOSE 8080 9100
ENTRYPOINT ["cdp"]
CMD ["--help"]
