package athena_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// table is what the tests read from the DDL: simple regexes and a small
// parser for Hive types, enough for the statement we ship.
type table struct {
	name         string
	columns      []field
	partitionKey string
	partitionTyp string
	serde        string
	serdeProps   map[string]string
	location     string
	props        map[string]string
}

type field struct {
	name string
	typ  *hiveType
}

// hiveType is a parsed Hive column type.
type hiveType struct {
	kind     string // string, int, bigint, boolean, double, array, map, struct
	elem     *hiveType
	key, val *hiveType
	fields   []field
}

func (t *hiveType) String() string {
	switch t.kind {
	case "array":
		return "array<" + t.elem.String() + ">"
	case "map":
		return "map<" + t.key.String() + "," + t.val.String() + ">"
	case "struct":
		var parts []string
		for _, f := range t.fields {
			parts = append(parts, f.name+":"+f.typ.String())
		}
		return "struct<" + strings.Join(parts, ",") + ">"
	}
	return t.kind
}

var (
	commentRE    = regexp.MustCompile(`--[^\n]*`)
	createRE     = regexp.MustCompile(`(?is)CREATE\s+EXTERNAL\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s*\(`)
	partitionRE  = regexp.MustCompile(`(?is)PARTITIONED\s+BY\s*\(\s*(\w+)\s+(\w+)\s*\)`)
	serdeRE      = regexp.MustCompile(`(?is)ROW\s+FORMAT\s+SERDE\s+'([^']*)'`)
	serdePropsRE = regexp.MustCompile(`(?is)WITH\s+SERDEPROPERTIES\s*\(([^)]*)\)`)
	locationRE   = regexp.MustCompile(`(?is)\bLOCATION\s+'([^']*)'`)
	tblPropsRE   = regexp.MustCompile(`(?is)TBLPROPERTIES\s*\(([^)]*)\)`)
	propRE       = regexp.MustCompile(`'([^']*)'\s*=\s*'([^']*)'`)
)

// parseDDL reads a CREATE EXTERNAL TABLE statement.
func parseDDL(ddl string) (*table, error) {
	s := commentRE.ReplaceAllString(ddl, "")
	m := createRE.FindStringSubmatchIndex(s)
	if m == nil {
		return nil, fmt.Errorf("no CREATE EXTERNAL TABLE")
	}
	t := &table{name: s[m[2]:m[3]]}
	// The column list ends at the parenthesis that closes the one the
	// match ended with; types nest with <>, never with ().
	start, depth, end := m[1], 1, -1
	for i := start; i < len(s) && end < 0; i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				end = i
			}
		}
	}
	if end < 0 {
		return nil, fmt.Errorf("unclosed column list")
	}
	for _, col := range splitTop(s[start:end]) {
		col = strings.TrimSpace(col)
		name, typ, ok := strings.Cut(col, " ")
		if !ok {
			return nil, fmt.Errorf("column %q has no type", col)
		}
		ht, err := parseType(typ)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", name, err)
		}
		t.columns = append(t.columns, field{name: strings.Trim(name, "`"), typ: ht})
	}
	rest := s[end:]
	if m := partitionRE.FindStringSubmatch(rest); m != nil {
		t.partitionKey, t.partitionTyp = m[1], m[2]
	}
	if m := serdeRE.FindStringSubmatch(rest); m != nil {
		t.serde = m[1]
	}
	t.serdeProps = props(serdePropsRE.FindStringSubmatch(rest))
	if m := locationRE.FindStringSubmatch(rest); m != nil {
		t.location = m[1]
	}
	t.props = props(tblPropsRE.FindStringSubmatch(rest))
	return t, nil
}

func props(m []string) map[string]string {
	out := map[string]string{}
	if m == nil {
		return out
	}
	for _, p := range propRE.FindAllStringSubmatch(m[1], -1) {
		out[p[1]] = p[2]
	}
	return out
}

// splitTop splits s at the commas outside <>.
func splitTop(s string) []string {
	var out []string
	depth, last := 0, 0
	for i, c := range s {
		switch c {
		case '<':
			depth++
		case '>':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[last:i])
				last = i + 1
			}
		}
	}
	if strings.TrimSpace(s[last:]) != "" {
		out = append(out, s[last:])
	}
	return out
}

// parseType parses a Hive type such as struct<a:int,b:array<string>>.
func parseType(s string) (*hiveType, error) {
	p := &typeParser{s: s}
	t := p.parse()
	p.space()
	if p.err == nil && p.i != len(p.s) {
		p.fail("trailing %q", p.s[p.i:])
	}
	return t, p.err
}

type typeParser struct {
	s   string
	i   int
	err error
}

func (p *typeParser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("type %q at %d: %s", p.s, p.i, fmt.Sprintf(format, args...))
	}
}

func (p *typeParser) space() {
	for p.i < len(p.s) && unicode.IsSpace(rune(p.s[p.i])) {
		p.i++
	}
}

func (p *typeParser) ident() string {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '`' {
		end := strings.IndexByte(p.s[p.i+1:], '`')
		if end < 0 {
			p.fail("unclosed backtick")
			return ""
		}
		id := p.s[p.i+1 : p.i+1+end]
		p.i += end + 2
		return id
	}
	j := p.i
	for j < len(p.s) && (p.s[j] == '_' || unicode.IsLetter(rune(p.s[j])) || unicode.IsDigit(rune(p.s[j]))) {
		j++
	}
	if j == p.i {
		p.fail("want a name")
	}
	id := p.s[p.i:j]
	p.i = j
	return id
}

func (p *typeParser) expect(c byte) bool {
	p.space()
	if p.i >= len(p.s) || p.s[p.i] != c {
		p.fail("want %q", c)
		return false
	}
	p.i++
	return true
}

func (p *typeParser) parse() *hiveType {
	switch kind := strings.ToLower(p.ident()); kind {
	case "string", "int", "bigint", "boolean", "double":
		return &hiveType{kind: kind}
	case "array":
		p.expect('<')
		t := &hiveType{kind: kind, elem: p.parse()}
		p.expect('>')
		return t
	case "map":
		p.expect('<')
		t := &hiveType{kind: kind, key: p.parse()}
		p.expect(',')
		t.val = p.parse()
		p.expect('>')
		return t
	case "struct":
		p.expect('<')
		t := &hiveType{kind: kind}
		for p.err == nil {
			name := p.ident()
			p.expect(':')
			t.fields = append(t.fields, field{name: name, typ: p.parse()})
			p.space()
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
				continue
			}
			p.expect('>')
			break
		}
		return t
	default:
		p.fail("unknown type %q", kind)
		return &hiveType{kind: "invalid"}
	}
}

// checker checks JSON values against declared types, as the OpenX SerDe
// reads them with case.insensitive, but strictly: a string column must get
// a JSON string, an int an integer in range, and so on, where the SerDe
// would coerce or fail. jsonText names the string paths documented to
// hold any JSON value's text. seen collects the paths that held a
// non-null value.
type checker struct {
	jsonText map[string]bool
	seen     map[string]bool
	problems []string
}

func (c *checker) problem(path string, format string, args ...any) {
	c.problems = append(c.problems, path+": "+fmt.Sprintf(format, args...))
}

// checkRow checks one line, decoded with UseNumber, against the columns.
func (c *checker) checkRow(columns []field, row map[string]any) {
	c.checkStruct("", columns, row)
}

func (c *checker) checkStruct(path string, fields []field, obj map[string]any) {
	// The SerDe allows no two keys that differ only in case.
	lower := map[string]string{}
	for k := range obj {
		if prev, dup := lower[strings.ToLower(k)]; dup {
			c.problem(path, "keys %q and %q are the same to the case-insensitive SerDe", prev, k)
		}
		lower[strings.ToLower(k)] = k
	}
	for _, f := range fields {
		p := f.name
		if path != "" {
			p = path + "." + f.name
		}
		k, ok := lower[strings.ToLower(f.name)]
		if !ok {
			continue // absent: NULL
		}
		c.check(p, f.typ, obj[k])
	}
}

func (c *checker) check(path string, t *hiveType, v any) {
	if v == nil {
		return
	}
	c.seen[path] = true
	switch t.kind {
	case "string":
		if _, ok := v.(string); !ok && !c.jsonText[path] {
			c.problem(path, "want a string, got %T %v", v, v)
		}
	case "int", "bigint":
		n, ok := v.(json.Number)
		if !ok {
			c.problem(path, "want an integer, got %T %v", v, v)
			return
		}
		bits := 64
		if t.kind == "int" {
			bits = 32
		}
		if _, err := strconv.ParseInt(n.String(), 10, bits); err != nil {
			c.problem(path, "want a %d-bit integer, got %s", bits, n)
		}
	case "double":
		if _, ok := v.(json.Number); !ok {
			c.problem(path, "want a number, got %T %v", v, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			c.problem(path, "want a boolean, got %T %v", v, v)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			c.problem(path, "want an array, got %T %v", v, v)
			return
		}
		for _, e := range a {
			c.check(path+"[]", t.elem, e)
		}
	case "map":
		m, ok := v.(map[string]any)
		if !ok {
			c.problem(path, "want an object, got %T %v", v, v)
			return
		}
		for _, e := range m {
			c.check(path+"{}", t.val, e)
		}
	case "struct":
		m, ok := v.(map[string]any)
		if !ok {
			c.problem(path, "want an object, got %T %v", v, v)
			return
		}
		c.checkStruct(path, t.fields, m)
	default:
		c.problem(path, "type %s", t.kind)
	}
}

// paths returns every column and field path of the columns.
func paths(prefix string, fields []field) []string {
	var out []string
	for _, f := range fields {
		p := f.name
		if prefix != "" {
			p = prefix + "." + f.name
		}
		out = append(out, p)
		t := f.typ
		for t.kind == "array" {
			p += "[]"
			t = t.elem
		}
		if t.kind == "struct" {
			out = append(out, paths(p, t.fields)...)
		}
	}
	return out
}
