package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigExamples: the full examples in contrib/agent parse, with the
// defaults filled in.
func TestConfigExamples(t *testing.T) {
	c, err := ReadConfig(filepath.Join("..", "..", "contrib", "agent", "agent.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Bootloader.Type != "grub" || c.Counters.Type != "tpm" || c.Source.target() != "registry.example/acme/gateway:stable" ||
		time.Duration(c.Poll.Interval) != 6*time.Hour || c.Bootloader.Cmdline != "/proc/cmdline" || len(c.Slots) != 2 {
		t.Fatalf("agent.json: %+v", c)
	}
	c, err = ReadConfig(filepath.Join("..", "..", "contrib", "agent", "agent-u-boot.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Lock != "/data/upkit/agent.lock" || c.Source.target() != "/media/usb/updates" || time.Duration(c.Poll.Jitter) != time.Minute ||
		time.Duration(c.HealthCheck.Timeout) != DefaultHealthTimeout || time.Duration(c.Poll.RetryMin) != DefaultRetryMin {
		t.Fatalf("agent-u-boot.json: %+v", c)
	}
}

// TestConfigRefusals: each mistake is refused with ErrConfig and a message
// naming what is wrong.
func TestConfigRefusals(t *testing.T) {
	good := `{"hardware":"gw-1","state":"/data/state","staging":"/data/staging","trustRoot":"/etc/root.json",
"bootloader":{"type":"grub","component":"rootfs","grubenv":"/boot/grubenv"},
"slots":{"rootfs":{"a":"/dev/sda2","b":"/dev/sda3"}},"counters":{"type":"file"},
"reboot":{"command":["/sbin/reboot"]}}`
	if _, err := ParseConfig([]byte(good), "good"); err != nil {
		t.Fatalf("the base configuration: %v", err)
	}
	for _, c := range []struct{ name, from, to, want string }{
		{"unknown member", `"hardware"`, `"colour":"red","hardware"`, "colour"},
		{"duplicate member", `"hardware":"gw-1"`, `"hardware":"gw-1","hardware":"gw-2"`, "more than once"},
		{"case variant", `"trustRoot"`, `"trustroot"`, "trustroot"},
		{"relative path", `"/data/state"`, `"data/state"`, "state"},
		{"no trust root", `"trustRoot":"/etc/root.json",`, ``, "trustRoot is required"},
		{"bad hardware", `"gw-1"`, `""`, "hardware"},
		{"bootloader type", `"type":"grub"`, `"type":"lilo"`, "lilo"},
		{"grub with tries", `"grubenv":"/boot/grubenv"`, `"grubenv":"/boot/grubenv","tries":3`, "u-boot"},
		{"u-boot without config", `"type":"grub","component":"rootfs","grubenv":"/boot/grubenv"`, `"type":"u-boot","component":"rootfs"`, "fwEnvConfig"},
		{"boot component without slots", `"component":"rootfs"`, `"component":"kernel"`, "kernel"},
		{"same slot twice", `"b":"/dev/sda3"`, `"b":"/dev/sda2"`, "two different slots"},
		{"tpm without index", `"counters":{"type":"file"}`, `"counters":{"type":"tpm"}`, "no NV index"},
		{"bad NV index", `"counters":{"type":"file"}`, `"counters":{"type":"tpm","indices":{"rootfs":"0x81000001"}}`, "0x01000000"},
		{"registry and layout", `"counters"`, `"source":{"registry":"r.example/a","layout":"/media/usb"},"counters"`, "not both"},
		{"tag in registry", `"counters"`, `"source":{"registry":"r.example/a:stable"},"counters"`, "source.tag"},
		{"bad duration", `"counters"`, `"poll":{"interval":"often"},"counters"`, "often"},
		{"negative duration", `"counters"`, `"poll":{"interval":"-1h"},"counters"`, "-1h"},
		{"retry bounds", `"counters"`, `"poll":{"retryMin":"1h","retryMax":"1m"},"counters"`, "retryMax"},
		{"no reboot", `"reboot":{"command":["/sbin/reboot"]}`, `"reboot":{}`, "reboot.command"},
		{"relative program", `"/sbin/reboot"`, `"reboot"`, "absolute"},
		{"trailing data", `"/sbin/reboot"]}}`, `"/sbin/reboot"]}} {}`, ""},
		{"null", `"counters":{"type":"file"}`, `"counters":null`, "null"},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := strings.Replace(good, c.from, c.to, 1)
			if doc == good {
				t.Fatalf("the case changes nothing")
			}
			_, err := ParseConfig([]byte(doc), "agent.json")
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrConfig naming %q", err, c.want)
			}
		})
	}
}

// FuzzParseConfig: the configuration parser never panics, and what it
// accepts is complete: absolute paths, a known bootloader and counter
// type, slots for the bootloader's component, a reboot command, and the
// defaults set.
func FuzzParseConfig(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("..", "..", "contrib", "agent", "agent.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	if data, err = os.ReadFile(filepath.Join("..", "..", "contrib", "agent", "agent-u-boot.json")); err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, "fuzz")
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v is not ErrConfig", err)
			}
			return
		}
		if !filepath.IsAbs(c.State) || !filepath.IsAbs(c.Staging) || !filepath.IsAbs(c.TrustRoot) || !filepath.IsAbs(c.Lock) ||
			c.Bootloader.Cmdline == "" || len(c.Reboot.Command) == 0 || c.Poll.Interval <= 0 || c.Poll.RetryMax < c.Poll.RetryMin {
			t.Fatalf("accepted an incomplete configuration: %+v", c)
		}
		if _, ok := c.Slots[c.Bootloader.Component]; !ok {
			t.Fatalf("accepted without slots for %s", c.Bootloader.Component)
		}
		if c.Bootloader.Type != "grub" && c.Bootloader.Type != "u-boot" || c.Counters.Type != "file" && c.Counters.Type != "tpm" {
			t.Fatalf("accepted types %q, %q", c.Bootloader.Type, c.Counters.Type)
		}
	})
}
