package api

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// TestDialTCP: a "tcp" stream reaches the guest handler with its port; an
// accepted one relays both ways with half closes, a refused one gives
// ErrRefused with the guest's reason.
func TestDialTCP(t *testing.T) {
	// The "guest" server answers with what it read, upper-cased, after
	// the client's half close.
	lis, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(c)
			io.WriteString(c, strings.ToUpper(string(b)))
			c.Close()
		}
	}()
	open := lis.Addr().(*net.TCPAddr).Port
	ports := make(chan int, 4)
	c := pairTCP(t, nil, func(port int, s net.Conn) {
		ports <- port
		if port != open {
			Refuse(s, errors.New("nothing listens\non that port"))
			return
		}
		conn, err := net.Dial("tcp4", lis.Addr().String())
		if err != nil {
			Refuse(s, err)
			return
		}
		Accept(s)
		Relay(s, conn)
	})

	s, err := c.DialTCP(open)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(s, "hello guest")
	s.Close() // yamux: half close, the reply still arrives
	b, err := io.ReadAll(s)
	if err != nil || string(b) != "HELLO GUEST" {
		t.Fatalf("relayed reply %q, %v", b, err)
	}
	if p := <-ports; p != open {
		t.Fatalf("guest handler got port %d, want %d", p, open)
	}

	_, err = c.DialTCP(open + 1)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "nothing listens on that port") {
		t.Fatalf("dial to a closed port: %v", err)
	}
	if _, err := c.DialTCP(0); err == nil {
		t.Fatal("port 0 accepted")
	}
}

func TestDialTCPWithoutHandler(t *testing.T) {
	c := pair(t, nil)
	if _, err := c.DialTCP(80); !errors.Is(err, ErrRefused) {
		t.Fatalf("want ErrRefused from a guest without a tcp handler, got %v", err)
	}
}
