package device

import (
	"context"
	"fmt"
)

// SlotSizer is implemented by Slots whose slots have a fixed capacity
// (partitions, such as device/partslots'). Check then refuses, with
// ErrTooLarge and before anything is downloaded, an image larger than the
// slot it would be written to.
type SlotSizer interface {
	// SlotSize returns the capacity of a slot in bytes.
	SlotSize(ctx context.Context, component, slot string) (int64, error)
}

// checkSlotSize refuses an image that does not fit its slot, when the
// Slots can tell.
func (d *Device) checkSlotSize(ctx context.Context, pi *PlannedImage) error {
	sz, ok := d.cfg.Slots.(SlotSizer)
	if !ok {
		return nil
	}
	n, err := sz.SlotSize(ctx, pi.Component, pi.Slot)
	if err != nil {
		return fmt.Errorf("device: size of slot %s of %s: %w", pi.Slot, pi.Component, err)
	}
	if pi.PayloadSize > n {
		return fmt.Errorf("%w: component %s image of %d bytes, slot %s holds %d", ErrTooLarge, pi.Component, pi.PayloadSize, pi.Slot, n)
	}
	return nil
}
