package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfig(t *testing.T) {
	c, err := loadConfig(nil, env(map[string]string{"KINESIS_STREAM": "s", "GATEWAY_LINGER": "3ms", "GATEWAY_MAX_IN_FLIGHT": "7"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Stream != "s" || c.Linger != 3*time.Millisecond || c.MaxInFlight != 7 || c.Addr != ":8080" {
		t.Errorf("got %+v", c)
	}
	// Flags win over the environment.
	c, err = loadConfig([]string{"-linger", "9ms"}, env(map[string]string{"KINESIS_STREAM": "s", "GATEWAY_LINGER": "3ms"}))
	if err != nil || c.Linger != 9*time.Millisecond {
		t.Errorf("flag over env: %v, %v", c.Linger, err)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "KINESIS_STREAM"},
		{map[string]string{"KINESIS_STREAM": "s", "GATEWAY_LINGER": "soon"}, "GATEWAY_LINGER"},
		{map[string]string{"KINESIS_STREAM": "s", "GATEWAY_MAX_IN_FLIGHT": "many"}, "GATEWAY_MAX_IN_FLIGHT"},
		{map[string]string{"KINESIS_STREAM": "s", "GATEWAY_ACK_TIMEOUT": "-1s"}, "GATEWAY_ACK_TIMEOUT) must not be negative"},
		{map[string]string{"KINESIS_STREAM": "s", "GATEWAY_KEY_RATE": "-3"}, "GATEWAY_KEY_RATE"},
		{map[string]string{"KINESIS_STREAM": "s", "GATEWAY_BODY_TIMEOUT": "0s"}, "GATEWAY_BODY_TIMEOUT must be positive"},
	} {
		if _, err := loadConfig(nil, env(tc.env)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v: error %v, want one naming %s", tc.env, err, tc.want)
		}
	}
}

func TestWriteKeysFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(path, []byte("k1=a\nk2=b\n"), 0o600)
	c, err := loadConfig(nil, env(map[string]string{"KINESIS_STREAM": "s", "GATEWAY_WRITE_KEYS": "k0=z", "GATEWAY_WRITE_KEYS_FILE": path}))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := c.writeKeys()
	if err != nil || len(keys) != 3 || keys["k2"] != "b" {
		t.Errorf("keys %v, %v", keys, err)
	}
}

func TestPrintEnvListsEveryVariable(t *testing.T) {
	c, err := loadConfig([]string{"-print-env"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"KINESIS_STREAM", "GATEWAY_WRITE_KEYS", "GATEWAY_DRAIN_DELAY", "LOG_LEVEL"} {
		found := false
		for _, got := range c.EnvVars {
			found = found || got == v
		}
		if !found {
			t.Errorf("%s missing from %v", v, c.EnvVars)
		}
	}
}
