package main

import (
	"fmt"
	"sync"
)

func worker(ch chan int, wg *sync.WaitGroup) {
	defer wg.Done()
	v := <-ch
	fmt.Println(v)
}

func main() {
	ch := make(chan int)
	var wg sync.WaitGroup
	wg.Add(2)
	go worker(ch, &wg)
	go worker(ch, &wg)
	wg.Wait()
}
