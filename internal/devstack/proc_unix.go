//go:build unix

package devstack

import "syscall"

// sysProcAttr puts node in its own process group so that a Ctrl-C on the terminal
// does not reach it directly: the Go side decides when the emulators stop, e.g. only
// after workers have written their final checkpoints.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
