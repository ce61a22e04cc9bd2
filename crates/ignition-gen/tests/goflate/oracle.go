// Reference oracle for the goflate tests: gzip each framed input exactly as Butane's
// MakeDataURL does (gzip.NewWriterLevel(BestCompression), one Write, Close).
// Protocol on stdin/stdout: repeated (u32 little-endian length, bytes).
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
)

func main() {
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(in, hdr[:]); err != nil {
			if err == io.EOF {
				return
			}
			panic(err)
		}
		data := make([]byte, binary.LittleEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(in, data); err != nil {
			panic(err)
		}
		var buf bytes.Buffer
		w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			panic(err)
		}
		if _, err := w.Write(data); err != nil {
			panic(err)
		}
		if err := w.Close(); err != nil {
			panic(err)
		}
		binary.LittleEndian.PutUint32(hdr[:], uint32(buf.Len()))
		out.Write(hdr[:])
		out.Write(buf.Bytes())
	}
}
