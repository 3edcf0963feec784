package kit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Duration is a time.Duration written in JSON as a Go duration string
// ("60s"). Set tells a value given in the config from an absent (or null)
// one, so zero durations can be told from defaults.
type Duration struct {
	D   time.Duration
	Set bool
}

// defaultDurationExample is the example that [Duration.UnmarshalJSON] puts
// in its error; [DecodeConfig] names the plugin's own.
const defaultDurationExample = "60s"

// ParseDuration reads one JSON value as a [Duration]: a duration string, or
// null (which gives the unset Duration). example is shown in the error for
// a value that is not a string.
func ParseDuration(b []byte, example string) (Duration, error) {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return Duration{}, nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return Duration{}, fmt.Errorf("want a duration string such as %q, got %s", example, b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return Duration{}, fmt.Errorf("bad duration %q: %w", s, err)
	}
	return Duration{D: v, Set: true}, nil
}

// UnmarshalJSON accepts a duration string such as "90s"; null unsets it.
func (d *Duration) UnmarshalJSON(b []byte) error {
	v, err := ParseDuration(b, defaultDurationExample)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.D.String()) }

// DecodeConfig strictly decodes a plugin's JSON config into v (a pointer to
// the plugin's Config). nil, empty or null raw leaves v untouched. Unknown
// keys are an error, and a value of the wrong type gives an error naming its
// key. Every error starts with prefix (such as "chat config").
//
// When durationKeys are given, raw must be an object and those keys, when
// present, are first read as [Duration]s so that a bad one gives an error
// naming the key, with example as the sample duration.
func DecodeConfig(raw json.RawMessage, v any, prefix, example string, durationKeys ...string) error {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil
	}
	if len(durationKeys) > 0 {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(t, &keys); err != nil {
			return fmt.Errorf("%s: want an object: %w", prefix, err)
		}
		for _, k := range durationKeys {
			if b, ok := keys[k]; ok {
				if _, err := ParseDuration(b, example); err != nil {
					return fmt.Errorf("%s: key %q: %w", prefix, k, err)
				}
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%s: key %q: want %s, got %s", prefix, te.Field, te.Type, te.Value)
		}
		return fmt.Errorf("%s: %w", prefix, err)
	}
	return nil
}
