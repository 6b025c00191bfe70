package main

/*
static void crash(void) { volatile int *p = 0; *p = 1; }
*/
import "C"

func main() { C.crash() }
