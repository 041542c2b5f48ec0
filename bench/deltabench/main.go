// Command deltabench runs delta.CreateFile and delta.ApplyFile in a binary
// that links nothing but the delta package and the standard library, as
// device firmware does. bench/delta.sh measures it beside `upkit delta`,
// whose resident size includes the whole CLI (signing, registries).
//
//	usage: deltabench create OLD NEW PATCH
//	       deltabench apply OLD PATCH OUT
package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/upkit/upkit/delta"
)

func main() {
	if len(os.Args) != 5 || (os.Args[1] != "create" && os.Args[1] != "apply") {
		fmt.Fprintln(os.Stderr, "usage: deltabench create OLD NEW PATCH | deltabench apply OLD PATCH OUT")
		os.Exit(2)
	}
	ctx := context.Background()
	var err error
	if os.Args[1] == "create" {
		_, err = delta.CreateFile(ctx, os.Args[2], os.Args[3], os.Args[4], nil)
	} else {
		debug.SetGCPercent(20) // as `upkit delta apply` does
		_, err = delta.ApplyFile(ctx, os.Args[2], os.Args[3], os.Args[4])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "deltabench:", err)
		os.Exit(1)
	}
}
