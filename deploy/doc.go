// Package deploy holds no code. It is the home of StreamCDP's deployment
// files (docker-compose.yml at the repository root, Grafana provisioning and
// Kubernetes manifests under this directory) and of the tests in
// deploy_test.go that check those files statically, so that a broken or
// incomplete deployment file fails `go test ./...` on machines without Docker
// or a cluster.
package deploy
