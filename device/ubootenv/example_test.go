package ubootenv_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/upkit/upkit/device/ubootenv"
)

// A redundant environment in a file, as a fw_env.config describes it:
// each Update writes the copy that is not current.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ubootenv-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	disk := filepath.Join(dir, "env.img")

	cfg, err := ubootenv.ParseConfig([]byte(disk + " 0x0 0x4000\n" + disk + " 0x4000 0x4000\n"))
	if err != nil {
		log.Fatal(err)
	}
	cfg.LockFile = filepath.Join(dir, "lock")
	cfg.AllowEmpty = true // a blank file: start from an empty environment
	env, err := ubootenv.Open(*cfg, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, order := range []string{"A B", "B A"} {
		err := env.Update(ctx, func(e *ubootenv.Env) error { return e.Set("BOOT_ORDER", order) })
		if err != nil {
			log.Fatal(err)
		}
		copies, current, _ := env.Inspect(ctx)
		fmt.Printf("BOOT_ORDER=%s in copy %d, flags %d\n", order, current, copies[current].Flags)
	}
	// Output:
	// BOOT_ORDER=A B in copy 0, flags 1
	// BOOT_ORDER=B A in copy 1, flags 2
}
