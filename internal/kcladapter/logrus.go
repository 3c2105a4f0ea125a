package kcladapter

import (
	"io"
	"slices"

	"github.com/sirupsen/logrus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// RouteLogrus sends the global logrus logger's entries to l, and nothing to
// standard error.
//
// The library's polling shard consumer logs lease renewals (and their
// failures) through the global logrus logger rather than the configured
// Logger. This is the one place the worker touches
// that global state, which belongs to the library: it discards logrus'
// own output (and skips its formatting), replaces its hooks with one that
// writes each entry's message and fields to l at the matching level
// (fatal and panic entries at error level with fatal=true), and has logrus
// report the caller so the entry names the library's code. Call it once,
// before starting the KCL worker; a second call replaces the first.
//
// logrus is set to its debug level and l decides what is kept, so that a
// level change on l (an AtomicLevel) applies to these entries too. The
// cost is small: the library logs through logrus once per lease renewal
// per shard.
//
// logrus' own Fatal and Panic still exit and panic after the hook has
// run; the library does not call them on the global logger.
func RouteLogrus(l *zap.Logger) {
	if l == nil {
		l = zap.NewNop()
	}
	std := logrus.StandardLogger()
	std.SetOutput(io.Discard)
	std.SetFormatter(discardFormatter{})
	std.SetReportCaller(true)
	std.SetLevel(logrus.DebugLevel)
	std.ReplaceHooks(logrus.LevelHooks{})
	std.AddHook(&zapHook{core: l.Core(), name: l.Name()})
}

// discardFormatter formats nothing: the output is discarded anyway.
type discardFormatter struct{}

// Format returns no bytes.
func (discardFormatter) Format(*logrus.Entry) ([]byte, error) { return nil, nil }

// zapHook writes logrus entries to a zap core. It is safe for concurrent
// use, as zap cores are.
type zapHook struct {
	core zapcore.Core
	name string
}

var _ logrus.Hook = (*zapHook)(nil)

// Levels returns every level.
func (*zapHook) Levels() []logrus.Level { return logrus.AllLevels }

// Fire writes e to the core, with logrus' time and caller.
func (h *zapHook) Fire(e *logrus.Entry) error {
	lvl, fatal := zapLevel(e.Level)
	ent := zapcore.Entry{Level: lvl, Time: e.Time, LoggerName: h.name, Message: e.Message}
	if c := e.Caller; c != nil {
		ent.Caller = zapcore.NewEntryCaller(c.PC, c.File, c.Line, true)
		ent.Caller.Function = c.Function
	}
	ce := h.core.Check(ent, nil)
	if ce == nil {
		return nil
	}
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fields := make([]zap.Field, 0, len(keys)+1)
	for _, k := range keys {
		fields = append(fields, zap.Any(k, e.Data[k]))
	}
	if fatal {
		fields = append(fields, zap.Bool("fatal", true))
	}
	ce.Write(fields...)
	return nil
}

// zapLevel maps a logrus level to zap's; fatal and panic map to error
// (and report true) so that writing the entry cannot end the process.
func zapLevel(l logrus.Level) (zapcore.Level, bool) {
	switch l {
	case logrus.TraceLevel, logrus.DebugLevel:
		return zapcore.DebugLevel, false
	case logrus.InfoLevel:
		return zapcore.InfoLevel, false
	case logrus.WarnLevel:
		return zapcore.WarnLevel, false
	case logrus.ErrorLevel:
		return zapcore.ErrorLevel, false
	}
	return zapcore.ErrorLevel, true
}
