// Command packmem packs a file with imagepkg.PackPath and a TEST-ONLY
// in-memory key, so that bench/imagepkg.sh can measure the packing's own
// time and peak memory apart from loading a key (a cosign-format key file
// costs 64 MiB and about 0.3 s of scrypt by design).
//
//	usage: packmem [-compress zstd|none] [-cpuprofile FILE] INPUT OUTPUT
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/spec"
)

func main() {
	compress := flag.String("compress", imagepkg.CompressionZstd, "zstd or none")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to `FILE`")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "packmem:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: packmem [-compress zstd|none] INPUT OUTPUT")
		os.Exit(2)
	}
	h := sha256.New()
	_, err := imagepkg.PackPath(context.Background(), flag.Arg(1), flag.Arg(0), imagepkg.PackOptions{
		Component: "bench", Type: imagepkg.TypeOS, Version: "1.0.0", SecurityVersion: 1,
		Hardware: []string{"bench-hw"}, Compression: *compress, Digest: h,
	}, testkeys.Ed25519(1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "packmem:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	fmt.Println(spec.HashDigest(h))
}
