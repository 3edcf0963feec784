package reliability

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// rawWS is a hand-rolled websocket client that can send frames no library
// client would: binary frames, invalid UTF-8 text, reserved bits, unmasked
// frames, oversized control frames. It also never reads unless asked, which
// makes it a slow consumer.
type rawWS struct {
	c  net.Conn
	br *bufio.Reader
}

// Websocket opcodes.
const (
	opCont   byte = 0x0
	opText   byte = 0x1
	opBinary byte = 0x2
	opClose  byte = 0x8
	opPing   byte = 0x9
	opPong   byte = 0xA
)

// rawUpgrade sends a websocket upgrade to baseURL+path with extra headers
// (a "" value deletes a default header) and returns the connection and the
// response. The connection is usable only when the status is 101.
func rawUpgrade(baseURL, method, path string, header map[string]string) (*rawWS, *http.Response, error) {
	return rawUpgradeWith(&net.Dialer{Timeout: 5 * time.Second}, baseURL, method, path, header)
}

// rawUpgradeWith is rawUpgrade over a connection from d.
func rawUpgradeWith(d *net.Dialer, baseURL, method, path string, header map[string]string) (*rawWS, *http.Response, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, nil, err
	}
	c, err := d.Dial("tcp", u.Host)
	if err != nil {
		return nil, nil, err
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	h := map[string]string{
		"Host":                  u.Host,
		"Upgrade":               "websocket",
		"Connection":            "Upgrade",
		"Sec-WebSocket-Key":     base64.StdEncoding.EncodeToString(key[:]),
		"Sec-WebSocket-Version": "13",
	}
	for k, v := range header {
		h[k] = v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, path)
	for k, v := range h {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, b.String()); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		c.Close()
		return nil, resp, nil
	}
	_ = c.SetDeadline(time.Time{})
	return &rawWS{c: c, br: br}, resp, nil
}

// dialRaw upgrades a Socket.IO websocket at baseURL and reads the Engine.IO
// open packet.
func dialRaw(baseURL string) (*rawWS, error) {
	return dialRawWith(&net.Dialer{Timeout: 5 * time.Second}, baseURL)
}

// dialRawWith is dialRaw over a connection from d.
func dialRawWith(d *net.Dialer, baseURL string) (*rawWS, error) {
	ws, resp, err := rawUpgradeWith(d, baseURL, "GET", "/socket.io/?EIO=4&transport=websocket", nil)
	if err != nil {
		return nil, err
	}
	if ws == nil {
		return nil, fmt.Errorf("upgrade refused: %s", resp.Status)
	}
	op, p, err := ws.read(5 * time.Second)
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("read open packet: %w", err)
	}
	if op != opText || !strings.HasPrefix(string(p), `0{"sid":`) {
		ws.Close()
		return nil, fmt.Errorf("want the open packet, got opcode %d %q", op, p)
	}
	return ws, nil
}

// Close closes the TCP connection.
func (w *rawWS) Close() error { return w.c.Close() }

// frame writes one websocket frame. rsv holds the RSV1-3 bits (0x70 mask);
// unmasked sends it without a mask (illegal from a client).
func (w *rawWS) frame(fin bool, rsv, op byte, payload []byte, unmasked bool) error {
	b0 := op | rsv&0x70
	if fin {
		b0 |= 0x80
	}
	hdr := []byte{b0, 0}
	switch n := len(payload); {
	case n < 126:
		hdr[1] = byte(n)
	case n <= 0xFFFF:
		hdr[1] = 126
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr[1] = 127
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	data := payload
	if !unmasked {
		hdr[1] |= 0x80
		var mask [4]byte
		_, _ = rand.Read(mask[:])
		hdr = append(hdr, mask[:]...)
		data = make([]byte, len(payload))
		for i := range payload {
			data[i] = payload[i] ^ mask[i%4]
		}
	}
	_ = w.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := w.c.Write(append(hdr, data...))
	return err
}

// text sends a final, masked text frame.
func (w *rawWS) text(s string) error { return w.frame(true, 0, opText, []byte(s), false) }

// read reads one frame within d.
func (w *rawWS) read(d time.Duration) (op byte, payload []byte, err error) {
	_ = w.c.SetReadDeadline(time.Now().Add(d))
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return 0, nil, err
	}
	op = h[0] & 0x0F
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 16<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("server sent a masked frame")
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(w.br, payload); err != nil {
		return 0, nil, err
	}
	return op, payload, nil
}

// errClosed is returned by next when a close frame arrived; closeCode has
// the code.
type closedError struct{ code int }

func (e *closedError) Error() string { return fmt.Sprintf("websocket closed with %d", e.code) }

// next returns the next Engine.IO text message within d, answering Engine.IO
// pings and websocket pings on the way. A close frame gives *closedError
// (code -1 when the TCP connection ended without one).
func (w *rawWS) next(d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	for {
		op, p, err := w.read(time.Until(deadline))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return "", err
			}
			return "", &closedError{code: -1}
		}
		switch op {
		case opClose:
			code := 1005
			if len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
			}
			return "", &closedError{code: code}
		case opPing:
			_ = w.frame(true, 0, opPong, p, false)
		case opText:
			if string(p) == "2" {
				_ = w.text("3")
				continue
			}
			return string(p), nil
		}
	}
}

// expect reads messages until one has the given prefix, within d.
func (w *rawWS) expect(prefix string, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	for {
		m, err := w.next(time.Until(deadline))
		if err != nil {
			return "", fmt.Errorf("waiting for %q: %w", prefix, err)
		}
		if strings.HasPrefix(m, prefix) {
			return m, nil
		}
	}
}

// connect sends the Socket.IO CONNECT with tok and waits for the
// acknowledgement and server.ready.
func (w *rawWS) connect(tok string) error {
	if err := w.text(`40{"token":"` + tok + `"}`); err != nil {
		return err
	}
	m, err := w.expect("4", 10*time.Second)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(m, `40{"sid":`) {
		return fmt.Errorf("CONNECT answered %q", m)
	}
	_, err = w.expect(`42["server.ready"`, 10*time.Second)
	return err
}

// probe proves the connection is alive and has processed everything sent
// before: it emits "time" and waits for the reply.
func (w *rawWS) probe() error {
	if err := w.text(`42["time",{"probe":1}]`); err != nil {
		return err
	}
	_, err := w.expect(`42["time",`, 10*time.Second)
	return err
}

// closeCode reads until the server closes and returns the close code (-1:
// TCP closed without a close frame), or an error after d.
func (w *rawWS) closeCode(d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	for {
		_, err := w.next(time.Until(deadline))
		var ce *closedError
		if errors.As(err, &ce) {
			return ce.code, nil
		}
		if err != nil {
			return 0, err
		}
	}
}
