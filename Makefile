# kratos-email-gateway: every target a newcomer or CI needs.
GO      ?= go
BIN     := bin
PROTO   := sdk/proto/gateway.proto

.PHONY: all build generate deps test bench lint stack clean

all: build

build:
	$(GO) build -o $(BIN)/gateway ./host/cmd/gateway
	$(GO) build -o $(BIN)/gateway-email-plugin ./plugin/cmd/gateway-email-plugin

# protoc comes from Debian's protobuf-compiler; the Go generators are pinned as
# tools in go.mod, so every machine generates the same code.
generate:
	@command -v protoc >/dev/null || scripts/deps.sh protoc
	$(GO) build -o .cache/tools/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -o .cache/tools/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc
	protoc --proto_path=sdk/proto \
		--plugin=protoc-gen-go=.cache/tools/protoc-gen-go \
		--plugin=protoc-gen-go-grpc=.cache/tools/protoc-gen-go-grpc \
		--go_out=sdk/pb --go_opt=paths=source_relative \
		--go-grpc_out=sdk/pb --go-grpc_opt=paths=source_relative \
		$(PROTO)

# Kratos v1.3.1 and v26.2.0 and Mailpit, built once and cached in .cache/.
deps:
	scripts/deps.sh

# The one command that runs every test: unit, plugin/host over real gRPC and SMTP,
# and the integration journeys against real Kratos and Mailpit.
test:
	scripts/test.sh

# Benchmarks (BENCHMARKS.md): go test -bench over the plugin, its gRPC round
# trip and SMTP sends, then against real Kratos and Mailpit: pass-through,
# latency with 50 ms RTT, the recovery burst on sqlite and PostgreSQL (with
# Kratos's profiles; synchronous, Kratos's SMTP courier and the outbox),
# /courier's answer time and the latency of a login code under a recovery
# burst (synchronous and outbox), gateway reset throughput and the load run.
bench: deps
	scripts/deps.sh postgres
	$(GO) test -run '^$$' -bench . -benchmem ./plugin/password ./plugin/smtpsend ./host/pluginhost
	cd integration && $(GO) test -run '^$$' -bench PassThrough -benchtime 500x -count 1 .
	cd integration && $(GO) test -run '^$$' -bench DeliveryLatency -benchtime 1x -count 1 .
	cd integration && BENCH_PROFILE_DIR=$(CURDIR)/benchmarks/profiles $(GO) test -run '^$$' -bench RecoveryBurst -benchtime 1x -count 1 -timeout 30m .
	cd integration && $(GO) test -run '^$$' -bench CourierAnswer -benchtime 500x -count 1 .
	cd integration && $(GO) test -run '^$$' -bench LoginCodeLatency -benchtime 1x -count 1 -timeout 30m .
	cd integration && $(GO) test -run '^$$' -bench ResetThroughput -benchtime 1x -count 1 -timeout 30m .
	cd integration && $(GO) test -run 'TestLoadPassThrough' -count 1 -v . | grep -E 'load:|ok|FAIL'

# The local stack: Kratos, the gateway host and plugin, Mailpit, all on loopback.
# KRATOS=v1.3.1 runs it on Kratos v1.3.1 instead of v26.2.0; QUEUE=postgres
# adds the durable outbox (and runs Kratos on the same local PostgreSQL).
stack:
	KRATOS_VERSION=$(KRATOS) QUEUE=$(QUEUE) scripts/stack.sh

# gofmt -l exits 0 even when it lists files: fail on any name it prints.
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd integration && $(GO) vet ./...

clean:
	rm -rf $(BIN) .stack
