package sdk

import (
	"context"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// NewHCLogHandler returns a slog.Handler that writes through an hclog.Logger.
// A plugin process logs this way so that its lines are hclog JSON, which the
// host parses and re-logs at the right level.
func NewHCLogHandler(l hclog.Logger) slog.Handler { return &hclogHandler{l: l} }

type hclogHandler struct {
	l      hclog.Logger
	attrs  []any // key/value pairs
	prefix string
}

var _ slog.Handler = (*hclogHandler)(nil)

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l >= slog.LevelError:
		return hclog.Error
	case l >= slog.LevelWarn:
		return hclog.Warn
	case l >= slog.LevelInfo:
		return hclog.Info
	case l >= slog.LevelDebug:
		return hclog.Debug
	}
	return hclog.Trace
}

func (h *hclogHandler) Enabled(_ context.Context, l slog.Level) bool {
	lv := h.l.GetLevel()
	return lv != hclog.Off && hclogLevel(l) >= lv
}

func (h *hclogHandler) appendAttr(kv []any, prefix string, a slog.Attr) []any {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return kv
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p = prefix + a.Key + "."
		}
		for _, g := range a.Value.Group() {
			kv = h.appendAttr(kv, p, g)
		}
		return kv
	}
	return append(kv, prefix+a.Key, a.Value.Any())
}

func (h *hclogHandler) Handle(_ context.Context, r slog.Record) error {
	kv := make([]any, 0, len(h.attrs)+2*r.NumAttrs())
	kv = append(kv, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		kv = h.appendAttr(kv, h.prefix, a)
		return true
	})
	h.l.Log(hclogLevel(r.Level), r.Message, kv...)
	return nil
}

func (h *hclogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &hclogHandler{l: h.l, prefix: h.prefix, attrs: append([]any(nil), h.attrs...)}
	for _, a := range attrs {
		n.attrs = n.appendAttr(n.attrs, h.prefix, a)
	}
	return n
}

func (h *hclogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &hclogHandler{l: h.l, attrs: h.attrs, prefix: h.prefix + strings.TrimSuffix(name, ".") + "."}
}
