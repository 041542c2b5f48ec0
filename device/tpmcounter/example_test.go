package tpmcounter_test

import (
	"context"
	"log"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/hwcounter"
	"github.com/upkit/upkit/device/tpmcounter"
)

// A device's store: counters in the TPM's NV indices, the rest of the state
// in a file. (Not run: it needs a TPM at /dev/tpmrm0.)
func Example() {
	ctrs, err := tpmcounter.New(tpmcounter.Config{
		Indices: map[string]uint32{"rootfs": 0x01800100, "app": 0x01800101},
		Open:    tpmcounter.OpenDevice(tpmcounter.DefaultDevice),
	})
	if err != nil {
		log.Fatal(err)
	}
	store := hwcounter.New(device.NewFileStore("/data/upkit/state", nil), ctrs)
	st, err := store.Load(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("rootfs counter %d", st.SecurityCounters["rootfs"])
}
