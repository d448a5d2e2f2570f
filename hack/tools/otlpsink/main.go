// otlpsink is a minimal OpenTelemetry trace receiver for hack/bench
// --phases: it takes OTLP/HTTP protobuf exports (what containerd and the
// shims send when OTEL_EXPORTER_OTLP_ENDPOINT points at it) and writes one
// JSON line per span to -out.
//
//	otlpsink -addr 127.0.0.1:0 -out spans.jsonl -ready addr.txt
//	otlpsink -report -out spans.jsonl -runs runs.txt
//
// Each line: {"trace","span","parent","name","service","start_ns","end_ns",
// "attrs":{…},"error"}. It runs until SIGTERM or SIGINT. With -report it
// prints the phases of the bench's runs instead (report.go).
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one line of the output.
type Span struct {
	Trace   string            `json:"trace"`
	Span    string            `json:"span"`
	Parent  string            `json:"parent,omitempty"`
	Name    string            `json:"name"`
	Service string            `json:"service,omitempty"`
	StartNs uint64            `json:"start_ns"`
	EndNs   uint64            `json:"end_ns"`
	Attrs   map[string]string `json:"attrs,omitempty"`
	Error   string            `json:"error,omitempty"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	out := flag.String("out", "spans.jsonl", "output file (appended)")
	ready := flag.String("ready", "", "file to write the listening address into once listening")
	doReport := flag.Bool("report", false, "print the phases of the runs in -runs from the spans in -out")
	runs := flag.String("runs", "runs.txt", "with -report: the bench's runs")
	flag.Parse()
	if *doReport {
		if err := report(*out, *runs, os.Stdout); err != nil {
			fatal(err)
		}
		return
	}
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fatal(err)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fatal(err)
	}
	s := &sink{w: f}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(l.Addr().String()+"\n"), 0o644); err != nil {
			fatal(err)
		}
	}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		<-ch
		l.Close()
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", s.traces)
	_ = http.Serve(l, mux)
	s.mu.Lock()
	f.Close()
}

type sink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *sink) traces(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, rs := range req.GetResourceSpans() {
		svc := attrs(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				_ = enc.Encode(convert(sp, svc))
			}
		}
	}
	s.mu.Lock()
	_, _ = s.w.Write(buf.Bytes())
	s.mu.Unlock()
	resp, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

func readBody(r *http.Request) ([]byte, error) {
	var rd io.Reader = io.LimitReader(r.Body, 64<<20)
	if r.Header.Get("Content-Encoding") == "gzip" {
		z, err := gzip.NewReader(rd)
		if err != nil {
			return nil, err
		}
		rd = z
	}
	return io.ReadAll(rd)
}

func convert(sp *tracepb.Span, svc string) Span {
	out := Span{
		Trace: hex.EncodeToString(sp.GetTraceId()), Span: hex.EncodeToString(sp.GetSpanId()),
		Name: sp.GetName(), Service: svc, StartNs: sp.GetStartTimeUnixNano(), EndNs: sp.GetEndTimeUnixNano(),
		Attrs: attrs(sp.GetAttributes()),
	}
	if p := sp.GetParentSpanId(); len(p) > 0 {
		out.Parent = hex.EncodeToString(p)
	}
	if sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		out.Error = sp.GetStatus().GetMessage()
		if out.Error == "" {
			out.Error = "error"
		}
	}
	return out
}

func attrs(kvs []*common.KeyValue) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *common.AnyValue_StringValue:
			m[kv.GetKey()] = x.StringValue
		case *common.AnyValue_IntValue:
			m[kv.GetKey()] = fmt.Sprint(x.IntValue)
		case *common.AnyValue_DoubleValue:
			m[kv.GetKey()] = fmt.Sprint(x.DoubleValue)
		case *common.AnyValue_BoolValue:
			m[kv.GetKey()] = fmt.Sprint(x.BoolValue)
		default:
			m[kv.GetKey()] = v.String()
		}
	}
	return m
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "otlpsink: %v\n", err)
	os.Exit(1)
}
