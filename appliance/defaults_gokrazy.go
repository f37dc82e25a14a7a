//go:build gokrazy

package main

// On a gokrazy box (built with -tags gokrazy): state on the writable
// /perm partition, portal on every address.
const (
	defaultData = "/perm/psigate"
	defaultHTTP = ":443"
)
