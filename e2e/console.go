package e2e

import (
	"io"
	"os"
	"regexp"
	"strings"
)

// MarkerPrefix starts every line the guest's init and the boot scripts
// write for the host: "UPKIT-E2E EVENT key=value ...".
const MarkerPrefix = "UPKIT-E2E "

// MaxLine bounds one console line: the rest of a longer line is dropped.
const MaxLine = 64 << 10

// Marker is one report from the device on its serial console.
type Marker struct {
	// Event is the first word: grub, uboot, init, boot, ready, out, done,
	// rebooting, powering-off.
	Event string
	// Fields holds the key=value words (the first of a repeated key wins).
	Fields map[string]string
	// Text is everything after the event word, trimmed; for "out" lines,
	// the command's output line after "| ".
	Text string
}

// Field returns the value of key, or "" when the marker has none.
func (m Marker) Field(key string) string { return m.Fields[key] }

// Terminal control sequences (OVMF and GRUB draw on the serial console as
// on a screen): CSI sequences, including OVMF's "ESC [=3h", and charset
// selections.
var escapes = regexp.MustCompile(`\x1b\[[0-9;=?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78c]`)

// CleanLine returns line without terminal control sequences, carriage
// returns and other control characters but tabs, bounded to MaxLine bytes.
func CleanLine(line string) string {
	if len(line) > MaxLine {
		line = line[:MaxLine]
	}
	line = escapes.ReplaceAllString(line, "")
	return strings.Map(func(r rune) rune {
		if r == '\t' || r >= ' ' && r != 0x7f {
			return r
		}
		return -1
	}, line)
}

// ParseMarker finds a marker in one console line, wherever it starts (a
// marker may follow a bootloader's screen-clearing sequence on the same
// line). It returns false for lines without one or without an event.
func ParseMarker(line string) (Marker, bool) {
	line = CleanLine(line)
	i := strings.Index(line, MarkerPrefix)
	if i < 0 {
		return Marker{}, false
	}
	rest := strings.TrimSpace(line[i+len(MarkerPrefix):])
	event, text := rest, ""
	if i := strings.IndexAny(rest, " \t"); i >= 0 {
		event, text = rest[:i], rest[i+1:]
	}
	if event == "" || strings.Contains(event, "=") {
		return Marker{}, false
	}
	m := Marker{Event: event, Fields: map[string]string{}, Text: strings.TrimSpace(text)}
	words := m.Text
	if event == "out" {
		// "out id=N | LINE": only the words before "|" are fields.
		head, out, found := strings.Cut(words, "|")
		if found {
			words = head
			m.Text = strings.TrimPrefix(out, " ")
		}
	}
	for _, w := range splitWords(words) {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if _, dup := m.Fields[k]; !dup {
			m.Fields[k] = v
		}
	}
	return m, true
}

// splitWords splits s at spaces and tabs, except inside a value in
// double quotes (a quote right after "="), so that order="A B" stays one
// word.
func splitWords(s string) []string {
	var words []string
	start, quoted := -1, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' && (quoted || i > 0 && s[i-1] == '=' && start >= 0):
			quoted = !quoted
		case (c == ' ' || c == '\t') && !quoted:
			if start >= 0 {
				words = append(words, s[start:i])
				start = -1
			}
		case start < 0:
			start = i
		}
	}
	if start >= 0 {
		words = append(words, s[start:])
	}
	return words
}

// tailFile returns the last n lines of the file at path (of its last
// 256 KiB), or why it cannot.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	const most = 256 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > most {
		f.Seek(fi.Size()-most, io.SeekStart)
	}
	b, err := io.ReadAll(io.LimitReader(f, most))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
