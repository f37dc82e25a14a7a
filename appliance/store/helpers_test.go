package store

import (
	"context"
	"testing"

	bolt "go.etcd.io/bbolt"
)

type bboltTx = bolt.Tx

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}
