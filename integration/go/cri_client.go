// Command cri_client is a CRI client on grpc-go with default dial options, for the end-to-end
// tests (integration/tests/grpc_interop.rs). It calls /runtime.v1.RuntimeService/Version on a
// unix socket with a codec that passes the protobuf bytes through, so it needs no generated
// code: the empty VersionRequest is zero bytes, and the reply's string fields are printed.
//
//	cri_client unix SOCKET     target unix://SOCKET: grpc-go's own unix dialing
//	cri_client dialer SOCKET   target SOCKET with a context dialer, as kubelet and crictl did
//	                           before they used unix:// targets
//
// First it makes the same dial to a socket of its own and prints the :authority it got
// ("authority=<value>", or "authority absent"), then the reply ("runtime_name=peapod", ...).
//
// Built in GOPATH mode from Debian's golang-google-grpc-dev (hack/deps.sh installs it).
package main

import (
	"context"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
)

// rawCodec hands the message bytes through unchanged (messages are *[]byte).
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *v.(*[]byte), nil }

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

func dial(mode, socket string) (*grpc.ClientConn, error) {
	switch mode {
	case "unix":
		return grpc.Dial("unix://"+socket, grpc.WithInsecure())
	case "dialer":
		d := func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}
		return grpc.Dial(socket, grpc.WithInsecure(), grpc.WithContextDialer(d))
	}
	return nil, fmt.Errorf("unknown mode %q (unix or dialer)", mode)
}

func version(mode, socket string, timeout time.Duration) ([]byte, error) {
	conn, err := dial(mode, socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, reply := []byte{}, []byte{}
	err = conn.Invoke(ctx, "/runtime.v1.RuntimeService/Version", &req, &reply,
		grpc.ForceCodec(rawCodec{}))
	return reply, err
}

// probeAuthority dials a socket of its own the same way and reads the first request's headers.
func probeAuthority(mode string) (string, error) {
	dir, err := ioutil.TempDir("", "cri-go-probe")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	socket := filepath.Join(dir, "peapod.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return "", err
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		defer c.Close()
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, preface); err != nil {
			got <- "error: reading the preface: " + err.Error()
			return
		}
		fr := http2.NewFramer(c, c)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		if err := fr.WriteSettings(); err != nil {
			got <- "error: " + err.Error()
			return
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			case *http2.MetaHeadersFrame:
				for _, h := range f.PseudoFields() {
					if h.Name == ":authority" {
						got <- "authority=" + h.Value
						return
					}
				}
				got <- "authority absent"
				return
			}
		}
	}()
	// The call fails once the probe hangs up; only the headers matter.
	_, _ = version(mode, socket, 5*time.Second)
	select {
	case a := <-got:
		return a, nil
	case <-time.After(5 * time.Second):
		return "", fmt.Errorf("no request reached the probe socket")
	}
}

// stringFields decodes the length-delimited fields of a protobuf message (VersionResponse has
// only strings); other wire types end the walk.
func stringFields(b []byte) map[uint64]string {
	out := map[uint64]string{}
	varint := func() (uint64, bool) {
		var v uint64
		for shift := uint(0); len(b) > 0 && shift < 64; shift += 7 {
			c := b[0]
			b = b[1:]
			v |= uint64(c&0x7f) << shift
			if c < 0x80 {
				return v, true
			}
		}
		return 0, false
	}
	for len(b) > 0 {
		key, ok := varint()
		if !ok || key&7 != 2 {
			break
		}
		n, ok := varint()
		if !ok || n > uint64(len(b)) {
			break
		}
		out[key>>3] = string(b[:n])
		b = b[n:]
	}
	return out
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: cri_client unix|dialer SOCKET")
		os.Exit(2)
	}
	mode, socket := os.Args[1], os.Args[2]
	authority, err := probeAuthority(mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, "authority probe:", err)
		os.Exit(1)
	}
	fmt.Println(authority)
	reply, err := version(mode, socket, 30*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Version:", err)
		os.Exit(1)
	}
	if len(reply) == 0 {
		fmt.Fprintln(os.Stderr, "Version: empty reply")
		os.Exit(1)
	}
	f := stringFields(reply)
	fmt.Printf("reply_bytes=%d\n", len(reply))
	for i, name := range []string{"version", "runtime_name", "runtime_version", "runtime_api_version"} {
		fmt.Printf("%s=%s\n", name, f[uint64(i+1)])
	}
}
