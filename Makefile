# Campanile — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Root installs directly; others through sudo when it exists.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build demo test test-deps lint bench bench-deps fuzz cross-check cross-test msi release-size clean

all: build

build:
	$(CARGO) build --workspace --bins

## Build, make a demo PKI and configs under ./demo, run collector + one agent (Ctrl-C stops both).
demo:
	./scripts/demo.sh

## Run every test; installs the test peers if missing: Debian's prometheus
## (promtool + server), nftables and iproute2 (network-namespace probe tests).
## Tests that cannot run here (root-only ones without root) say so and are
## listed at the end as skipped; CAMPANILE_SKIPPED_LOG names the list's file.
test: test-deps
	@log=$${CAMPANILE_SKIPPED_LOG:-$$(mktemp)}; : > "$$log"; \
	CAMPANILE_SKIPPED_LOG="$$log" $(CARGO) test --workspace --locked; rc=$$?; \
	if [ -s "$$log" ]; then echo "skipped, not passed ($$(sort -u "$$log" | wc -l)):"; sort -u "$$log" | sed 's/^/  /'; fi; \
	[ -n "$${CAMPANILE_SKIPPED_LOG:-}" ] || rm -f "$$log"; exit $$rc

test-deps:
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null \
		|| ! command -v prometheus-alertmanager >/dev/null \
		|| ! command -v nft >/dev/null || ! command -v ip >/dev/null || ! command -v setpriv >/dev/null \
		|| ! command -v openssl >/dev/null; then \
		echo "installing test peers: prometheus (promtool and server), prometheus-alertmanager, nftables, iproute2, util-linux, openssl"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			prometheus prometheus-alertmanager nftables iproute2 util-linux openssl; \
	fi

## fmt, clippy, and no two modules of a crate importing each other
## (tools/module-loops, over every workspace member); then fmt and clippy
## of the fuzz targets, so they keep building between `make fuzz` runs.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) run --quiet --locked -p campanile-module-loops
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --locked -- -D warnings

## Every benchmark, written by one harness to docs/benchmarks/make-bench.md:
## the agent beside Debian's node_exporter, ingest beside a bare tonic
## server, fleet capacity up to 50,000 simulated agents, a 30-minute soak,
## then the agent's own cost, territory scale and delivery (about an hour;
## run as root for the open-files limit).
bench: bench-deps
	$(CARGO) build --release --workspace --bins --locked
	$(CARGO) build --profile agent -p campanile-agent --locked
	target/release/benchmarks --out docs/benchmarks/make-bench.md

## Every fuzz target (fuzz/: the request path, the register and its
## importers, both config parsers) for FUZZ_SECS seconds each (600), two at
## a time; installs cargo-fuzz if missing. Not part of `make test`.
fuzz:
	./scripts/fuzz.sh

bench-deps:
	@if ! command -v prometheus-node-exporter >/dev/null || ! command -v strip >/dev/null; then \
		echo "installing benchmark peers: prometheus-node-exporter, binutils"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			prometheus-node-exporter binutils; \
	fi

## Type-check the agent for Windows, ARM musl and 32-bit MIPS routers
## (scripts/cross-check.sh; installs Debian's rustc-web, its std sources,
## MinGW and zig on first use).
cross-check:
	bash scripts/cross-check.sh setup check
	bash scripts/cross-check.sh check x86_64-pc-windows-gnu aarch64-unknown-linux-musl mips-unknown-linux-musl -- -p campanile-agent

## The agent's library tests built for Windows and run under Wine (the
## enrolled key's ACL among them); installs Wine on first use.
cross-test:
	bash scripts/cross-check.sh setup run
	bash scripts/cross-check.sh test x86_64-pc-windows-gnu -- -p campanile-agent --lib

## The Windows agent as it ships and its MSI, built on Linux with wixl:
## dist/campanile-agent-VERSION-x64.msi (scripts/msi.sh; installs wixl,
## msitools and the cross toolchain on first use).
msi:
	bash scripts/cross-check.sh setup run
	bash scripts/msi.sh dist

## Stripped size of the agent as it ships (profile `agent`: every crate
## it links built for size).
release-size:
	$(CARGO) build --profile agent -p campanile-agent --locked
	@ls -l target/agent/campanile-agent | awk '{print "campanile-agent (profile agent):", $$5, "bytes"}'

clean:
	$(CARGO) clean
	rm -rf demo
