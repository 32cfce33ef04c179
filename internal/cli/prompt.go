package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// prompter asks questions on the terminal. Answers are read line by line
// from the command's standard input; a cancelled context (Ctrl-C) ends the
// wait at once.
type prompter struct {
	in  *bufio.Reader
	out io.Writer
}

// askFunc asks a question and returns the answer line without surrounding
// blanks; (*prompter).ask is one.
type askFunc func(ctx context.Context, question string) (string, error)

// prompter returns the run's one prompter, on f's streams. There is one per
// run so that no answer typed ahead is lost in another reader's buffer.
func (f *Factory) prompter() *prompter {
	if f.prompt == nil {
		f.prompt = newPrompter(f.IO.In, f.IO.ErrOut)
	}
	return f.prompt
}

// newPrompter reads answers from in and writes questions to out.
func newPrompter(in io.Reader, out io.Writer) *prompter {
	return &prompter{in: bufio.NewReader(in), out: out}
}

// errNoAnswer is returned when standard input ends before an answer.
var errNoAnswer = errors.New("no answer: standard input ended")

// ask prints question and returns the answer line without surrounding
// blanks.
func (p *prompter) ask(ctx context.Context, question string) (string, error) {
	fmt.Fprint(p.out, question)
	type line struct {
		s   string
		err error
	}
	ch := make(chan line, 1)
	go func() {
		s, err := p.in.ReadString('\n')
		if err == io.EOF && s != "" {
			err = nil
		}
		ch <- line{s, err}
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(p.out)
		return "", ctx.Err()
	case l := <-ch:
		if errors.Is(l.err, io.EOF) {
			fmt.Fprintln(p.out)
			return "", errNoAnswer
		}
		return strings.TrimSpace(l.s), l.err
	}
}

// confirm asks a yes/no question; the default is no.
func (p *prompter) confirm(ctx context.Context, question string) (bool, error) {
	for {
		a, err := p.ask(ctx, question+" [y/N] ")
		if err != nil {
			return false, err
		}
		switch strings.ToLower(a) {
		case "y", "yes":
			return true, nil
		case "", "n", "no":
			return false, nil
		}
		fmt.Fprintln(p.out, "Please answer y or n.")
	}
}
