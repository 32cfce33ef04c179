// Command slowdownload is the app of the e2e drain test: an HTTP server
// that stops as nginx does on SIGQUIT. GET /big answers with SIZE bytes;
// on SIGQUIT the server stops accepting, finishes the responses it is
// sending, closes their connections and exits 0. The last bytes of a
// response are then in the kernel's socket buffers, not yet delivered.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// pattern is what the body repeats; the client can check every byte.
const pattern = "0123456789abcdefghijklmnopqrstuvwxyz\n"

func main() {
	size, err := strconv.ParseInt(os.Getenv("SIZE"), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "slowdownload: SIZE:", err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		n, err := io.CopyN(w, &repeat{}, size)
		if err == nil {
			err = http.NewResponseController(w).Flush()
		}
		// An access log line as nginx writes one, once the kernel has
		// taken the whole response: status and bytes sent.
		fmt.Printf("slowdownload: %s %s 200 %d %v\n", r.Method, r.URL.Path, n, err)
	})
	ln, err := net.Listen("tcp", "[::]:80")
	if err != nil {
		fmt.Fprintln(os.Stderr, "slowdownload:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: mux}
	quit := make(chan os.Signal, 1)
	signal.Notify(quit, syscall.SIGQUIT)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Println("slowdownload: listening on [::]:80")
	select {
	case err := <-done:
		fmt.Fprintln(os.Stderr, "slowdownload:", err)
		os.Exit(1)
	case <-quit:
	}
	fmt.Println("slowdownload: SIGQUIT: finishing the responses in progress")
	if err := srv.Shutdown(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "slowdownload:", err)
		os.Exit(1)
	}
	fmt.Println("slowdownload: gracefully shut down")
}

// repeat reads pattern over and over.
type repeat struct{ off int }

func (r *repeat) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = pattern[r.off]
		r.off = (r.off + 1) % len(pattern)
	}
	return len(p), nil
}
