package service

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/msb-runtime/msb/agent/api"
)

// forwardDialTimeout bounds a connect on the guest's loopback, which only
// waits when the guest is too busy to answer.
const forwardDialTimeout = 10 * time.Second

// ForwardTCP is the api.Serve handler of "tcp" streams (CRI port-forward):
// it connects to port on the guest's loopback, as the pod's containers
// share the guest's network stack, and relays. Like containerd's own
// port-forward it tries IPv4 first, then IPv6.
func ForwardTCP(port int, s net.Conn) {
	conn, err := dialLoopback(port)
	if err != nil {
		api.Refuse(s, err)
		return
	}
	if err := api.Accept(s); err != nil {
		conn.Close()
		s.Close()
		return
	}
	api.Relay(s, conn)
}

func dialLoopback(port int) (net.Conn, error) {
	p := strconv.Itoa(port)
	conn, err4 := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", p), forwardDialTimeout)
	if err4 == nil {
		return conn, nil
	}
	conn, err6 := net.DialTimeout("tcp6", net.JoinHostPort("::1", p), forwardDialTimeout)
	if err6 == nil {
		return conn, nil
	}
	return nil, fmt.Errorf("connect to guest port %d: %w", port, errors.Join(err4, err6))
}
