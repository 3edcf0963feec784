package kit

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestValidUUID(t *testing.T) {
	const id = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
	tests := []struct {
		in   string
		want bool
	}{
		{id, true},
		{strings.ToUpper(id), true},
		{"00000000-0000-0000-0000-000000000000", true},
		{"1b4e28ba-2fa1-01d2-883f-0016d3cca427", false}, // version 0
		{"1b4e28ba-2fa1-61d2-883f-0016d3cca427", false}, // version 6 (uuid@8 allows 1-5)
		{"1b4e28ba-2fa1-41d2-c83f-0016d3cca427", false}, // variant c
		{"1b4e28ba2fa141d2883f0016d3cca427", false},
		{"", false},
		{id + "0", false},
	}
	for _, tt := range tests {
		if got := ValidUUID(tt.in); got != tt.want {
			t.Errorf("ValidUUID(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

type testConfig struct {
	Name  string   `json:"name"`
	Delay Duration `json:"delay"`
	N     int      `json:"n"`
}

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		keys    []string
		want    testConfig
		wantErr string // substring; "" means no error
	}{
		{name: "nil", raw: ""},
		{name: "null", raw: " null "},
		{name: "empty object", raw: "{}"},
		{name: "values", raw: `{"name":"a","delay":"1.5s","n":3}`, keys: []string{"delay"},
			want: testConfig{Name: "a", Delay: Duration{D: 1500 * time.Millisecond, Set: true}, N: 3}},
		{name: "null duration unset", raw: `{"delay":null}`, keys: []string{"delay"}},
		{name: "zero duration set", raw: `{"delay":"0s"}`, keys: []string{"delay"}, want: testConfig{Delay: Duration{Set: true}}},
		{name: "unknown key", raw: `{"nme":"a"}`, wantErr: `x config: json: unknown field "nme"`},
		{name: "wrong type names key", raw: `{"n":"3"}`, wantErr: `x config: key "n": want int, got string`},
		{name: "duration not a string", raw: `{"delay":5}`, keys: []string{"delay"},
			wantErr: `x config: key "delay": want a duration string such as "7m", got 5`},
		{name: "bad duration", raw: `{"delay":"soon"}`, keys: []string{"delay"}, wantErr: `x config: key "delay": bad duration "soon"`},
		{name: "not an object with duration keys", raw: `[1]`, keys: []string{"delay"}, wantErr: "x config: want an object"},
		{name: "not an object without duration keys", raw: `[1]`, wantErr: `x config: key "": want kit.testConfig, got array`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c testConfig
			err := DecodeConfig(json.RawMessage(tt.raw), &c, "x config", "7m", tt.keys...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if c != tt.want {
				t.Errorf("config = %+v, want %+v", c, tt.want)
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	var d Duration
	if err := json.Unmarshal([]byte(`"90s"`), &d); err != nil || d != (Duration{D: 90 * time.Second, Set: true}) {
		t.Fatalf("unmarshal = %+v, %v", d, err)
	}
	b, err := json.Marshal(d)
	if err != nil || string(b) != `"1m30s"` {
		t.Errorf("marshal = %s, %v", b, err)
	}
	if err := json.Unmarshal([]byte(`null`), &d); err != nil || d != (Duration{}) {
		t.Errorf("null = %+v, %v; want unset", d, err)
	}
	if err := json.Unmarshal([]byte(`true`), &d); err == nil || !strings.Contains(err.Error(), `"60s"`) {
		t.Errorf("bool: err = %v, want the default example", err)
	}
}

func TestEventSecretOK(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		secret string
		want   bool
	}{
		{name: "match", values: []string{"s3cret"}, secret: "s3cret", want: true},
		{name: "mismatch", values: []string{"s3creT"}, secret: "s3cret"},
		{name: "prefix", values: []string{"s3c"}, secret: "s3cret"},
		{name: "missing", secret: "s3cret"},
		{name: "twice", values: []string{"s3cret", "s3cret"}, secret: "s3cret"},
		{name: "empty secret refuses empty header", values: []string{""}, secret: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.values {
				h.Add("x-hasura-event-secret", v)
			}
			if got := EventSecretOK(h, tt.secret); got != tt.want {
				t.Errorf("EventSecretOK = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTextResponse(t *testing.T) {
	r := TextResponse(http.StatusTeapot, "hi")
	if r.Status != http.StatusTeapot || string(r.Body) != "hi" || r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("TextResponse = %+v", r)
	}
	if got := JSONHeader().Get("Content-Type"); got != "application/json; charset=utf-8" {
		t.Errorf("JSONHeader Content-Type = %q", got)
	}
}

func TestHasuraDo(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		secret   string
		max      int64
		wantData string
		wantErr  string
		wantGQL  bool
	}{
		{name: "data", status: 200, body: `{"data":{"a":1}}`, secret: "adm", max: 1 << 20, wantData: `{"a":1}`},
		{name: "graphql error", status: 200, body: `{"errors":[{"message":"nope"},{"message":"x"}]}`, max: 1 << 20, wantErr: "hasura: nope", wantGQL: true},
		{name: "status", status: 502, body: `{}`, max: 1 << 20, wantErr: "hasura answered 502 Bad Gateway"},
		{name: "not json", status: 200, body: `<html>`, max: 1 << 20, wantErr: "decode hasura answer"},
		{name: "over the bound", status: 200, body: `{"data":{"a":1}}`, max: 5, wantErr: "decode hasura answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotSecret, gotQuery string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotSecret = r.Header.Get("X-Hasura-Admin-Secret")
				b, _ := io.ReadAll(r.Body)
				gotQuery = string(b)
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			h := Hasura{Client: srv.Client(), URL: srv.URL, AdminSecret: tt.secret, MaxResponse: tt.max}
			data, err := h.Do(context.Background(), "query Q { a }", map[string]any{"v": 1})
			if gotSecret != tt.secret {
				t.Errorf("admin secret header = %q, want %q", gotSecret, tt.secret)
			}
			if gotQuery != `{"query":"query Q { a }","variables":{"v":1}}` {
				t.Errorf("request body = %s", gotQuery)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				var ge *GraphQLError
				if errors.As(err, &ge) != tt.wantGQL {
					t.Errorf("GraphQLError = %v, want %v", ge != nil, tt.wantGQL)
				}
				return
			}
			if err != nil || string(data) != tt.wantData {
				t.Fatalf("Do = %s, %v; want %s", data, err, tt.wantData)
			}
			var out struct{ A int }
			if err := h.DoInto(context.Background(), "q", nil, &out); err != nil || out.A != 1 {
				t.Errorf("DoInto = %+v, %v", out, err)
			}
		})
	}
}

func TestHasuraDoIntoNoData(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	h := Hasura{Client: srv.Client(), URL: srv.URL, MaxResponse: 1 << 20}
	var out map[string]any
	if err := h.DoInto(context.Background(), "q", nil, &out); err == nil || !strings.Contains(err.Error(), "decode hasura data") {
		t.Errorf("err = %v, want a decode hasura data error", err)
	}
}

func TestJSONString(t *testing.T) {
	tests := []struct {
		raw    string
		want   string
		wantOK bool
	}{
		{`"a\u00e9"`, "aé", true},
		{`""`, "", true},
		{` "a"`, "", false},
		{`1`, "", false},
		{`null`, "", false},
		{``, "", false},
		{`"unterminated`, "", false},
	}
	for _, tt := range tests {
		got, ok := JSONString(json.RawMessage(tt.raw))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("JSONString(%q) = %q, %v; want %q, %v", tt.raw, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestRandomHex(t *testing.T) {
	a, b := RandomHex(), RandomHex()
	if len(a) != 16 || strings.Trim(a, "0123456789abcdef") != "" || a == b {
		t.Fatalf("RandomHex() = %q, %q; want two different 16-digit hex strings", a, b)
	}
}
