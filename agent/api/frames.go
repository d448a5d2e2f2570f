package api

// frames follows a byte stream made of frames, each a fixed-size header
// and a body whose length the header gives, across reads or writes of
// any size, without copying bodies.
type frames struct {
	hdr  []byte
	have int
	body uint32
	// header checks a complete header and returns its body's length.
	header func(h []byte) (uint32, error)
}

func newFrames(headerSize int, header func([]byte) (uint32, error)) *frames {
	return &frames{hdr: make([]byte, headerSize), header: header}
}

// feed follows b, which continues what was fed before.
func (f *frames) feed(b []byte) error {
	for len(b) > 0 {
		if f.body > 0 {
			k := min(uint32(len(b)), f.body)
			f.body -= k
			b = b[k:]
			continue
		}
		k := copy(f.hdr[f.have:], b)
		f.have += k
		b = b[k:]
		if f.have < len(f.hdr) {
			return nil
		}
		f.have = 0
		n, err := f.header(f.hdr)
		if err != nil {
			return err
		}
		f.body = n
	}
	return nil
}

// between says whether the stream is at a frame boundary.
func (f *frames) between() bool { return f.have == 0 && f.body == 0 }
