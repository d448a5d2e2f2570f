package vm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestCappedFileConcurrent: the VMM and its helpers write one log at once;
// it stays under its cap and keeps the newest lines whole.
func TestCappedFileConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmm.log")
	const cap64k = 64 << 10
	c, err := createCapped(path, cap64k)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				fmt.Fprintf(c, "writer %d line %05d\n", w, i)
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(c, "the last line\n")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > cap64k || len(got) < cap64k/2 || !bytes.HasSuffix(got, []byte("the last line\n")) {
		t.Fatalf("log of %d bytes (cap %d), ends %q", len(got), cap64k, got[max(0, len(got)-40):])
	}
}
