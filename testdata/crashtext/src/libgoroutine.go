package main

import (
	"bytes"
	"time"
)

type session struct{ buf *bytes.Buffer }

func main() {
	s := &session{}
	time.AfterFunc(time.Millisecond, s.buf.Reset)
	time.Sleep(time.Second)
}
