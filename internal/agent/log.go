package agent

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// Log levels, as syslog numbers them (and journald reads them from a
// "<N>" prefix).
const (
	LevelError   = 3
	LevelWarning = 4
	LevelInfo    = 6
)

// Logger writes one plain line per event. Under systemd (JOURNAL_STREAM
// set: standard error goes to the journal) each line starts with its
// syslog level, "<3>" to "<6>", which journald turns into the entry's
// priority and strips; elsewhere (a console, a terminal) each line starts
// with "upkit-agent: ". The first word after that names the step, so
// that lines are easy to grep and to follow on a serial console: check,
// fetch, write, verify, installed, activate, reboot, provision, boot,
// adopt, health, commit, rollback, wait, stop, error.
type Logger struct {
	mu      sync.Mutex
	w       io.Writer
	journal bool
}

// NewLogger returns a Logger writing to w; journal selects the "<N>"
// prefixes.
func NewLogger(w io.Writer, journal bool) *Logger { return &Logger{w: w, journal: journal} }

// StderrLogger writes to standard error, with level prefixes when systemd
// connected it to the journal.
func StderrLogger() *Logger { return NewLogger(os.Stderr, os.Getenv("JOURNAL_STREAM") != "") }

func (l *Logger) write(level int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	// One event, one line: a multi-line message (an error quoting a
	// tool's output) is joined.
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.journal {
		fmt.Fprintf(l.w, "<%d>%s\n", level, msg)
		return
	}
	fmt.Fprintf(l.w, "upkit-agent: %s\n", msg)
}

// Infof logs an event.
func (l *Logger) Infof(format string, args ...any) { l.write(LevelInfo, format, args...) }

// Warnf logs something that needs attention but did not stop the agent.
func (l *Logger) Warnf(format string, args ...any) { l.write(LevelWarning, format, args...) }

// Errorf logs a failure.
func (l *Logger) Errorf(format string, args ...any) { l.write(LevelError, format, args...) }
