// Writes one map from two goroutines until the Go runtime kills the process
// with "fatal error: concurrent map writes", which recover() cannot catch.
package main

import (
	"fmt"
	"os"
	"sync"
)

var stock = map[int]int{}

func reserve(worker int) {
	for i := 0; ; i++ {
		stock[i%64] = worker
	}
}

func main() {
	fmt.Println("inventory service starting")
	fmt.Fprintln(os.Stderr, "level=info msg=\"listening on :8080\"")
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			reserve(w)
		}(w)
	}
	wg.Wait()
}
