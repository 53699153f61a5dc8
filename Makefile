# teamdwarm — see README.md for the two commands a newcomer runs.
GO        ?= go
BIN       := bin
# Static binaries: they go into images built FROM scratch.
export CGO_ENABLED ?= 0
FUZZTIME  ?= 10s
COMMANDS  := teamd-shim teamd-warm teamd-state
TOOLS     := teamdsim pause teammgrd teamdwarm-demo teamdwarm-lab

.PHONY: all deps build test unit lab teamd fuzz bench bench-check lint demo clean

all: build

deps:
	@scripts/install-deps.sh

build:
	@mkdir -p $(BIN)
	@set -e; for c in $(COMMANDS); do $(GO) build -trimpath -o $(BIN)/$$c ./cmd/$$c; done
	@set -e; for c in $(TOOLS); do $(GO) build -trimpath -o $(BIN)/$$c ./integration/cmd/$$c; done

# The README's test command: everything, from a fresh clone.
test: deps build lint unit bench-check lab
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5s

# The real-kernel lab: a qemu VM (software emulation) on Debian's kernel,
# real teamd (Debian's, SONiC's) under the shim, Linux bonding as the peer,
# traffic. scripts/lab-deps.sh installs and caches what it needs
# (LAB_CACHE, default /var/cache/teamdwarm-lab; SONIC_LIBTEAM, default
# ../shared/sonic-libteam). LAB_FLAGS are teamdwarm-lab's, e.g.
# "-only cold-start -results lab.json".
lab: build
	@scripts/lab-deps.sh >/dev/null
	$(BIN)/teamdwarm-lab $(LAB_FLAGS) run

# SONiC's teamd with the project's patch series (libteam/README.md): Debian's
# libteam source, SONiC's series from SONIC_LIBTEAM, then libteam/patch,
# built and installed into TEAMD_PREFIX. Cached: a second run does nothing.
TEAMD_PREFIX ?= /var/cache/teamdwarm-lab/teamd-hld
teamd:
	@libteam/build.sh $(TEAMD_PREFIX)

unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m ./...

# Every fuzz target, one after the other, for FUZZTIME each (scripts/fuzz.sh
# says how it treats a failure).
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# Package benchmarks by time; on the OVS bed, by count, the shim's handoff
# (each iteration starts a fresh set of standbys, outside the timer) and
# teamd-warm's whole flow on the live dockerd.
BENCHTIME     ?= 2s
BED_BENCHTIME ?= 3x
bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) $$($(GO) list ./... | grep -v /integration)
	$(GO) test -run '^$$' -bench 'ShimHandoff|WarmUpgrade' -benchtime $(BED_BENCHTIME) -timeout 20m ./integration/

# Every benchmark run briefly, as the tests they also are (each judges what
# it measures: the peer's verdict, no deadline takeover), so that none rots
# between two `make bench`.
bench-check:
	@$(MAKE) --no-print-directory bench BENCHTIME=1x BED_BENCHTIME=2x

STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck
lint:
	@out=$$(gofmt -l .); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	@$(GO) mod tidy -diff >/dev/null 2>&1 || { echo "go.mod/go.sum are not tidy (go mod tidy fixes them):"; $(GO) mod tidy -diff; exit 1; }
	$(GO) vet ./...
	@[ -x $(STATICCHECK) ] || $(GO) install honnef.co/go/tools/cmd/staticcheck@latest
	$(STATICCHECK) ./...

# The README's main job: a warm upgrade of a teamd container, v1 to v2, by
# teamd-warm on this machine's dockerd, eight fast-mode LAGs facing Open
# vSwitch; the supervisor's report and the peer's verdict. It removes what
# it made.
demo: deps build
	$(BIN)/teamdwarm-demo -bin $(BIN) $(DEMO_FLAGS)

clean:
	rm -rf $(BIN)
