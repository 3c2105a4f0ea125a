package kclproc

import (
	"cmp"
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/buildtelemetry/pipeline/processor"
)

// Defaults of BreakerConfig.
const (
	// DefaultBreakerFailures is how many consecutive transient failures
	// open a sink's breaker.
	DefaultBreakerFailures = 5
	// DefaultBreakerOpenTimeout is how long a breaker stays open before a
	// half-open probe: long enough for a flapping destination to recover,
	// short enough that parked data stays small.
	DefaultBreakerOpenTimeout = 30 * time.Second
)

// BreakerConfig configures every sink's circuit breaker.
type BreakerConfig struct {
	Failures    uint32        // DefaultBreakerFailures
	OpenTimeout time.Duration // DefaultBreakerOpenTimeout
}

// breaker guards one sink for all shards of the worker: a destination
// that is down is down for every shard.
type breaker struct {
	cb *gobreaker.CircuitBreaker[struct{}]
}

func newBreaker(name string, cfg BreakerConfig, onChange func(from, to gobreaker.State)) *breaker {
	cfg.Failures = cmp.Or(cfg.Failures, DefaultBreakerFailures)
	cfg.OpenTimeout = cmp.Or(cfg.OpenTimeout, DefaultBreakerOpenTimeout) // NewFactory refused a negative one
	st := gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     cfg.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.Failures },
		// Only transient failures say the destination is unhealthy: a 400
		// for one bad batch, or events it refuses, must not stop the others.
		IsSuccessful: func(err error) bool {
			var pe *processor.PartialError
			return err == nil || processor.IsPermanent(err) || errors.As(err, &pe)
		},
		// Our own shutdown is not the destination's fault.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if onChange != nil {
				onChange(from, to)
			}
		},
	}
	return &breaker{cb: gobreaker.NewCircuitBreaker[struct{}](st)}
}

// do runs f through the breaker. It returns errBreakerOpen without calling
// f while the breaker is open, or half-open with its probe in flight.
func (b *breaker) do(f func() error) error {
	_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, f() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return errBreakerOpen
	}
	return err
}

func (b *breaker) open() bool { return b.cb.State() == gobreaker.StateOpen }

var errBreakerOpen = errors.New("circuit breaker open")

func (b *breaker) closed() bool { return b.cb.State() == gobreaker.StateClosed }
