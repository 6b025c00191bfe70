package main

import (
	"syscall"
	"time"
)

func main() {
	go func() { time.Sleep(time.Hour) }()
	time.Sleep(100 * time.Millisecond)
	syscall.Kill(syscall.Getpid(), syscall.SIGQUIT)
	time.Sleep(time.Second)
}
