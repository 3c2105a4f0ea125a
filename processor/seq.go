package processor

import (
	"strconv"
	"strings"
)

// Positions in a shard. A record from our gateway or any producer but the
// KPL is numbered by its Kinesis sequence number. A user record of a KPL
// aggregate is numbered by the pair of the aggregate's sequence number and
// its sub-sequence number (its index in the aggregate), written
// "<seq>.<sub>", so that checkpoints, sink watermarks, S3 object ranges,
// dead-letter keys and the counters' watermarks can stop inside an
// aggregate: a crash there neither skips nor repeats a user record. A bare
// sequence number stands for the whole record and sorts after every user
// record of it.

// SeqWidth is the width of a zero-padded sequence number: Kinesis
// sequence numbers match 0|([1-9]\d{0,128}).
const SeqWidth = 129

// SubWidth is the width of a zero-padded sub-sequence number.
const SubWidth = 10

// subSep separates a sequence number from a sub-sequence number.
const subSep = "."

// UserSeq returns the position of user record sub of the aggregate seq.
func UserSeq(seq string, sub int) string { return seq + subSep + strconv.Itoa(sub) }

// SplitSeq returns a position's Kinesis sequence number and sub-sequence
// number, or -1 for a whole record.
func SplitSeq(s string) (seq string, sub int) {
	seq, subs, ok := strings.Cut(s, subSep)
	if !ok {
		return s, -1
	}
	n, err := strconv.Atoi(subs)
	if err != nil || n < 0 {
		return seq, -1
	}
	return seq, n
}

// ValidSeq reports whether s is a position: a decimal sequence number of
// at most SeqWidth digits, with an optional sub-sequence number of at most
// SubWidth digits.
func ValidSeq(s string) bool {
	seq, sub, hasSub := strings.Cut(s, subSep)
	return digits(seq, SeqWidth) && (!hasSub || digits(sub, SubWidth))
}

func digits(s string, width int) bool {
	if s == "" || len(s) > width {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// PadSeq zero-pads a position, so that padded positions compare correctly
// as strings (DynamoDB conditions, S3 and dead-letter keys): the sequence
// number to SeqWidth digits and the sub-sequence number, if any, to
// SubWidth. Only positions of records compare so: a whole aggregate's
// bare number pads before its user records'.
func PadSeq(s string) string {
	seq, sub, hasSub := strings.Cut(s, subSep)
	if len(seq) < SeqWidth {
		seq = strings.Repeat("0", SeqWidth-len(seq)) + seq
	}
	if !hasSub {
		return seq
	}
	if len(sub) < SubWidth {
		sub = strings.Repeat("0", SubWidth-len(sub)) + sub
	}
	return seq + subSep + sub
}

// UnpadSeq undoes PadSeq: Kinesis sequence numbers have no leading zeros.
func UnpadSeq(s string) string {
	seq, sub, hasSub := strings.Cut(s, subSep)
	seq = unpad(seq)
	if !hasSub {
		return seq
	}
	return seq + subSep + unpad(sub)
}

func unpad(s string) string {
	if t := strings.TrimLeft(s, "0"); t != "" {
		return t
	}
	return "0"
}

// CompareSeq compares two positions: -1, 0 or +1. Sequence numbers
// compare numerically; user records of one aggregate by sub-sequence
// number, and before the whole record. The empty string sorts before
// every position.
func CompareSeq(a, b string) int {
	as, asub := SplitSeq(a)
	bs, bsub := SplitSeq(b)
	if c := compareDecimal(as, bs); c != 0 {
		return c
	}
	switch {
	case asub == bsub:
		return 0
	case asub < 0: // whole record after its user records
		return 1
	case bsub < 0:
		return -1
	case asub < bsub:
		return -1
	}
	return 1
}

func compareDecimal(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return strings.Compare(a, b)
}

// MinSeq returns the smaller of two positions.
func MinSeq(a, b string) string {
	if CompareSeq(a, b) <= 0 {
		return a
	}
	return b
}

// MaxSeq returns the larger of two positions.
func MaxSeq(a, b string) string {
	if CompareSeq(a, b) >= 0 {
		return a
	}
	return b
}
