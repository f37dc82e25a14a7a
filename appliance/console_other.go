//go:build !gokrazy

package main

import "io"

// console is the box's console; off a gokrazy box the terminal already
// shows the program's output.
func console() io.Writer { return io.Discard }
