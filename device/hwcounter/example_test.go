package hwcounter_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/hwcounter"
)

// fuses is what an eFuse implementation of Counters looks like: a bank of
// one-time-programmable bits per component, counting in unary. (Here the
// bits are in memory; on a device, Raise blows real fuses.)
type fuses struct {
	banks map[string][]bool
}

func (f *fuses) Components() []string {
	var out []string
	for c := range f.banks {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

func (f *fuses) Read(ctx context.Context, c string) (uint64, error) {
	var n uint64
	for _, blown := range f.banks[c] {
		if blown {
			n++
		}
	}
	return n, nil
}

func (f *fuses) Raise(ctx context.Context, c string, v uint64) error {
	bank := f.banks[c]
	if v > uint64(len(bank)) {
		return fmt.Errorf("fuses: %s has %d fuses, cannot count to %d", c, len(bank), v)
	}
	for i := uint64(0); i < v; i++ {
		bank[i] = true // blowing a fuse cannot be undone
	}
	return nil
}

// A file store whose counters live in fuses: a counter saved goes to the
// fuses first; a wiped file does not forget it.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "hwcounter-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	hw := &fuses{banks: map[string][]bool{"rootfs": make([]bool, 32)}}
	store := hwcounter.New(device.NewFileStore(filepath.Join(dir, "state"), nil), hw)
	st := &device.State{RootEnvelope: []byte("{}"), SecurityCounters: map[string]uint64{"rootfs": 3}}
	if err := store.Save(ctx, st); err != nil {
		log.Fatal(err)
	}
	// The file is wiped and a fresh state saved: the fuses still count 3.
	os.Remove(filepath.Join(dir, "state"))
	store.Save(ctx, &device.State{RootEnvelope: []byte("{}")})
	loaded, _ := store.Load(ctx)
	fmt.Println("rootfs counter:", loaded.SecurityCounters["rootfs"])
	// A state asking for less is refused.
	st.SecurityCounters["rootfs"] = 2
	fmt.Println(store.Save(ctx, st))
	// Output:
	// rootfs counter: 3
	// hwcounter: counter below the hardware counter: rootfs: saving 2, the hardware holds 3
}
