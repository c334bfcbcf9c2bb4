//go:build tools

// Package loadgen pins the load generator of bench/proxy_overhead.sh (vegeta: constant-rate
// HTTP load with latency percentiles), built by bench/loadgen/build.sh.
package loadgen

import _ "github.com/tsenart/vegeta/v12"
