package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/upkit/upkit/device"
)

// anonymousKeychain gives no credentials: a device without a credentials
// file does not read a docker configuration it does not have.
type anonymousKeychain struct{}

func (anonymousKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.Anonymous, nil
}

// maxOutput bounds what is kept of a command's output for the log.
const maxOutput = 64 << 10

// runLogged runs argv with env added, and returns its output (standard
// output and error, at most maxOutput bytes) as lines.
func runLogged(ctx context.Context, argv []string, env []string) ([]string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out := &limitedBuffer{max: maxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5e9
	err := cmd.Run()
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out.buf.Bytes()))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err != nil {
		return lines, fmt.Errorf("%s: %w", argv[0], err)
	}
	return lines, nil
}

type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// progressLog turns the device library's progress reports into a few log
// lines: one when a phase of a component starts, then at each quarter.
type progressLog struct {
	log  *Logger
	mu   sync.Mutex
	key  string
	next int64
}

func (p *progressLog) report(pr device.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := pr.Component + " " + pr.Phase
	if key != p.key {
		p.key, p.next = key, 0
	}
	if pr.Done < p.next || pr.Total <= 0 {
		return
	}
	verb := map[string]string{device.PhaseFetch: "fetch", device.PhaseWrite: "write", device.PhaseVerify: "verify"}[pr.Phase]
	if verb == "" {
		verb = pr.Phase
	}
	p.log.Infof("%s: %s %s of %s (%d%%)", verb, pr.Component, size(pr.Done), size(pr.Total), pr.Done*100/pr.Total)
	if pr.Done >= pr.Total {
		p.next = 1<<63 - 1
		return
	}
	p.next = min((pr.Done/(pr.Total/4+1)+1)*(pr.Total/4+1), pr.Total)
}

// size writes a byte count for people.
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
