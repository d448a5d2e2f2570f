package api

import (
	"strings"
	"testing"
	"time"

	"github.com/msb-runtime/msb/internal/sockpair"
)

// A host that peeks the hello leaves it for the one that reads it, also
// when it arrives in parts.
func TestPeekThenReadHello(t *testing.T) {
	host, guest := sockpair.New(t)
	go func() {
		guest.Write([]byte(Hello[:3])) //nolint:errcheck
		time.Sleep(20 * time.Millisecond)
		guest.Write([]byte(Hello[3:])) //nolint:errcheck
	}()
	deadline := time.Now().Add(5 * time.Second)
	for range 2 {
		if err := PeekHello(host, deadline); err != nil {
			t.Fatalf("peek: %v", err)
		}
	}
	if err := ReadHello(host, deadline); err != nil {
		t.Fatalf("read after peek: %v", err)
	}
	guest.Write([]byte("next")) //nolint:errcheck
	b := make([]byte, 4)
	if _, err := host.Read(b); err != nil || string(b) != "next" {
		t.Fatalf("after the hello: %q, %v", b, err)
	}
}

func TestHelloRefused(t *testing.T) {
	for _, tc := range []struct {
		name, sent string
		close      bool
		want       string
	}{
		{"wrong", "msb-agenX\n", false, "want"},
		{"eof", "", true, "EOF"},
		{"cut", "msb", true, "timeout"},
		{"silent", "", false, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, guest := sockpair.New(t)
			guest.Write([]byte(tc.sent)) //nolint:errcheck
			if tc.close {
				guest.Close()
			}
			deadline := time.Now().Add(200 * time.Millisecond)
			if err := PeekHello(host, deadline); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("peek: %v, want an error with %q", err, tc.want)
			}
			if err := ReadHello(host, deadline); err == nil {
				t.Error("read: no error")
			}
		})
	}
}
