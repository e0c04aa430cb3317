// httpclient makes a request every -interval to -url.
//
// The bug (default): fetchStatus builds a new http.Transport for every
// request and drops it; each Transport keeps its idle keep-alive
// connection open forever, so ESTABLISHED sockets pile up.
//
// -fixed: the same, but CloseIdleConnections() before dropping it.
// -reuse: one shared client for all requests (the idiomatic fix).
// -leak-body: the shared client, but fetchHeaders never closes the
// response body, so no connection returns to the pool and every request
// dials a new one.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

var shared = &http.Client{}

// fetchStatus asks the server for its status with a client of its own.
func fetchStatus(url string, fixed bool) error {
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if fixed {
		tr.CloseIdleConnections()
	}
	return err
}

// fetchShared does the same with the shared client.
func fetchShared(url string) error {
	resp, err := shared.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

// fetchHeaders only wants the status line, and forgets the body.
func fetchHeaders(url string) error {
	resp, err := shared.Get(url)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

func main() {
	url := flag.String("url", "", "server URL")
	interval := flag.Duration("interval", 200*time.Millisecond, "time between requests")
	requests := flag.Int("requests", 0, "stop after this many requests (0: never)")
	fixed := flag.Bool("fixed", false, "close idle connections after each request")
	reuse := flag.Bool("reuse", false, "use one shared client")
	leakBody := flag.Bool("leak-body", false, "use the shared client and never close response bodies")
	wait := flag.Bool("wait", false, "print ready and wait for a line on stdin first")
	exit := flag.Int("exit", -1, "exit with this code after the requests (default: keep running)")
	flag.Parse()
	if *wait {
		fmt.Printf("ready %d\n", os.Getpid())
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	for n := 0; *requests == 0 || n < *requests; n++ {
		var err error
		switch {
		case *leakBody:
			err = fetchHeaders(*url)
		case *reuse:
			err = fetchShared(*url)
		default:
			err = fetchStatus(*url, *fixed)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "request:", err)
		}
		time.Sleep(*interval)
	}
	fmt.Println("done")
	if *exit >= 0 {
		os.Exit(*exit)
	}
	select {}
}
