# pushercm container image. Build stage: the same `make build` as a laptop
# (static, CGO_ENABLED=0, version stamped). Run stage: distroless static,
# which holds CA certificates (for the pusher driver's HTTPS), /etc/passwd
# with the nonroot user and tzdata, and nothing else: no shell, no curl —
# the HEALTHCHECK runs the binary's own `pushercm healthcheck`.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) -t pushercm .
#
# GO_VERSION follows the go directive of go.mod (test/deploy checks it).
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# go mod download reads the go.mod of every module go.mod replaces with a
# directory: the client and the generated API, and nbio's copy
# (third_party/README.md).
COPY go.mod go.sum ./
COPY client/go.mod client/go.sum ./client/
COPY gen/go.mod gen/go.sum ./gen/
COPY third_party/nbio/go.mod third_party/nbio/go.sum ./third_party/nbio/
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG BUILD_DATE=unknown
RUN make build BIN=/out/pushercm VERSION=${VERSION} COMMIT=${COMMIT} BUILD_DATE=${BUILD_DATE}

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pushercm /pushercm
# 65532 is distroless's nonroot user; numeric so that Kubernetes'
# runAsNonRoot can verify it.
USER 65532:65532
# gRPC, realtime (WebSocket, Pusher HTTP API, auth endpoints), ops
# (/metrics, /healthz, /readyz).
EXPOSE 50051 6001 9464
ENV PUSHERCM_GRPC_ADDR=:50051 \
    PUSHERCM_HTTP_ADDR=:6001 \
    PUSHERCM_OPS_ADDR=:9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/pushercm", "healthcheck"]
ENTRYPOINT ["/pushercm"]
CMD ["serve"]
