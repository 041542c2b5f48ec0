package spec_test

import (
	"fmt"

	"github.com/upkit/upkit/spec"
)

func ExampleParseDigest() {
	d := spec.SHA256([]byte("hello\n"))
	fmt.Println(d)
	back, err := spec.ParseDigest(d.String())
	fmt.Println(back == d, err)
	_, err = spec.ParseDigest("sha256:ABC")
	fmt.Println(err)
	// Output:
	// sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03
	// true <nil>
	// "sha256:ABC": want sha256:<64 lowercase hex digits>
}

func ExampleCheckJSON() {
	rules := spec.JSONRules{Fields: []string{"version"}}
	fmt.Println(spec.CheckJSON([]byte(`{"version":1}`), "doc", rules))
	fmt.Println(spec.CheckJSON([]byte(`{"version":1,"Version":2}`), "doc", rules))
	fmt.Println(spec.CheckJSON([]byte(`{"version":-0}`), "doc", rules))
	// Output:
	// <nil>
	// doc at $.Version (offset 22): key "Version" appears more than once
	// doc at $.version (offset 13): negative number -0
}
