//go:build !gokrazy

package main

// Off a gokrazy box: state next to the working directory, portal on
// loopback.
const (
	defaultData = "./var"
	defaultHTTP = "127.0.0.1:8443"
)
