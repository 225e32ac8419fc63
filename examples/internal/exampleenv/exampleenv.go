package exampleenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/milequest/pushercm/client"
)

// Addr is the gRPC address from PUSHERCM_ADDR.
func Addr() string {
	if a := os.Getenv("PUSHERCM_ADDR"); a != "" {
		return a
	}
	return "localhost:50051"
}

// Dial connects with the token from PUSHERCM_TOKEN, waiting at most 10s.
func Dial(ctx context.Context) (*client.Client, error) {
	tok := os.Getenv("PUSHERCM_TOKEN")
	if tok == "" {
		return nil, errors.New("PUSHERCM_TOKEN is not set; mint one with: pushercm token --dev --sub example --scopes events:publish,connections:read")
	}
	addr := Addr()
	opts := []client.Option{client.WithToken(tok)}
	if insecureFor(addr) {
		opts = append(opts, client.WithInsecure())
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w (is `pushercm serve --dev` running on %s?)", err, addr)
	}
	return c, nil
}

func insecureFor(addr string) bool {
	if v, err := strconv.ParseBool(os.Getenv("PUSHERCM_INSECURE")); err == nil {
		return v
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
