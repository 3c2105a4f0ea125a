package limits

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Proxy is the limits layer in front of a Kinesis and a DynamoDB
// emulator, listening on two loopback ports. It is safe for concurrent
// use.
type Proxy struct {
	// KinesisURL and DynamoDBURL are the endpoints to use instead of the
	// emulators'.
	KinesisURL, DynamoDBURL string

	stats   *counter
	servers []*http.Server
}

// Start starts the proxies in front of the emulators at kinesisURL and
// dynamoURL.
func Start(kinesisURL, dynamoURL string, cfg Config) (*Proxy, error) {
	p := &Proxy{stats: &counter{}}
	for _, s := range []struct {
		h   http.Handler
		url *string
	}{
		{newKinesisProxy(kinesisURL, cfg, p.stats), &p.KinesisURL},
		{newDynamoProxy(dynamoURL, cfg, p.stats), &p.DynamoDBURL},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("limits: listen: %w", err)
		}
		srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Println("limits: serve:", err)
			}
		}()
		p.servers = append(p.servers, srv)
		*s.url = "http://" + ln.Addr().String()
	}
	return p, nil
}

// Stats returns what the proxies passed and refused so far.
func (p *Proxy) Stats() Stats { return p.stats.snapshot() }

// Close stops the proxies.
func (p *Proxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, s := range p.servers {
		errs = append(errs, s.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// readAll reads a request body of at most 32 MiB: more than any AWS
// request the SDK sends.
func readAll(r *http.Request) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r.Body, 32<<20))
}
