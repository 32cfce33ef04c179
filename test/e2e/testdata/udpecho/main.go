// Command udpecho answers every UDP datagram on [::]:PORT with
// "udp-pong from ADDR", ADDR being the sender: the UDP app of the e2e
// tests' images (busybox-static has no UDP server).
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: udpecho PORT")
		os.Exit(2)
	}
	c, err := net.ListenPacket("udp", ":"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "udpecho:", err)
		os.Exit(1)
	}
	buf := make([]byte, 2048)
	for {
		_, from, err := c.ReadFrom(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "udpecho:", err)
			os.Exit(1)
		}
		c.WriteTo([]byte("udp-pong from "+from.String()+"\n"), from)
	}
}
