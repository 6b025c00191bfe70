package main

import "unsafe"

func poke(addr uintptr) { *(*int)(unsafe.Pointer(addr)) = 1 }

func main() { poke(0xdeadbeef) }
