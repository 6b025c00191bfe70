package main

import (
	"fmt"
	"time"
)

type Order struct{ Items []string }

func process(o Order, idx int) string { return o.Items[idx] }

func consume(ch chan Order) {
	for o := range ch {
		fmt.Println(process(o, 3))
	}
}

func main() {
	ch := make(chan Order)
	go consume(ch)
	go func() { time.Sleep(time.Hour) }()
	ch <- Order{Items: []string{"a", "b"}}
	time.Sleep(time.Second)
}
