package boot

import (
	"testing"
	"time"
)

func TestParseInitRecord(t *testing.T) {
	for _, tc := range []struct {
		rec  string
		at   time.Duration
		want bool
	}{
		{"6,312,1043217,-;Run /init as init process\n", 1043217 * time.Microsecond, true},
		{"6,312,1043217,-,caller=T1;Run /init as init process", 1043217 * time.Microsecond, true},
		{"6,311,1043001,-;Freeing unused kernel image memory: 2048K\n", 0, false},
		{"6,312,-5,-;Run /init as init process\n", 0, false},
		{"Run /init as init process", 0, false},
		{"6,312;Run /init as init process", 0, false},
	} {
		at, ok := parseInitRecord([]byte(tc.rec))
		if ok != tc.want || at != tc.at {
			t.Errorf("parseInitRecord(%q) = %v, %v; want %v, %v", tc.rec, at, ok, tc.at, tc.want)
		}
	}
}
