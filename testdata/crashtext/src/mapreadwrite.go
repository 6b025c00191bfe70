package main

func main() {
	m := map[int]int{}
	go func() {
		for i := 0; ; i++ {
			m[i%100] = i
		}
	}()
	s := 0
	for i := 0; i < 100000000; i++ {
		s += m[i%100]
	}
	println(s)
}
