package main

func main() {
	m := map[int]int{}
	for i := 0; i < 100; i++ {
		m[i] = i
	}
	go func() {
		for i := 0; ; i++ {
			m[i%100] = i
		}
	}()
	s := 0
	for j := 0; j < 10000000; j++ {
		for _, v := range m {
			s += v
		}
	}
	println(s)
}
