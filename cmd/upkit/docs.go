package main

// exitCodesDoc ends the command reference (docs/cli/README.md).
const exitCodesDoc = "Exit codes: 0 success, 1 verification failure or other error, 2 usage error (`upkit device update`: 3 nothing to do)."
