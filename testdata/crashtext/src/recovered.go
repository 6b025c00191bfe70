package main

import "fmt"

func inner() {
	var m map[string]int
	m["a"] = 1
}

func middle() {
	defer func() {
		if r := recover(); r != nil {
			panic(fmt.Sprintf("middle failed: %v", r))
		}
	}()
	inner()
}

func main() {
	middle()
}
