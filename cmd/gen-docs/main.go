// Command gen-docs writes mbctl's manual pages (see internal/cli/manual):
//
//	go run ./cmd/gen-docs -man-dir bin/man -version v0.3.0
//
// The pages' date is SOURCE_DATE_EPOCH (the commit's time, as `make man`
// sets it), else now. It is a build tool, not part of the package.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/man8s/mbctl/internal/cli"
	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/cli/manual"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "gen-docs: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("gen-docs", flag.ContinueOnError)
	dir := fs.String("man-dir", "", "directory to write the manual pages into (created)")
	version := fs.String("version", "devel", "mbctl's version for the pages' footer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return fmt.Errorf("usage: gen-docs -man-dir DIR [-version V]")
	}
	date := time.Now()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q is not seconds since 1970: %w", s, err)
		}
		date = time.Unix(sec, 0).UTC()
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", *dir, err)
	}
	root := cli.NewRootCmd(&cli.Factory{IO: iostreams.System(), Getenv: func(string) string { return "" }})
	pages, err := manual.Write(*dir, root, manual.Options{Date: date, Version: *version})
	if err != nil {
		return err
	}
	fmt.Printf("gen-docs: %d manual pages in %s\n", len(pages), *dir)
	return nil
}
