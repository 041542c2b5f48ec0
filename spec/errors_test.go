package spec_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/upkit/upkit/spec"
)

func TestSentinel(t *testing.T) {
	umbrella := errors.New("umbrella")
	specific := spec.Sentinel("specific", umbrella)
	wrapped := fmt.Errorf("context: %w", specific)
	if !errors.Is(wrapped, specific) || !errors.Is(wrapped, umbrella) || errors.Is(umbrella, specific) || specific.Error() != "specific" {
		t.Fatal("Sentinel does not match as documented")
	}
	if errors.Is(spec.Sentinel("other", umbrella), specific) {
		t.Fatal("two sentinels match each other")
	}
}
