package tpmcounter_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/upkit/upkit/device/tpmcounter"
	"github.com/upkit/upkit/internal/testutil/swtpmtest"
)

const (
	idxRootfs = 0x01800100
	idxApp    = 0x01800101
)

func newCounters(t *testing.T, tpm *swtpmtest.TPM, auth string) *tpmcounter.Counters {
	t.Helper()
	c, err := tpmcounter.New(tpmcounter.Config{
		Indices:   map[string]uint32{"rootfs": idxRootfs, "app": idxApp},
		Open:      tpmcounter.OpenSocket(tpm.Socket()),
		OwnerAuth: []byte(auth),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// nvRead reads an index from outside, with tpm2_nvread: the raw value.
func nvRead(t *testing.T, tpm *swtpmtest.TPM, idx uint32, auth ...string) uint64 {
	t.Helper()
	args := []string{"-C", "o", "-s", "8", fmt.Sprintf("%#x", idx)}
	if len(auth) > 0 {
		args = append(args, "-P", auth[0])
	}
	out := tpm.Tool("tpm2_nvread", args...)
	if len(out) != 8 {
		t.Fatalf("tpm2_nvread: %d bytes", len(out))
	}
	return binary.BigEndian.Uint64(out)
}

func mustRead(t *testing.T, c *tpmcounter.Counters, comp string) uint64 {
	t.Helper()
	v, err := c.Read(context.Background(), comp)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A fresh TPM: reading provisions the index (value 0, the TPM holds 1);
// raising increments it; lowering changes nothing; what tpm2-tools reads
// from outside is the counter plus one.
func TestReadAndRaise(t *testing.T) {
	ctx := context.Background()
	tpm := swtpmtest.Start(t)
	c := newCounters(t, tpm, "")
	if v := mustRead(t, c, "rootfs"); v != 0 {
		t.Fatalf("fresh counter reads %d", v)
	}
	if raw := nvRead(t, tpm, idxRootfs); raw != 1 {
		t.Fatalf("tpm2_nvread: %d, want 1", raw)
	}
	attrs := string(tpm.Tool("tpm2_nvreadpublic", fmt.Sprintf("%#x", idxRootfs)))
	for _, want := range []string{"nt=0x1", "ownerwrite", "ownerread", "no_da", "written", "value: 0x22020012", "size: 8"} {
		if !strings.Contains(attrs, want) {
			t.Errorf("tpm2_nvreadpublic lacks %s:\n%s", want, attrs)
		}
	}
	if err := c.Raise(ctx, "rootfs", 3); err != nil {
		t.Fatal(err)
	}
	if v := mustRead(t, c, "rootfs"); v != 3 {
		t.Fatalf("after Raise(3): %d", v)
	}
	if raw := nvRead(t, tpm, idxRootfs); raw != 4 {
		t.Fatalf("tpm2_nvread after Raise(3): %d, want 4", raw)
	}
	if err := c.Raise(ctx, "rootfs", 2); err != nil {
		t.Fatal(err)
	}
	if v := mustRead(t, c, "rootfs"); v != 3 {
		t.Fatalf("Raise(2) moved the counter to %d", v)
	}
	// The other component's counter is its own.
	if v := mustRead(t, c, "app"); v != 0 {
		t.Fatalf("app reads %d", v)
	}
	if err := c.Raise(ctx, "rootfs", 3+tpmcounter.DefaultMaxStep+1); !errors.Is(err, tpmcounter.ErrStep) {
		t.Fatalf("a step over MaxStep: %v", err)
	}
	if err := c.Raise(ctx, "nope", 1); !errors.Is(err, tpmcounter.ErrConfig) {
		t.Fatalf("unknown component: %v", err)
	}
}

// The counter survives the TPM losing power, and an increment from outside
// (tpm2_nvincrement) is seen.
func TestPowerCycle(t *testing.T) {
	ctx := context.Background()
	tpm := swtpmtest.Start(t)
	c := newCounters(t, tpm, "")
	if err := c.Raise(ctx, "app", 5); err != nil {
		t.Fatal(err)
	}
	tpm.PowerCycle()
	if v := mustRead(t, c, "app"); v != 5 {
		t.Fatalf("after a power cycle: %d", v)
	}
	tpm.Tool("tpm2_nvincrement", "-C", "o", fmt.Sprintf("%#x", idxApp))
	if v := mustRead(t, c, "app"); v != 6 {
		t.Fatalf("after tpm2_nvincrement: %d", v)
	}
}

// Clearing the TPM (TPM2_Clear, platform authorization) deletes the index;
// the next read defines it again at or above its old value: the TPM starts
// new counters above every counter it ever had.
func TestClearedTPMNeverLower(t *testing.T) {
	ctx := context.Background()
	tpm := swtpmtest.Start(t)
	c := newCounters(t, tpm, "")
	if err := c.Raise(ctx, "rootfs", 5); err != nil {
		t.Fatal(err)
	}
	tpm.Tool("tpm2_clear", "-c", "p")
	if _, err := tpm.TryTool("tpm2_nvreadpublic", fmt.Sprintf("%#x", idxRootfs)); err == nil {
		t.Fatal("the index survived tpm2_clear: the test proves nothing")
	}
	if v := mustRead(t, c, "rootfs"); v < 5 {
		t.Fatalf("after tpm2_clear the counter reads %d, below 5", v)
	}
	// The same for an index deleted with owner authorization and
	// re-defined by hand, never written.
	tpm.Tool("tpm2_nvundefine", "-C", "o", fmt.Sprintf("%#x", idxRootfs))
	tpm.Tool("tpm2_nvdefine", "-C", "o", "-s", "8", "-a", "nt=counter|ownerwrite|ownerread|no_da", fmt.Sprintf("%#x", idxRootfs))
	if v := mustRead(t, c, "rootfs"); v < 5 {
		t.Fatalf("after re-definition the counter reads %d, below 5", v)
	}
}

// An index at the handle that is not a counter (an ordinary index anyone
// with owner authorization could write any value to) is refused.
func TestNotACounter(t *testing.T) {
	tpm := swtpmtest.Start(t)
	c := newCounters(t, tpm, "")
	tpm.Tool("tpm2_nvdefine", "-C", "o", "-s", "8", "-a", "ownerwrite|ownerread", fmt.Sprintf("%#x", idxRootfs))
	if _, err := c.Read(context.Background(), "rootfs"); !errors.Is(err, tpmcounter.ErrNotCounter) {
		t.Fatalf("Read of an ordinary index: %v", err)
	}
}

// With an owner authorization set, only its holder defines and raises.
func TestOwnerAuth(t *testing.T) {
	ctx := context.Background()
	tpm := swtpmtest.Start(t)
	tpm.Tool("tpm2_changeauth", "-c", "owner", "s3cret")
	if _, err := newCounters(t, tpm, "").Read(ctx, "rootfs"); err == nil {
		t.Fatal("defined a counter without the owner authorization")
	}
	c := newCounters(t, tpm, "s3cret")
	if err := c.Raise(ctx, "rootfs", 2); err != nil {
		t.Fatal(err)
	}
	if raw := nvRead(t, tpm, idxRootfs, "s3cret"); raw != 3 {
		t.Fatalf("tpm2_nvread: %d", raw)
	}
	if err := newCounters(t, tpm, "wrong").Raise(ctx, "rootfs", 4); err == nil {
		t.Fatal("raised a counter with a wrong owner authorization")
	}
	if v := mustRead(t, c, "rootfs"); v != 2 {
		t.Fatalf("counter %d", v)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, idx := range map[string]map[string]uint32{
		"none":     {},
		"not NV":   {"rootfs": 0x81000001},
		"shared":   {"rootfs": idxRootfs, "app": idxRootfs},
		"no name":  {"": idxRootfs},
		"too high": {"rootfs": 0x02000000},
	} {
		if _, err := tpmcounter.New(tpmcounter.Config{Indices: idx}); !errors.Is(err, tpmcounter.ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
