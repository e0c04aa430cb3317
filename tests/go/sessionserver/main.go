// sessionserver keeps a registry of client sessions. It prints
// "listening 127.0.0.1:PORT" when ready.
//
// The bug: a session that ends with "quit" is unregistered and closed, but
// one whose client just hangs up (EOF) stays in the registry, so its
// socket is never closed and sits in CLOSE_WAIT. (The registry also keeps
// the conn reachable, so no finalizer closes it either.)
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
)

var (
	mu       sync.Mutex
	sessions = map[net.Conn]bool{}
)

// acceptSessions accepts clients and serves each in its own goroutine.
func acceptSessions(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		mu.Lock()
		sessions[conn] = true
		mu.Unlock()
		go serveSession(conn)
	}
}

// serveSession echoes lines until "quit" or the client hangs up.
func serveSession(conn net.Conn) {
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return // BUG: neither unregistered nor closed
		}
		if strings.TrimSpace(line) == "quit" {
			mu.Lock()
			delete(sessions, conn)
			mu.Unlock()
			conn.Close()
			return
		}
		fmt.Fprint(conn, line)
	}
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	acceptSessions(ln)
}
