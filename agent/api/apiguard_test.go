package api

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/msb-runtime/msb/internal/sockpair"
)

func ttrpcMessage(id uint32, typ byte, body []byte) []byte {
	b := make([]byte, ttrpcHeaderSize, ttrpcHeaderSize+len(body))
	binary.BigEndian.PutUint32(b[0:], uint32(len(body)))
	binary.BigEndian.PutUint32(b[4:], id)
	b[8] = typ
	return append(b, body...)
}

// A guest that answers calls the host never made, answers one twice, or
// sends an answer beyond ttrpc's limit ends the channel: ttrpc would log
// each such message and carry on.
func TestAPIGuard(t *testing.T) {
	for name, hostile := range map[string]func(answer func(id uint32) []byte) []byte{
		"unasked answer": func(func(uint32) []byte) []byte { return ttrpcMessage(1001, ttrpcResponse, nil) },
		"request":        func(func(uint32) []byte) []byte { return ttrpcMessage(2, ttrpcRequest, nil) },
		"second answer":  func(answer func(uint32) []byte) []byte { return append(answer(1), answer(1)...) },
		"oversized answer": func(func(uint32) []byte) []byte {
			return ttrpcMessage(1, ttrpcResponse, make([]byte, ttrpcMaxMessage+1))[:ttrpcHeaderSize]
		},
	} {
		t.Run(name, func(t *testing.T) {
			host, guest := sockpair.New(t)
			sess, err := yamux.Server(guest, muxConfig(DefaultTimeout))
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			c, err := NewClient(host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			api, err := sess.AcceptStream()
			if err != nil {
				t.Fatal(err)
			}
			if h, err := readHeader(api); err != nil || h != kindTTRPC {
				t.Fatalf("header %q %v", h, err)
			}
			// The host's first call is stream 1; an empty response is a
			// valid answer to it.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			go c.Ping(ctx, &PingRequest{}) //nolint:errcheck // answered below, maybe badly
			req := make([]byte, ttrpcHeaderSize)
			if _, err := io.ReadFull(api, req); err != nil {
				t.Fatal(err)
			}
			if _, err := io.CopyN(io.Discard, api, int64(binary.BigEndian.Uint32(req))); err != nil {
				t.Fatal(err)
			}
			answer := func(id uint32) []byte { return ttrpcMessage(id, ttrpcResponse, nil) }
			api.Write(hostile(answer))
			if err := ended(t, c); !errors.Is(err, ErrProtocol) {
				t.Fatalf("channel ended with %v, want a protocol violation", err)
			}
		})
	}
}
