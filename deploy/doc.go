// Package deploy holds the Kubernetes manifests, Dockerfile and kubectl
// plugin; its Go tests check them (no cluster needed).
package deploy
