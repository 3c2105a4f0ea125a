package kcladapter

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/vmware/vmware-go-kcl-v2/logger"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// observed returns a zap logger at level that records its entries, with
// the caller on, as the worker's logger has it.
func observed(level zapcore.Level) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(level)
	return zap.New(core, zap.AddCaller()), logs
}

func TestLoggerLevels(t *testing.T) {
	for _, c := range []struct {
		name      string
		log       func(logger.Logger)
		wantLevel zapcore.Level
		wantFatal bool
	}{
		{"Debugf", func(l logger.Logger) { l.Debugf("m %d", 1) }, zapcore.DebugLevel, false},
		{"Infof", func(l logger.Logger) { l.Infof("m %d", 1) }, zapcore.InfoLevel, false},
		{"Warnf", func(l logger.Logger) { l.Warnf("m %d", 1) }, zapcore.WarnLevel, false},
		{"Errorf", func(l logger.Logger) { l.Errorf("m %d", 1) }, zapcore.ErrorLevel, false},
		// Were these to exit or panic, the test binary would die here.
		{"Fatalf", func(l logger.Logger) { l.Fatalf("m %d", 1) }, zapcore.ErrorLevel, true},
		{"Panicf", func(l logger.Logger) { l.Panicf("m %d", 1) }, zapcore.ErrorLevel, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			zl, logs := observed(zapcore.DebugLevel)
			c.log(NewLogger(zl))
			all := logs.AllUntimed()
			if len(all) != 1 {
				t.Fatalf("got %d entries, want 1", len(all))
			}
			e := all[0]
			if e.Level != c.wantLevel || e.Message != "m 1" {
				t.Errorf("entry = %v %q, want %v %q", e.Level, e.Message, c.wantLevel, "m 1")
			}
			fatal, ok := e.ContextMap()["fatal"]
			if c.wantFatal != ok || (ok && fatal != true) {
				t.Errorf("fatal field = %v (present %v), want present %v", fatal, ok, c.wantFatal)
			}
			// The caller is this test file, not the adapter.
			if got := filepath.Base(e.Caller.File); got != "logger_test.go" {
				t.Errorf("caller = %s, want logger_test.go", e.Caller.String())
			}
		})
	}
}

func TestLoggerWithFields(t *testing.T) {
	zl, logs := observed(zapcore.InfoLevel)
	l := NewLogger(zl).WithFields(logger.Fields{"shard": "shardId-000000000001", "n": 3})
	l.WithFields(logger.Fields{"worker": "w1"}).Infof("lease taken")
	l.Debugf("below the level")
	l.Fatalf("gone")

	all := logs.AllUntimed()
	if len(all) != 2 {
		t.Fatalf("got %d entries, want 2", len(all))
	}
	for i, want := range []map[string]any{
		{"shard": "shardId-000000000001", "n": int64(3), "worker": "w1"},
		{"shard": "shardId-000000000001", "n": int64(3), "fatal": true},
	} {
		got := all[i].ContextMap()
		if len(got) != len(want) {
			t.Errorf("entry %d fields = %v, want %v", i, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("entry %d field %s = %#v, want %#v", i, k, got[k], v)
			}
		}
		if got := filepath.Base(all[i].Caller.File); got != "logger_test.go" {
			t.Errorf("entry %d caller = %s, want logger_test.go", i, all[i].Caller.String())
		}
	}
}

// A nil zap logger gives a working logger that drops everything, as the
// library may log before the worker's logger is wired.
func TestNewLoggerNil(t *testing.T) {
	l := NewLogger(nil)
	if l == nil {
		t.Fatal("NewLogger(nil) = nil")
	}
	z, ok := l.WithFields(logger.Fields{"a": 1}).(*zapLogger)
	if !ok {
		t.Fatalf("WithFields returned %T, want *zapLogger", l.WithFields(nil))
	}
	if z.s.Desugar().Core().Enabled(zapcore.ErrorLevel) {
		t.Error("a nil logger's replacement logs: want a no-op")
	}
	z.Errorf("dropped")
}

// TestRouteLogrus changes the global logrus logger, as the worker does,
// and puts logrus' defaults back at the end.
func TestRouteLogrus(t *testing.T) {
	t.Cleanup(func() {
		std := logrus.StandardLogger()
		std.ReplaceHooks(logrus.LevelHooks{})
		std.SetOutput(os.Stderr)
		std.SetFormatter(new(logrus.TextFormatter))
		std.SetReportCaller(false)
		std.SetLevel(logrus.InfoLevel)
	})
	zl, logs := observed(zapcore.InfoLevel)
	RouteLogrus(zl.Named("kcl"))

	if out := logrus.StandardLogger().Out; out != io.Discard {
		t.Errorf("logrus output = %T, want io.Discard", out)
	}
	// Capture what logrus would write, to check that it formats nothing
	// either.
	var raw strings.Builder
	logrus.SetOutput(&raw)

	logrus.Debugf("Refreshing lease on shard: %s", "shardId-000000000001") // below info: dropped
	logrus.WithField("shard", "shardId-000000000001").WithError(errors.New("conditional check failed")).
		Errorf("Error in refreshing lease on shard: %s", "shardId-000000000001")
	logrus.Infof("Shard %s closed", "shardId-000000000002")

	all := logs.AllUntimed()
	if len(all) != 2 {
		t.Fatalf("got %d entries, want 2: %v", len(all), all)
	}
	e := all[0]
	if e.Level != zapcore.ErrorLevel || e.Message != "Error in refreshing lease on shard: shardId-000000000001" || e.LoggerName != "kcl" {
		t.Errorf("entry = %v %q logger %q, want the error, logger kcl", e.Level, e.Message, e.LoggerName)
	}
	if got := e.ContextMap(); got["shard"] != "shardId-000000000001" || got["error"] != "conditional check failed" {
		t.Errorf("fields = %v, want shard and error", got)
	}
	if !e.Caller.Defined || filepath.Base(e.Caller.File) != "logger_test.go" {
		t.Errorf("caller = %v, want logger_test.go (where logrus was called)", e.Caller)
	}
	if all[1].Level != zapcore.InfoLevel || all[1].Message != "Shard shardId-000000000002 closed" {
		t.Errorf("entry = %v %q, want the info", all[1].Level, all[1].Message)
	}
	if raw.Len() != 0 {
		t.Errorf("logrus wrote %q itself, want nothing", raw.String())
	}

	// Fatal-level entries come through at error level, marked.
	logrus.StandardLogger().WithField("x", 1).Log(logrus.FatalLevel, "fatal entry") // Log, unlike Fatal, does not exit
	if got := logs.FilterMessage("fatal entry").AllUntimed(); len(got) != 1 || got[0].Level != zapcore.ErrorLevel || got[0].ContextMap()["fatal"] != true {
		t.Errorf("fatal entry = %v, want one at error level with fatal=true", got)
	}

	// A level change on the zap side applies: logrus passes debug on.
	dl, dlogs := observed(zapcore.DebugLevel)
	RouteLogrus(dl)
	logrus.Debugf("renewed")
	if dlogs.Len() != 1 || logs.FilterMessage("renewed").Len() != 0 {
		t.Errorf("after routing again: new logger got %d, old logger %d entries; want 1 and 0", dlogs.Len(), logs.FilterMessage("renewed").Len())
	}
}
