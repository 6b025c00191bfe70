package main

import "fmt"

type Store struct{ m map[string]int }

func (s *Store) Get(k string) int { return s.m[k] }

func handle(s *Store) int {
	return s.Get("x")
}

func main() {
	fmt.Println("starting server on :8080")
	var s *Store
	fmt.Println(handle(s))
}
