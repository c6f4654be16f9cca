//go:build !linux

package main

func runHeldChildIfAsked() {}
