// Command growperm runs once at boot on a psigate box: when the image
// was written to a disk larger than itself, it moves the backup GPT to
// the disk's end, extends partition 4 to fill the disk, tells the kernel,
// and grows the mounted ext4 /perm online. On a disk that is already
// filled it does nothing. Then it asks gokrazy not to start it again.
package main

import (
	"fmt"
	"log/slog"
	"os"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	msg, err := grow(realSystem{})
	if err != nil {
		log.Error("growing /perm", "err", err)
	} else {
		log.Info(msg)
	}
	if err == nil && msg != nothingToDo {
		if c, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
			fmt.Fprintf(c, "growperm: %s\n", msg)
			c.Close()
		}
	}
	// 125: gokrazy does not supervise (restart) the program any more.
	os.Exit(125)
}
