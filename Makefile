# psigate: the entry points a newcomer types.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
PKGS    := ./...

.PHONY: bench-image image image-amd64 image-rpi qemu push run demo build test test-short lint bench bench-store bench-media bench-register bench-calls clean

## run: build and start the appliance with data under ./var; prints the portal URL
run: build
	./bin/appliance -data ./var -http 127.0.0.1:8443

## demo: see it work, on loopback only: the appliance (prints the portal URL and the admin password), Kamailio as the PBX, a baresip Zoom client (TLS, SRTP) calling a baresip phone on the PBX; shows the call in the active calls and the history, then stops everything. DEMO_FLAGS='-hold 60s' keeps the call up longer. Needs kamailio and baresip-core
demo: build
	$(GO) build -o bin/demo ./sbc/demo
	./bin/demo -appliance ./bin/appliance $(DEMO_FLAGS)

## build: compile the appliance program into bin/
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/appliance ./appliance

## image: gokrazy images for x86-64 PCs and the Raspberry Pi 4/5 into out/<target>/: disk.img to flash, and boot.img, root.img, mbr.img and a signed update bundle (.psig). The gokrazy password and the update signing key are kept in ~/.config/psigate, or SECRETS=<folder> (made on the first build: keep them). Needs squashfs-tools and systemd-boot-efi
IMAGE_VERSION ?= $(VERSION)
IMAGE_SIZE ?= 2G
SECRETS ?=
SECRETS_FLAG = $(if $(SECRETS),-secrets $(SECRETS))
image: image-amd64 image-rpi

image-amd64:
	$(GO) run ./gokrazy/cmd/psigate-image -config gokrazy/instances/amd64/config.json -out out/amd64 -version $(IMAGE_VERSION) -size $(IMAGE_SIZE) $(SECRETS_FLAG)

image-rpi:
	$(GO) run ./gokrazy/cmd/psigate-image -config gokrazy/instances/rpi/config.json -out out/rpi -version $(IMAGE_VERSION) -size $(IMAGE_SIZE) $(SECRETS_FLAG)

## qemu: boot out/amd64/disk.img in QEMU through UEFI (a copy: out/amd64/qemu.img keeps its state); portal at https://127.0.0.1:8443/, gokrazy's page at http://127.0.0.1:8080/, SIP TLS on 127.0.0.1:65061. Needs qemu-system-x86 and ovmf
qemu:
	$(GO) run ./gokrazy/cmd/psigate-qemu -disk out/amd64/disk.img

## push: send an update bundle to a box on the LAN through gokrazy's update protocol: make push HOST=192.168.1.20 BUNDLE=out/amd64/psigate-<version>-amd64.psig
push:
	$(GO) run ./gokrazy/cmd/psigate-push -host $(HOST):8080 -password-file $(dir $(BUNDLE))gokr-pw.txt -key $(dir $(BUNDLE))update-signing.pub $(BUNDLE)

## test: every test, with the race detector
test:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

## test-short: the fast tests only (skips the kill -9 crash loop)
test-short:
	$(GO) test -short -count=1 $(PKGS)

## lint: formatting and vet
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## bench: every benchmark, one "bench <name> <value> <unit>" line per figure
bench: bench-store bench-media bench-register bench-calls bench-image

## bench-store: configuration apply against a bare bbolt transaction of the same size
bench-store:
	@$(GO) test -run '^$$' -bench . -benchmem -count=1 ./appliance/store/ | $(GO) run ./appliance/benchfmt

## bench-media: relay throughput on one core (GOMAXPROCS=1) and calls carried by one pinned core, each next to a raw Go UDP relay; allocations; memory per call
bench-media:
	@{ $(GO) test -run '^$$' -bench 'Relay|Memory' -cpu 1 -benchtime 2s -count=1 ./sbc/media/relay/ && \
	   $(GO) test -run '^$$' -bench 'CallCapacity' -benchtime 1x -count=1 -timeout 10m ./sbc/media/relay/; } | $(GO) run ./appliance/benchfmt

## bench-register: registrations a second through the SBC (SIPp over UDP, digest auth, to Kamailio over TCP) next to SIPp straight to Kamailio; memory per binding with its own TCP connection; TLS subscribers held by the real appliance (PSIGATE_TLS_SUBSCRIBERS, default 5000, one TLS connection each): memory per subscriber, per TLS connection and per binding, registrations a second, subscribers projected for 1 GiB. Needs sipp (sip-tester) and kamailio
bench-register:
	@{ PSIGATE_REQUIRE_PEERS=1 $(GO) test -run '^$$' -bench 'RegisterThroughSBC|BindingMemory' -benchtime 1x -count=1 -timeout 10m ./sbc/ && \
	   PSIGATE_REQUIRE_PEERS=1 $(GO) test -run '^$$' -bench 'TLSSubscribers' -benchtime 1x -count=1 -timeout 10m ./appliance/; } | $(GO) run ./appliance/benchfmt

## bench-image: the amd64 image built with a warm cache next to go build of its programs alone (the builder's share), its sizes, and QEMU start to the portal answering (kernel loaded directly, software emulation) next to QEMU start to gokrazy's own page answering (the appliance's share). Needs qemu-system-x86, squashfs-tools, systemd-boot-efi
bench-image:
	@$(GO) test -run '^$$' -bench '^BenchmarkImage' -benchtime 3x -count=1 -timeout 20m ./gokrazy/vm/ | $(GO) run ./appliance/benchfmt

## bench-calls: calls a second through the SBC (SIPp caller over UDP, SIPp callee behind the core realm over UDP and over TCP; INVITE, 180, 200, ACK, BYE, no media): the knee, the highest rate with under 0.1% of calls failed, and CPU time per call, and the highest rate without retransmissions (clean-calls/s), each next to Kamailio as a stateful proxy with topology hiding (the _ratio lines: SBC knee over Kamailio's); SIPp straight to SIPp, the load generator's own knee; memory per established call and per call just ended. Needs sipp (sip-tester) and kamailio; the same go test without benchfmt shows every step. Then calls with media (SIPp plays G.711 RTP, the callee echoes it): concurrent calls carried with under 0.1% of packets lost, next to SIPp straight to SIPp, and memory per call with media
bench-calls:
	@{ PSIGATE_REQUIRE_PEERS=1 $(GO) test -run '^$$' -bench '^BenchmarkCalls_' -benchtime 1x -count=1 -timeout 25m ./sbc/ && \
	   PSIGATE_REQUIRE_PEERS=1 $(GO) test -run '^$$' -bench '^BenchmarkCallsMedia' -benchtime 1x -count=1 -timeout 15m ./sbc/; } | $(GO) run ./appliance/benchfmt

clean:
	rm -rf bin out
