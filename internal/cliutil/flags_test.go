package cliutil

import (
	"fmt"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func usage(format string, args ...any) error { return fmt.Errorf(format, args...) }

// testApp is a small tree shaped like upkit's.
func testApp() *cli.App {
	str := func(names ...string) cli.Flag { return &cli.StringFlag{Name: names[0], Aliases: names[1:]} }
	boolean := func(name string) cli.Flag { return &cli.BoolFlag{Name: name} }
	return &cli.App{Name: "upkit", Commands: []*cli.Command{
		{Name: "release", Subcommands: []*cli.Command{{Name: "create", Flags: []cli.Flag{
			str("product"), str("output", "o"), &cli.StringSliceFlag{Name: "delta"}, boolean("force")}}}},
		{Name: "pull", Flags: []cli.Flag{str("output", "o")}},
		{Name: "verify", Flags: []cli.Flag{&cli.StringSliceFlag{Name: "key"}, boolean("json")}},
		{Name: "inspect", Flags: []cli.Flag{boolean("json")}},
		{Name: "key", Subcommands: []*cli.Command{{Name: "id"}}},
		{Name: "device", Subcommands: []*cli.Command{{Name: "update", Flags: []cli.Flag{str("now")}}}},
		{Name: "pack", Flags: []cli.Flag{str("output", "o"), str("type")}},
	}}
}

// FlagsFirst moves flags (and the values of those that take one) ahead of
// the positional arguments; "--" ends the flags.
func TestFlagsFirst(t *testing.T) {
	app := testApp()
	for _, tc := range []struct{ in, want string }{
		{"upkit release create --product gw -o r.json a.upk --delta d.delta b.upk --force",
			"upkit release create --product gw -o r.json --delta d.delta --force -- a.upk b.upk"},
		{"upkit pull REF -o DIR", "upkit pull -o DIR -- REF"},
		{"upkit verify --key=k.pub f.upk --json", "upkit verify --key=k.pub --json -- f.upk"},
		{"upkit inspect -- -odd-name --json", "upkit inspect -- -odd-name --json"},
		{"upkit key id k.pub --generate-bash-completion", "upkit key id -- k.pub --generate-bash-completion"},
		{"upkit key", "upkit key"},
		{"upkit --version", "upkit --version"},
		{"upkit device update --now -1 SRC", "upkit device update --now -1 -- SRC"},
		{"upkit pack in.img --help -o x", "upkit pack --help -o x"},
	} {
		args, err := FlagsFirst(app.Commands, strings.Fields(tc.in), usage)
		if got := strings.Join(args, " "); err != nil || got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func TestFlagsFirstMissingValue(t *testing.T) {
	if _, err := FlagsFirst(testApp().Commands, []string{"upkit", "pull", "REF", "-o"}, usage); err == nil || !strings.Contains(err.Error(), "flag needs an argument: -o") {
		t.Fatalf("a value flag at the end: %v", err)
	}
}

// A Strings flag keeps each value whole, commas and all, in order.
func TestStrings(t *testing.T) {
	var got []string
	app := &cli.App{Name: "upkit", Commands: []*cli.Command{{Name: "release",
		Flags:  []cli.Flag{&cli.GenericFlag{Name: "mcuboot", Value: &Strings{}}},
		Action: func(c *cli.Context) error { got = StringsOf(c, "mcuboot"); return nil }}}}
	if err := app.Run([]string{"upkit", "release", "--mcuboot", "a@x,y=f", "--mcuboot", "b@z=g"}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != "a@x,y=f|b@z=g" {
		t.Fatalf("values %q", got)
	}
	if StringsOf(cli.NewContext(app, nil, nil), "none") != nil {
		t.Fatal("values of an absent flag")
	}
}
