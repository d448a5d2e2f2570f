package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/msb-runtime/msb/vm/phase"
)

// report reads the spans otlpsink wrote and the bench's runs (lines
// "CASE ID START_US END_US": one `ctr` command each, run one after
// another) and prints one line per sample, "CASE KEY MS":
//
//	run.msb host_prepare 7.9          a phase of the run's task (msb.* spans)
//	exec.msb exec.process_start 30.2  the phase of an exec's start
//	run.runc call.Create 20.1         containerd's task call (Tasks/*) in the run
//
// It checks that each run of case completeCase has every phase and that
// each phase span is in a trace containerd started (joined to its trace);
// what is missing is printed as "! …" lines and makes it exit 1.
func report(spansPath, runsPath string, w io.Writer) error {
	spans, err := readSpans(spansPath)
	if err != nil {
		return err
	}
	runs, err := readRuns(runsPath)
	if err != nil {
		return err
	}
	byID := map[string]Span{}
	for _, s := range spans {
		byID[s.Span] = s
	}
	bad := 0
	for _, r := range runs {
		bad += r.report(spans, byID, w)
	}
	if bad > 0 {
		return fmt.Errorf("%d check(s) failed", bad)
	}
	return nil
}

// completeCase is the bench's `ctr run --rm` with msb: Create, Start and
// Delete of one task, so every phase.
const completeCase = "run.msb"

type run struct {
	runtime, id string
	start, end  uint64 // ns
}

func (r run) report(spans []Span, byID map[string]Span, w io.Writer) (bad int) {
	seen := map[phase.Name]bool{}
	for _, s := range spans {
		if s.StartNs < r.start || s.StartNs > r.end {
			continue
		}
		if call, ok := strings.CutPrefix(s.Name, "containerd.services.tasks.v1.Tasks/"); ok && s.Parent == "" {
			fmt.Fprintf(w, "%s call.%s %.1f\n", r.runtime, call, ms(s))
		}
		task := s.Attrs["msb.task"]
		name := phase.Name(s.Attrs["msb.phase"])
		switch {
		case task == r.id:
			seen[name] = true
			fmt.Fprintf(w, "%s %s %.1f\n", r.runtime, name, ms(s))
		case strings.HasPrefix(task, r.id+"/"):
			fmt.Fprintf(w, "%s exec.%s %.1f\n", r.runtime, name, ms(s))
		default:
			continue
		}
		if !joined(s, byID) {
			fmt.Fprintf(w, "! %s: span %s is not in a trace of containerd's\n", r.id, s.Name)
			bad++
		}
	}
	if r.runtime == completeCase {
		for _, n := range phase.All {
			if !seen[n] {
				fmt.Fprintf(w, "! %s: no span for phase %s\n", r.id, n)
				bad++
			}
		}
	}
	return bad
}

// joined says whether s descends from a span containerd made.
func joined(s Span, byID map[string]Span) bool {
	for i := 0; i < 32 && s.Parent != ""; i++ {
		p, ok := byID[s.Parent]
		if !ok {
			return false
		}
		if p.Service == "containerd" {
			return true
		}
		s = p
	}
	return false
}

func ms(s Span) float64 { return float64(s.EndNs-s.StartNs) / 1e6 }

func readSpans(path string) ([]Span, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var spans []Span
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var s Span
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		spans = append(spans, s)
	}
	return spans, sc.Err()
}

func readRuns(path string) ([]run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var runs []run
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r run
		if _, err := fmt.Sscan(sc.Text(), &r.runtime, &r.id, &r.start, &r.end); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, sc.Text(), err)
		}
		r.start *= 1000
		r.end *= 1000
		runs = append(runs, r)
	}
	return runs, sc.Err()
}
