package mcuboot

import (
	"fmt"
	"strconv"
	"strings"
)

// ImgtoolOption is one of imgtool sign's options that OptionsFromImgtool
// reads, under imgtool's long name, for a tool to offer as it is.
type ImgtoolOption struct {
	Name     string // imgtool's long option name, without "--"
	Switch   bool   // takes no value: on when given
	Arg      string // what the value is, a word of Usage ("BYTES")
	Default  string // imgtool's default ("" for none)
	Required bool   // imgtool has no default either
	Usage    string // what it does, ending with imgtool's own option
}

// ImgtoolOptions lists the options OptionsFromImgtool reads. Version (-v)
// and security counter (-s) are not among them: they are arguments of
// their own.
func ImgtoolOptions() []ImgtoolOption {
	return []ImgtoolOption{
		{Name: "header-size", Arg: "BYTES", Required: true, Usage: "BYTES of header area before the firmware, e.g. 0x200 (imgtool -H)"},
		{Name: "slot-size", Arg: "BYTES", Required: true, Usage: "size in BYTES of the MCU's image slot; the image and its trailer must fit (imgtool -S)"},
		{Name: "pad-header", Switch: true, Usage: "prepend --header-size erased bytes to the firmware; without it the firmware must start with that many zero bytes (imgtool --pad-header)"},
		{Name: "pad", Switch: true, Usage: "pad the image to --slot-size with a trailer asking MCUboot to install it (imgtool --pad)"},
		{Name: "confirm", Switch: true, Usage: "pad and mark the image confirmed, permanent (imgtool --confirm)"},
		{Name: "test", Switch: true, Usage: "pad and mark the image for a test swap (imgtool --test)"},
		{Name: "align", Arg: "N", Default: "1", Usage: "flash write alignment N of the trailer: 1, 2, 4, 8, 16 or 32 (imgtool --align)"},
		{Name: "max-align", Arg: "N", Usage: "largest write alignment N of the slots: 8, 16 or 32; default max(8, --align) (imgtool --max-align)"},
		{Name: "max-sectors", Arg: "N", Default: strconv.Itoa(DefaultMaxSectors), Usage: "N sectors of the trailer's swap status (imgtool -M)"},
		{Name: "overwrite-only", Switch: true, Usage: "trailer for overwrite-only upgrades (imgtool --overwrite-only)"},
		{Name: "load-addr", Arg: "ADDRESS", Usage: "RAM load ADDRESS; sets the RAM_LOAD flag (imgtool -L)"},
		{Name: "rom-fixed", Arg: "ADDRESS", Usage: "flash ADDRESS the image is built for; sets ROM_FIXED (imgtool -F)"},
		{Name: "erased-val", Arg: "VALUE", Default: "0xff", Usage: "VALUE of erased flash, for padding: 0xff or 0 (imgtool -R)"},
	}
}

// OptionsFromImgtool returns the Options for an image of version (see
// ParseVersion) with the security counter securityCounter (the package's
// security version: at most 4294967295) and the imgtool options in given,
// by ImgtoolOptions name: numbers in decimal or 0x hexadecimal, switches
// "true" or "false". An option not given takes imgtool's default. Errors
// wrap ErrInvalidOptions and name the option.
func OptionsFromImgtool(version string, securityCounter uint64, given map[string]string) (Options, error) {
	var o Options
	var err error
	if o.Version, err = ParseVersion(version); err != nil {
		return o, err
	}
	if securityCounter > 0xffffffff {
		return o, fmt.Errorf("%w: security counter %d: an MCUboot SEC_CNT holds at most 4294967295", ErrInvalidOptions, securityCounter)
	}
	o.SecurityCounter = uint32(securityCounter)
	for _, opt := range ImgtoolOptions() {
		v, ok := given[opt.Name]
		if !ok && opt.Required {
			return o, fmt.Errorf("%w: --%s is required (imgtool has no default for it either)", ErrInvalidOptions, opt.Name)
		}
		if !ok {
			v = opt.Default
		}
		if v == "" {
			continue
		}
		if err := o.set(opt, v); err != nil {
			return o, fmt.Errorf("%w: --%s %q: %v", ErrInvalidOptions, opt.Name, v, err)
		}
	}
	for name := range given {
		if !isImgtoolOption(name) {
			return o, fmt.Errorf("%w: no imgtool option --%s", ErrInvalidOptions, name)
		}
	}
	if _, err := o.TrailerSize(); err != nil { // checks the ranges
		return o, err
	}
	return o, nil
}

func isImgtoolOption(name string) bool {
	for _, opt := range ImgtoolOptions() {
		if opt.Name == name {
			return true
		}
	}
	return false
}

// set sets one option from its text.
func (o *Options) set(opt ImgtoolOption, v string) error {
	if opt.Switch {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		switch opt.Name {
		case "pad-header":
			o.PadHeader = on
		case "pad":
			o.Pad = on
		case "confirm":
			o.Confirm = on
		case "test":
			o.Test = on
		case "overwrite-only":
			o.OverwriteOnly = on
		}
		return nil
	}
	if opt.Name == "erased-val" {
		switch strings.ToLower(v) {
		case "0xff", "255":
		case "0", "0x0", "0x00":
			o.EraseZero = true
		default:
			return fmt.Errorf("want 0xff or 0")
		}
		return nil
	}
	n, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return fmt.Errorf("want a number from 0 to 0xffffffff")
	}
	switch opt.Name {
	case "header-size":
		o.HeaderSize = int(n)
	case "slot-size":
		o.SlotSize = int64(n)
	case "align":
		o.Align = int(n)
	case "max-align":
		o.MaxAlign = int(n)
	case "max-sectors":
		o.MaxSectors = int(n)
	case "load-addr":
		o.LoadAddr = uint32(n)
	case "rom-fixed":
		o.ROMFixed = uint32(n)
	}
	return nil
}
