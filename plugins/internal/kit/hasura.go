package kit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// Hasura posts GraphQL requests to a Hasura endpoint.
type Hasura struct {
	// Client does the requests; it should have a timeout.
	Client *http.Client
	// URL is Hasura's GraphQL endpoint.
	URL string
	// AdminSecret, when not empty, is sent as x-hasura-admin-secret.
	AdminSecret string
	// MaxResponse bounds the response body read, in bytes.
	MaxResponse int64
}

// GraphQLError is the first error of a GraphQL answer that carried errors
// (Hasura refused the request: likely permanent).
type GraphQLError struct {
	// Message is the error's message.
	Message string
}

// Error implements error.
func (e *GraphQLError) Error() string { return "hasura: " + e.Message }

// Do posts one request and returns its data. A non-2xx status, an answer
// that is not a GraphQL response, and a transport failure are errors; an
// answer with errors gives a *[GraphQLError].
func (h Hasura) Do(ctx context.Context, query string, vars map[string]any) (json.RawMessage, error) {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if h.AdminSecret != "" {
		req.Header.Set("X-Hasura-Admin-Secret", h.AdminSecret)
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("post to hasura: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, h.MaxResponse))
	if err != nil {
		return nil, fmt.Errorf("read hasura answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("hasura answered %s", resp.Status)
	}
	var out struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decode hasura answer: %w", err)
	}
	if len(out.Errors) > 0 {
		return nil, &GraphQLError{Message: out.Errors[0].Message}
	}
	return out.Data, nil
}

// DoInto is [Hasura.Do] that decodes the data into out.
func (h Hasura) DoInto(ctx context.Context, query string, vars map[string]any, out any) error {
	data, err := h.Do(ctx, query, vars)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode hasura data: %w", err)
	}
	return nil
}
