package registrytest_test

import (
	"fmt"

	"github.com/upkit/upkit/internal/testutil/registrytest"
)

// Tests call registrytest.Start(t, flavor) for each flavor, which returns
// "127.0.0.1:PORT" of a fresh registry stopped when the test ends.
func ExampleFlavors() {
	for _, f := range registrytest.Flavors() {
		fmt.Println(f)
	}
	// Output:
	// distribution
	// olareg
}
