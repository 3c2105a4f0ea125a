package processor

import "strings"

// SeqWidth is the width of a zero-padded sequence number: Kinesis
// sequence numbers match 0|([1-9]\d{0,128}).
const SeqWidth = 129

// PadSeq zero-pads a sequence number to SeqWidth digits, so that padded
// numbers compare correctly as strings (DynamoDB conditions, S3 keys).
func PadSeq(seq string) string {
	if len(seq) >= SeqWidth {
		return seq
	}
	return strings.Repeat("0", SeqWidth-len(seq)) + seq
}

// CompareSeq compares two sequence numbers numerically: -1, 0 or +1. The
// empty string sorts before every sequence number.
func CompareSeq(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return strings.Compare(a, b)
}

// MinSeq returns the smaller of two sequence numbers.
func MinSeq(a, b string) string {
	if CompareSeq(a, b) <= 0 {
		return a
	}
	return b
}

// MaxSeq returns the larger of two sequence numbers.
func MaxSeq(a, b string) string {
	if CompareSeq(a, b) >= 0 {
		return a
	}
	return b
}
