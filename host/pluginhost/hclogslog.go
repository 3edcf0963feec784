package pluginhost

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// slogTrace is the slog level hclog's Trace maps to.
const slogTrace = slog.LevelDebug - 4

// hclogSlog is an hclog.Logger over a *slog.Logger. go-plugin logs through
// it, and re-logs every hclog JSON line a plugin writes on its stderr through
// it at the line's own level, so plugin logs land in the host's slog output
// (with plugin=<name>, which the caller puts on the slog logger).
type hclogSlog struct {
	l       *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*hclogSlog)(nil)

// newHCLogAdapter returns an hclog.Logger writing to l.
func newHCLogAdapter(l *slog.Logger) hclog.Logger { return &hclogSlog{l: l} }

func toSlogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slogTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// dropKeys are attributes go-plugin adds to re-logged plugin lines that slog
// already has (its own time) or that repeat the plugin attribute.
var dropKeys = map[string]bool{"timestamp": true, "@module": true, "@caller": true}

func (h *hclogSlog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	sl := toSlogLevel(level)
	ctx := context.Background()
	if !h.l.Enabled(ctx, sl) {
		return
	}
	kv := make([]any, 0, len(args))
	for i := 0; i+1 < len(args); i += 2 {
		k, _ := args[i].(string)
		switch {
		case dropKeys[k]:
			continue
		case k == "plugin": // go-plugin's binary path; ours is the plugin's name
			kv = append(kv, "path", args[i+1])
		default:
			kv = append(kv, args[i], args[i+1])
		}
	}
	if len(args)%2 == 1 {
		kv = append(kv, "extra", args[len(args)-1])
	}
	h.l.Log(ctx, sl, msg, kv...)
}

func (h *hclogSlog) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogSlog) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogSlog) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogSlog) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogSlog) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogSlog) enabled(l slog.Level) bool { return h.l.Enabled(context.Background(), l) }

func (h *hclogSlog) IsTrace() bool { return h.enabled(slogTrace) }
func (h *hclogSlog) IsDebug() bool { return h.enabled(slog.LevelDebug) }
func (h *hclogSlog) IsInfo() bool  { return h.enabled(slog.LevelInfo) }
func (h *hclogSlog) IsWarn() bool  { return h.enabled(slog.LevelWarn) }
func (h *hclogSlog) IsError() bool { return h.enabled(slog.LevelError) }

func (h *hclogSlog) ImpliedArgs() []any { return h.implied }

func (h *hclogSlog) With(args ...any) hclog.Logger {
	return &hclogSlog{l: h.l.With(args...), name: h.name, implied: append(append([]any(nil), h.implied...), args...)}
}

func (h *hclogSlog) Name() string { return h.name }

// Named returns the same logger (names are go-plugin internals such as the
// binary's name), except that "stdio" is silenced: go-plugin's stdio stream
// chatter ("received EOF, stopping recv loop") is noise.
func (h *hclogSlog) Named(name string) hclog.Logger {
	if name == "stdio" || strings.HasSuffix(name, ".stdio") {
		return hclog.NewNullLogger()
	}
	return &hclogSlog{l: h.l, name: name, implied: h.implied}
}

func (h *hclogSlog) ResetNamed(name string) hclog.Logger { return h.Named(name) }

// SetLevel is a no-op: the slog handler decides what is logged.
func (h *hclogSlog) SetLevel(hclog.Level) {}

// GetLevel reports the lowest level the slog handler accepts.
func (h *hclogSlog) GetLevel() hclog.Level {
	switch {
	case h.IsTrace():
		return hclog.Trace
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	case h.IsError():
		return hclog.Error
	}
	return hclog.Off
}

func (h *hclogSlog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogSlog) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineLogger{l: h.l, level: slog.LevelInfo, msg: "plugin log"}
}

// maxLine bounds one buffered output line.
const maxLine = 64 << 10

// lineLogger logs each line written to it (a plugin's stdout/stderr after
// the handshake) as one record.
type lineLogger struct {
	l     *slog.Logger
	level slog.Level
	msg   string

	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		i := bytes.IndexByte(w.buf.Bytes(), '\n')
		if i < 0 {
			if w.buf.Len() > maxLine {
				w.emit(w.buf.Bytes())
				w.buf.Reset()
			}
			return len(p), nil
		}
		w.emit(w.buf.Bytes()[:i])
		w.buf.Next(i + 1)
	}
}

func (w *lineLogger) emit(line []byte) {
	s := strings.TrimRight(string(line), "\r")
	if s == "" {
		return
	}
	w.l.Log(context.Background(), w.level, w.msg, "line", s)
}
