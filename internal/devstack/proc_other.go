//go:build !unix

package devstack

import "syscall"

// sysProcAttr returns nil: process groups are a unix notion.
func sysProcAttr() *syscall.SysProcAttr { return nil }
