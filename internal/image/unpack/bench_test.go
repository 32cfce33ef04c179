package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// benchLayer is a layer shaped like a large image's: about 15k entries
// (600 directories, 13k files of mixed sizes, 1000 symbolic links, 400
// hard links), about 220 MB of file contents. Built once per test binary.
var benchLayer = sync.OnceValues(func() ([]byte, int) {
	rng := rand.New(rand.NewPCG(1, 2))
	blob := make([]byte, 4<<20)
	for i := range blob {
		blob[i] = byte(rng.Uint32())
	}
	size := func() int {
		switch n := rng.IntN(1000); {
		case n < 770:
			return rng.IntN(4 << 10)
		case n < 978:
			return 4<<10 + rng.IntN(60<<10)
		case n < 998:
			return 64<<10 + rng.IntN(448<<10)
		default:
			return 1<<20 + rng.IntN(1<<20)
		}
	}
	var buf bytes.Buffer
	buf.Grow(260 << 20)
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	write := func(hdr *tar.Header, data []byte) {
		hdr.ModTime, hdr.Uname, hdr.Gname = mtime, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			panic(err)
		}
		if _, err := tw.Write(data); err != nil {
			panic(err)
		}
	}
	entries := 0
	var files []string
	for top := range 30 {
		topDir := fmt.Sprintf("usr/lib%02d", top)
		write(&tar.Header{Typeflag: tar.TypeDir, Name: topDir + "/", Mode: 0o755}, nil)
		entries++
		for sub := range 19 {
			d := fmt.Sprintf("%s/pkg%02d", topDir, sub)
			write(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}, nil)
			entries++
			for f := range 23 {
				name := fmt.Sprintf("%s/file%03d.so", d, f)
				n := size()
				off := rng.IntN(len(blob) - n + 1)
				write(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(n)}, blob[off:off+n])
				files = append(files, name)
				entries++
			}
			for l := range 2 {
				write(&tar.Header{Typeflag: tar.TypeSymlink, Name: fmt.Sprintf("%s/link%d", d, l), Linkname: fmt.Sprintf("file%03d.so", l)}, nil)
				entries++
			}
			if sub%3 == 0 {
				for h := range 2 {
					write(&tar.Header{Typeflag: tar.TypeLink, Name: fmt.Sprintf("%s/hard%d", d, h), Linkname: files[rng.IntN(len(files))]}, nil)
					entries++
				}
			}
		}
		write(&tar.Header{Typeflag: tar.TypeDir, Name: topDir + "/extra/", Mode: 0o755}, nil)
		entries++
	}
	for i := 0; entries < 15000; i++ {
		write(&tar.Header{Typeflag: tar.TypeSymlink, Name: fmt.Sprintf("usr/bin/tool%04d", i), Linkname: "../lib00/pkg00/file000.so"}, nil)
		entries++
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes(), entries
})

// BenchmarkApply applies benchLayer to an empty root in $TMPDIR. Reported
// besides MB/s (of tar stream): entries/s and the process's user and
// system CPU time per layer. Most of the system time is the file
// system's: compare TMPDIR on a tmpfs with TMPDIR on the target file
// system. The roots are removed only at the end: ext4 allocates inodes
// much more slowly (minutes long) after many files were deleted, so
// measure on ext4 when no large tree was removed in the last minutes.
func BenchmarkApply(b *testing.B) {
	data, entries := benchLayer()
	base := b.TempDir()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var user, sys time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root := filepath.Join(base, strconv.Itoa(i))
		if err := os.Mkdir(root, 0o755); err != nil {
			b.Fatal(err)
		}
		u0, s0 := cpuTime()
		b.StartTimer()
		u, err := New(root, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := u.Apply(context.Background(), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		if err := u.Close(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		u1, s1 := cpuTime()
		user, sys = user+u1-u0, sys+s1-s0
		b.StartTimer()
	}
	b.ReportMetric(float64(entries)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(user.Milliseconds())/float64(b.N), "user-ms/op")
	b.ReportMetric(float64(sys.Milliseconds())/float64(b.N), "sys-ms/op")
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
