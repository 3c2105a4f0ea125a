package kcladapter

import (
	"slices"

	"github.com/vmware/vmware-go-kcl-v2/logger"
	"go.uber.org/zap"
)

// zapLogger is the library's logger.Logger over a zap logger. It is safe
// for concurrent use, as zap is.
type zapLogger struct {
	s *zap.SugaredLogger
}

var _ logger.Logger = (*zapLogger)(nil)

// NewLogger returns the library's Logger writing to l (nothing when l is
// nil). Debugf, Infof, Warnf and Errorf log at zap's level of the same
// name. Fatalf and Panicf log at error level with the field fatal=true and
// return: they never exit the process or panic (see Fatalf).
func NewLogger(l *zap.Logger) logger.Logger {
	if l == nil {
		l = zap.NewNop()
	}
	// Every method calls the sugared logger directly, one frame below the
	// library's call site: skip that frame so the caller field names the
	// library's code, not this file.
	return &zapLogger{s: l.WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

// Debugf logs at debug level.
func (z *zapLogger) Debugf(format string, args ...any) { z.s.Debugf(format, args...) }

// Infof logs at info level.
func (z *zapLogger) Infof(format string, args ...any) { z.s.Infof(format, args...) }

// Warnf logs at warn level.
func (z *zapLogger) Warnf(format string, args ...any) { z.s.Warnf(format, args...) }

// Errorf logs at error level.
func (z *zapLogger) Errorf(format string, args ...any) { z.s.Errorf(format, args...) }

// Fatalf logs at error level with fatal=true, and returns.
//
// The library calls Fatalf where it fails to load an AWS config for the
// Kinesis client or the DynamoDB checkpointer it builds when none is
// given. An exit there would skip the worker's whole shutdown: final
// checkpoints and lease release for every shard, sink flushes, so that
// other workers wait for lease expiry and replay. The worker passes its
// own Kinesis client and checkpointer, so those paths do not run; if one
// ever does, the library goes on with a client whose first call fails,
// an error the worker sees and shuts down on in order.
func (z *zapLogger) Fatalf(format string, args ...any) {
	z.s.With("fatal", true).Errorf(format, args...)
}

// Panicf logs like Fatalf, and returns, for the same reason: a panic in a
// library goroutine would take the process down with no shutdown. (The
// library's config validation panics through the standard library's log
// package, not through this logger: the worker validates its settings
// before handing them over.)
func (z *zapLogger) Panicf(format string, args ...any) {
	z.s.With("fatal", true).Errorf(format, args...)
}

// WithFields returns a logger that adds the fields to every entry, in key
// order so that the output does not depend on map iteration.
func (z *zapLogger) WithFields(fields logger.Fields) logger.Logger {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	kv := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		kv = append(kv, k, fields[k])
	}
	return &zapLogger{s: z.s.With(kv...)}
}
