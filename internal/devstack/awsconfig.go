package devstack

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// NonLoopbackError is returned (wrapped by the SDK) when a client built by NewAWSConfig
// tries to connect anywhere but a loopback address, e.g. because an endpoint was not
// set and the SDK resolved the real AWS host name.
type NonLoopbackError struct {
	// Addr is the host:port the client tried to dial.
	Addr string
}

// Error implements error.
func (e *NonLoopbackError) Error() string {
	return fmt.Sprintf("refusing non-loopback address %q", e.Addr)
}

// RetryableError tells the SDK retryer not to retry: the address will not change.
func (e *NonLoopbackError) RetryableError() bool { return false }

// NewAWSConfig returns an aws.Config for the emulators. It is built by hand rather than
// with config.LoadDefaultConfig so that nothing is read from the environment, the shared
// config files or IMDS: the region is region (DefaultRegion when empty), the
// credentials are the static S3RVER pair, and the HTTP client refuses to dial any
// non-loopback address (so no DNS lookup or connection to real AWS can happen) and
// ignores HTTP(S)_PROXY. Endpoints are set per client (see Stack.Kinesis etc.).
func NewAWSConfig(region string) aws.Config {
	region = cmp.Or(region, DefaultRegion)
	client := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.Proxy = nil
		tr.DialContext = loopbackDialer(&net.Dialer{Timeout: awshttp.DefaultDialConnectTimeout, KeepAlive: awshttp.DefaultDialKeepAliveTimeout})
	})
	return aws.Config{
		Region:      region,
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, "")),
		HTTPClient:  client,
		// The standard retryer matters: s3rver's DeleteObjects sporadically answers 500
		// on the first attempt.
		Retryer: func() aws.Retryer { return retry.NewStandard() },
	}
}

// loopbackDialer wraps d so that it dials only literal loopback IPs and "localhost".
// The check runs before any name resolution, so a real AWS host name fails at once.
func loopbackDialer(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("split address %q: %w", addr, err)
		}
		if strings.EqualFold(host, "localhost") {
			// Pinned to 127.0.0.1 rather than resolved: the emulators bind only IPv4
			// loopback, and a resolver could in theory answer with something else.
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Unmap().IsLoopback() {
			return nil, &NonLoopbackError{Addr: addr}
		}
		return d.DialContext(ctx, network, addr)
	}
}
