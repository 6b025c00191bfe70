package main

import (
	"errors"
	"log"
)

func load(path string) error { return errors.New("open " + path + ": no such file or directory") }

func mustLoad(path string) {
	if err := load(path); err != nil {
		panic(err)
	}
}

func main() {
	log.Println("loading config")
	mustLoad("/etc/app/config.yaml")
}
