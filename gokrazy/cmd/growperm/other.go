//go:build !linux

package main

import (
	"errors"
	"io"

	"github.com/psigate/psigate/gokrazy/disk"
)

// realSystem: growperm only runs on a gokrazy box.
type realSystem struct{}

var errNotLinux = errors.New("growperm runs on a gokrazy box (Linux)")

func (realSystem) Mounts() (io.Reader, error)     { return nil, errNotLinux }
func (realSystem) Resolve(string) (string, error) { return "", errNotLinux }
func (realSystem) Sectors(string) (uint64, error) { return 0, errNotLinux }
func (realSystem) ResizeFS(string, int64) error   { return errNotLinux }
func (realSystem) Open(string) (disk.ReadWriterAt, io.Closer, error) {
	return nil, nil, errNotLinux
}
func (realSystem) ResizePartition(disk.ReadWriterAt, int, int64, int64) error { return errNotLinux }
