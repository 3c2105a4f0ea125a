// Package envflag defines command-line flags whose defaults come from
// environment variables, so that a binary is configured the same way from
// a shell, a Makefile or a Kubernetes manifest, and can list every
// variable it reads (for the Helm chart tests).
package envflag

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Set is a flag.FlagSet that records the environment variables it reads
// and the parse errors of their values. It is not safe for concurrent use.
type Set struct {
	*flag.FlagSet
	getenv func(string) string
	vars   []string
	errs   []error
}

// New returns a Set named name reading the environment through getenv.
func New(name string, getenv func(string) string) *Set {
	return &Set{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), getenv: getenv}
}

// String defines a string flag defaulting to $env, else def.
func (s *Set) String(p *string, name, env, def, usage string) {
	s.vars = append(s.vars, env)
	v := s.getenv(env)
	v = cmp.Or(v, def)
	s.StringVar(p, name, v, usage+" ($"+env+")")
}

// Int defines an int flag defaulting to $env, else def.
func (s *Set) Int(p *int, name, env string, def int, usage string) {
	s.vars = append(s.vars, env)
	v := def
	if str := s.getenv(env); str != "" {
		n, err := strconv.Atoi(str)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("parse $%s: %w", env, err))
		}
		v = n
	}
	s.IntVar(p, name, v, usage+" ($"+env+")")
}

// Duration defines a duration flag defaulting to $env, else def.
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	s.vars = append(s.vars, env)
	v := def
	if str := s.getenv(env); str != "" {
		d, err := time.ParseDuration(str)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("parse $%s: %w", env, err))
		}
		v = d
	}
	s.DurationVar(p, name, v, usage+" ($"+env+")")
}

// Float64 defines a float64 flag defaulting to $env, else def.
func (s *Set) Float64(p *float64, name, env string, def float64, usage string) {
	s.vars = append(s.vars, env)
	v := def
	if str := s.getenv(env); str != "" {
		f, err := strconv.ParseFloat(str, 64)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("parse $%s: %w", env, err))
		}
		v = f
	}
	s.Float64Var(p, name, v, usage+" ($"+env+")")
}

// Bool defines a bool flag defaulting to $env ("true", "1", ...), else def.
func (s *Set) Bool(p *bool, name, env string, def bool, usage string) {
	s.vars = append(s.vars, env)
	v := def
	if str := s.getenv(env); str != "" {
		b, err := strconv.ParseBool(str)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("parse $%s: %w", env, err))
		}
		v = b
	}
	s.BoolVar(p, name, v, usage+" ($"+env+")")
}

// Vars returns the environment variables read, in definition order.
func (s *Set) Vars() []string { return append([]string(nil), s.vars...) }

// Err returns the errors met reading the environment.
func (s *Set) Err() error { return errors.Join(s.errs...) }

// Negative returns an error naming every numeric flag (int, float or
// duration) whose value is negative: no setting of ours means anything
// below zero, and a negative count cast to an unsigned one turns into a
// huge number (a breaker that never opens).
func (s *Set) Negative() error {
	var errs []error
	s.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		neg := false
		switch v := g.Get().(type) {
		case int:
			neg = v < 0
		case int64:
			neg = v < 0
		case float64:
			neg = v < 0
		case time.Duration:
			neg = v < 0
		}
		if neg {
			errs = append(errs, fmt.Errorf("-%s (%s) must not be negative, got %s", f.Name, envOf(f.Usage), f.Value))
		}
	})
	return errors.Join(errs...)
}

// envOf returns the variable named at the end of a flag's usage.
func envOf(usage string) string {
	if i := strings.LastIndex(usage, "($"); i >= 0 && strings.HasSuffix(usage, ")") {
		return usage[i+2 : len(usage)-1]
	}
	return "no variable"
}
