// Command spdy_client drives peapod's streaming server over SPDY/3.1 with moby/spdystream,
// the SPDY library client-go, kubelet, kubectl and crictl use, the way client-go's
// remotecommand and portforward packages do (src/streaming/tests.rs runs it):
//
//	spdy_client frames
//	    prints, in hex, the frames spdystream's framer writes for a client-go style exec
//	    (SYN_STREAMs with streamType headers, stdin DATA, FIN, PING, GOAWAY), for the
//	    byte-exact decoding test in src/streaming/spdy/tests.rs
//	spdy_client exec URL PROTOCOLS STREAMS STDIN_BYTES
//	    upgrades (X-Stream-Protocol-Version: each of the comma-separated PROTOCOLS), opens
//	    the streams named in STREAMS (comma-separated: error,stdin,stdout,stderr,resize),
//	    sends STDIN_BYTES bytes of a pattern (or the text after "text:") on stdin then
//	    closes it, reads stdout, stderr and error to EOF, and prints one JSON object
//	spdy_client portforward URL PORT TEXT
//	    opens an error and a data stream for PORT, sends TEXT, half-closes, and prints the
//	    reply and the error stream as JSON
//
// Built in GOPATH mode from Debian's golang-github-docker-spdystream-dev (hack/deps.sh).
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream"
	"github.com/moby/spdystream/spdy"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "spdy_client: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: spdy_client frames | exec URL PROTOCOLS STREAMS STDIN | portforward URL PORT TEXT")
	}
	switch os.Args[1] {
	case "frames":
		frames()
	case "exec":
		if len(os.Args) != 6 {
			fail("exec URL PROTOCOLS STREAMS STDIN")
		}
		execCmd(os.Args[2], strings.Split(os.Args[3], ","), strings.Split(os.Args[4], ","), os.Args[5])
	case "portforward":
		if len(os.Args) != 5 {
			fail("portforward URL PORT TEXT")
		}
		portForward(os.Args[2], os.Args[3], os.Args[4])
	default:
		fail("unknown mode %q", os.Args[1])
	}
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// frames writes a client-go style exec opening with spdystream's framer.
func frames() {
	var buf bytes.Buffer
	f, err := spdy.NewFramer(&buf, &buf)
	if err != nil {
		fail("framer: %v", err)
	}
	write := func(fr spdy.Frame) {
		if err := f.WriteFrame(fr); err != nil {
			fail("write: %v", err)
		}
	}
	for i, t := range []string{"error", "stdin", "stdout"} {
		write(&spdy.SynStreamFrame{StreamId: spdy.StreamId(2*i + 1), Headers: header("streamType", t)})
	}
	write(&spdy.DataFrame{StreamId: 3, Data: []byte("hello\n")})
	write(&spdy.DataFrame{StreamId: 3, Flags: spdy.DataFlagFin})
	write(&spdy.PingFrame{Id: 1})
	write(&spdy.GoAwayFrame{LastGoodStreamId: 0, Status: spdy.GoAwayOK})
	fmt.Println(hex.EncodeToString(buf.Bytes()))
}

// upgrade makes the HTTP/1.1 upgrade request and returns the connection and the chosen
// protocol, as client-go's SPDY round tripper does.
func upgrade(rawURL string, protocols []string) (net.Conn, string) {
	u, err := url.Parse(rawURL)
	if err != nil {
		fail("url: %v", err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		fail("dial: %v", err)
	}
	req, _ := http.NewRequest("POST", rawURL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	for _, p := range protocols {
		req.Header.Add("X-Stream-Protocol-Version", p)
	}
	if err := req.Write(conn); err != nil {
		fail("request: %v", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		fail("response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := ioutil.ReadAll(resp.Body)
		out, _ := json.Marshal(map[string]interface{}{"status": resp.StatusCode, "body": string(body)})
		fmt.Println(string(out))
		os.Exit(0)
	}
	if br.Buffered() > 0 {
		fail("server sent data before any stream was opened")
	}
	return conn, resp.Header.Get("X-Stream-Protocol-Version")
}

func openStream(c *spdystream.Connection, h http.Header) *spdystream.Stream {
	s, err := c.CreateStream(h, nil, false)
	if err != nil {
		fail("create stream %v: %v", h, err)
	}
	if err := s.WaitTimeout(30 * time.Second); err != nil {
		fail("no SYN_REPLY for %v: %v", h, err)
	}
	return s
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func execCmd(rawURL string, protocols, streams []string, stdin string) {
	conn, protocol := upgrade(rawURL, protocols)
	c, err := spdystream.NewConnection(conn, false)
	if err != nil {
		fail("spdy: %v", err)
	}
	go c.Serve(spdystream.NoOpStreamHandler)
	opened := map[string]*spdystream.Stream{}
	for _, t := range streams {
		opened[t] = openStream(c, header("streamType", t))
	}
	var wg sync.WaitGroup
	read := func(name string, into *[]byte) {
		s := opened[name]
		if s == nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			*into, _ = ioutil.ReadAll(s)
		}()
	}
	var stdout, stderr, errorText []byte
	read("stdout", &stdout)
	read("stderr", &stderr)
	if s := opened["resize"]; s != nil {
		s.Write([]byte(`{"Width":80,"Height":24}` + "\n"))
		s.Write([]byte(`{"Width":100,"Height":30}` + "\n"))
	}
	if s := opened["stdin"]; s != nil {
		var data []byte
		if strings.HasPrefix(stdin, "text:") {
			data = []byte(strings.TrimPrefix(stdin, "text:"))
		} else if n, err := strconv.Atoi(stdin); err == nil {
			data = pattern(n)
		}
		// In 32 KiB writes, as io.Copy from a pipe would.
		for len(data) > 0 {
			n := len(data)
			if n > 32*1024 {
				n = 32 * 1024
			}
			if _, err := s.Write(data[:n]); err != nil {
				fail("stdin: %v", err)
			}
			data = data[n:]
		}
		s.Close()
	}
	wg.Wait()
	if s := opened["error"]; s != nil {
		errorText, _ = ioutil.ReadAll(s)
	}
	c.Close()
	sum := sha256.Sum256(stdout)
	text := string(stdout)
	if len(text) > 4096 {
		text = ""
	}
	out, _ := json.Marshal(map[string]interface{}{
		"status":     101,
		"protocol":   protocol,
		"stdout":     text,
		"stdout_len": len(stdout),
		"stdout_sha": hex.EncodeToString(sum[:]),
		"stderr":     string(stderr),
		"error":      string(errorText),
	})
	fmt.Println(string(out))
}

func portForward(rawURL, port, text string) {
	conn, protocol := upgrade(rawURL, []string{"portforward.k8s.io"})
	c, err := spdystream.NewConnection(conn, false)
	if err != nil {
		fail("spdy: %v", err)
	}
	go c.Serve(spdystream.NoOpStreamHandler)
	// As client-go: the error stream first, closed for writing at once, then data.
	errStream := openStream(c, header("streamType", "error", "port", port, "requestID", "0"))
	errStream.Close()
	var errText []byte
	errDone := make(chan struct{})
	go func() {
		errText, _ = ioutil.ReadAll(errStream)
		close(errDone)
	}()
	data := openStream(c, header("streamType", "data", "port", port, "requestID", "0"))
	if _, err := io.WriteString(data, text); err != nil {
		fail("data: %v", err)
	}
	data.Close()
	reply, _ := ioutil.ReadAll(data)
	<-errDone
	c.Close()
	out, _ := json.Marshal(map[string]interface{}{
		"status":   101,
		"protocol": protocol,
		"data":     string(reply),
		"error":    string(errText),
	})
	fmt.Println(string(out))
}
