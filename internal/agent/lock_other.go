//go:build !unix

package agent

import "fmt"

// Lock is not available outside Unix: the agent runs on Linux.
func (a *Agent) Lock() (unlock func(), err error) {
	return nil, fmt.Errorf("agent: the agent's lock needs a Unix system")
}
