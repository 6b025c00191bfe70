package main

import (
	"fmt"
	"runtime"
)

type device struct{ handles map[string]int }

func (d *device) open(name string) int {
	return d.handles[name] / len(d.handles)
}

func main() {
	runtime.LockOSThread()
	d := &device{handles: map[string]int{}}
	fmt.Println(d.open("gpu0"))
}
