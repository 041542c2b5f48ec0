// Package cliutil is the urfave/cli plumbing of upkit's command line, kept
// apart so that cmd/upkit holds only its commands: the Markdown reference
// and the shell completion scripts rendered from the command tree (their
// output depends only on the tree, so CI regenerates and compares it),
// flags accepted after positional arguments (FlagsFirst), the flags shared
// by registry commands (TimeoutFlag), the progress line drawn on a
// terminal, the version string of the build, and ReleaseExecutablePages,
// which lowers a long command's resident size.
package cliutil
