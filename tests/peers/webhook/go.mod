// The end-to-end test's admission webhook (main.go), built by scripts/install-test-tools.
module gantry.dev/tests/peers/webhook

go 1.24.0
