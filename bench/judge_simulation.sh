#!/usr/bin/env bash
# The README's judge table: the sequential judge against the threshold rule on the same
# 10,000 simulated canaries per cell (tests/judge_simulation.rs, release build, seeded).
# JUDGE_SIMULATION_CANARIES=N changes the number of canaries.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test judge_simulation -- --nocapture 2>&1 | grep '^|'
