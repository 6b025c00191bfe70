package main

import "fmt"

func buildIndex(n int) [][]byte {
	var out [][]byte
	for i := 0; i < n; i++ {
		out = append(out, make([]byte, 64<<20))
		out[i][0] = 1
	}
	return out
}

func main() {
	idx := buildIndex(1 << 20)
	fmt.Println(len(idx))
}
