package main

import "fmt"

func main() {
	panic(fmt.Errorf("validation failed:\n  field a: required\n  field b: too long"))
}
