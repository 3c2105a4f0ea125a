package counts

import (
	"cmp"
	"strconv"
	"strings"
)

// CompareVersions orders values as versions, oldest first: -1, 0 or +1.
// A value "<name>@<version>" (a plugin) orders by name, then version.
// Versions are compared the semver way, with any number of numeric parts
// and an optional leading "v": 1.10.0 > 1.9.2 > 1.9.2-rc.1. A value that
// is not a version sorts before every version, by text; two such values
// compare by text, in reverse, so that a newest-first sort lists them
// alphabetically.
func CompareVersions(a, b string) int {
	an, av := splitName(a)
	bn, bv := splitName(b)
	if an != bn {
		return strings.Compare(bn, an) // newest first lists names A to Z
	}
	pa, oka := parseVersion(av)
	pb, okb := parseVersion(bv)
	switch {
	case oka && okb:
		return compareParsed(pa, pb)
	case oka:
		return 1
	case okb:
		return -1
	}
	return strings.Compare(bv, av)
}

// splitName splits "name@version" at its last '@' that does not start the
// value (scoped npm names start with one).
func splitName(s string) (name, version string) {
	if i := strings.LastIndexByte(s, '@'); i > 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}

type version struct {
	nums []int64
	pre  string // "" for a release
}

func parseVersion(s string) (version, bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "v"), "V")
	s, _, _ = strings.Cut(s, "+") // build metadata does not order
	core, pre, _ := strings.Cut(s, "-")
	var v version
	for part := range strings.SplitSeq(core, ".") {
		n, err := strconv.ParseInt(part, 10, 64)
		if err != nil || n < 0 {
			return version{}, false
		}
		v.nums = append(v.nums, n)
	}
	v.pre = pre
	return v, true
}

func compareParsed(a, b version) int {
	for i := range max(len(a.nums), len(b.nums)) {
		var x, y int64
		if i < len(a.nums) {
			x = a.nums[i]
		}
		if i < len(b.nums) {
			y = b.nums[i]
		}
		if c := cmp.Compare(x, y); c != 0 {
			return c
		}
	}
	switch {
	case a.pre == b.pre:
		return 0
	case a.pre == "":
		return 1 // a release is newer than its pre-releases
	case b.pre == "":
		return -1
	}
	return comparePre(a.pre, b.pre)
}

// comparePre compares pre-release identifiers the semver way: numeric ones
// numerically and before alphanumeric ones, more identifiers after fewer.
func comparePre(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range min(len(as), len(bs)) {
		x, errx := strconv.ParseInt(as[i], 10, 64)
		y, erry := strconv.ParseInt(bs[i], 10, 64)
		var c int
		switch {
		case errx == nil && erry == nil:
			c = cmp.Compare(x, y)
		case errx == nil:
			c = -1
		case erry == nil:
			c = 1
		default:
			c = strings.Compare(as[i], bs[i])
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(as), len(bs))
}
