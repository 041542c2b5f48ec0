package grubenv_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/upkit/upkit/device/grubenv"
)

// Update changes variables and replaces the file atomically; Read parses it.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "grubenv-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	env := grubenv.NewFile(filepath.Join(dir, "grubenv"), nil)
	err = env.Update(ctx, func(b *grubenv.Block) error {
		if err := b.Set("ORDER", "B A"); err != nil {
			return err
		}
		return b.Set("B_TRY", "0")
	})
	if err != nil {
		log.Fatal(err)
	}
	b, err := env.Read(ctx)
	if err != nil {
		log.Fatal(err)
	}
	order, _ := b.Get("ORDER")
	fmt.Println(b.Names(), order, b.Size())
	// Output: [ORDER B_TRY] B A 1024
}
