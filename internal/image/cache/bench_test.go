package cache

import (
	"bytes"
	"crypto/rand"
	"os"
	"testing"
)

// BenchmarkCommit writes and commits a 100 MB blob, with the fdatasync
// before the rename (what the cache does) and without it. ns/op and MB/s
// cover hashing, writing and committing.
func BenchmarkCommit(b *testing.B) {
	data := make([]byte, 100<<20)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	d := digestOf(data)
	for _, bc := range []struct {
		name   string
		noSync bool
	}{{"fdatasync", false}, {"nosync", true}} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			c.noSync = bc.noSync
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				w, err := c.Create(d, int64(len(data)))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := bytes.NewReader(data).WriteTo(w); err != nil {
					b.Fatal(err)
				}
				if err := w.Commit(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := os.Remove(c.Path(d)); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
