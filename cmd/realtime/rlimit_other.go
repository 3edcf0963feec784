//go:build !unix

package main

// raiseFileLimit does nothing where RLIMIT_NOFILE does not exist.
func raiseFileLimit() (uint64, error) { return 0, nil }
