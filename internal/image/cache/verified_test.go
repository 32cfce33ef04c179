package cache

import (
	"errors"
	"os"
	"testing"
)

func TestCreateVerifiedChecksSizeOnly(t *testing.T) {
	c := newCache(t)
	data := []byte("verified by the source")
	d := digestOf(data)

	w, err := c.CreateVerified(d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(w.TempName()); err != nil {
		t.Errorf("TempName %s: %v", w.TempName(), err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if !c.Stat(d, int64(len(data))) {
		t.Error("committed blob not present")
	}

	short, err := c.CreateVerified(digestOf([]byte("other")), 100)
	if err != nil {
		t.Fatal(err)
	}
	short.Write([]byte("other"))
	if err := short.Commit(); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("Commit of a short blob = %v, want ErrSizeMismatch", err)
	}
	if tmp := tempFiles(t, c); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
}
