package main

func work() {
	defer func() {
		r := recover()
		panic(r)
	}()
	panic("boom")
}

func main() { work() }
