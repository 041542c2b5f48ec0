package cliutil

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/upkit/upkit/internal/humanize"
)

// Progress draws one self-overwriting progress line on a terminal. The
// methods of a nil *Progress do nothing.
type Progress struct {
	w      io.Writer
	action string
	mu     sync.Mutex
	last   time.Time
	shown  bool
}

// Terminal returns w as a file when it is a terminal, else nil.
func Terminal(w io.Writer) *os.File {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return f
}

// NewProgress returns a progress line for action ("pushing") on w, or nil
// when w is not a terminal (CI logs get no progress lines).
func NewProgress(w io.Writer, action string) *Progress {
	f := Terminal(w)
	if f == nil {
		return nil
	}
	return &Progress{w: f, action: action}
}

// Update shows done of total bytes, at most ten times a second.
func (p *Progress) Update(done, total int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	fmt.Fprintf(p.w, "\r%s %s / %s (%3.0f%%)\x1b[K", p.action, humanize.Bytes(done), humanize.Bytes(total), pct)
	p.shown = true
}

// Updater returns Update, or nil for a nil line.
func (p *Progress) Updater() func(done, total int64) {
	if p == nil {
		return nil
	}
	return p.Update
}

// Finish ends the progress line.
func (p *Progress) Finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
	}
}

// StepLine draws one self-overwriting line for steps that report their own
// progress ("rootfs: write 3.2 MiB of 64.0 MiB"), at most five updates a
// second, cleared when a step completes.
type StepLine struct {
	w    io.Writer
	last time.Time
}

// NewStepLine returns a step line on w, or nil when w is not a terminal.
func NewStepLine(w io.Writer) *StepLine {
	f := Terminal(w)
	if f == nil {
		return nil
	}
	return &StepLine{w: f}
}

// Show shows what has done of total bytes.
func (l *StepLine) Show(what string, done, total int64) {
	if done != total && time.Since(l.last) < 200*time.Millisecond {
		return
	}
	l.last = time.Now()
	fmt.Fprintf(l.w, "\r\033[K  %s %s of %s", what, humanize.Bytes(done), humanize.Bytes(total))
	if done == total {
		fmt.Fprint(l.w, "\r\033[K")
	}
}
