// A short Go command that leaves sockets open when it exits: 3 UDP sockets
// and a TCP listener from openSockets, then os.Exit(3) at once (no
// deferred closes run). fdtrace's exit tests launch it: every one must be
// listed with the function and line that opened it, though the process is
// gone milliseconds after.
package main

import (
	"net"
	"os"
)

//go:noinline
func openSockets(udp int) []any {
	var keep []any
	for i := 0; i < udp; i++ {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0") // shortleak: udp
		if err != nil {
			os.Exit(1)
		}
		keep = append(keep, c)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0") // shortleak: tcp
	if err != nil {
		os.Exit(1)
	}
	return append(keep, l)
}

var kept []any

func main() {
	kept = openSockets(3)
	os.Exit(3)
}
