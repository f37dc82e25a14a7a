//go:build gokrazy

package main

import (
	"io"
	"os"
)

// console is the box's console (screen and serial port): where someone
// standing at the box looks first, and where gokrazy does not copy the
// programs' output.
func console() io.Writer {
	f, err := os.OpenFile("/dev/console", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return io.Discard
	}
	return f
}
