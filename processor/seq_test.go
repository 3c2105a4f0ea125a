package processor_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/buildtelemetry/pipeline/processor"
)

// Positions sort by sequence number, then user records of an aggregate by
// sub-sequence number, before the whole record; padded, they sort the same
// as strings, and unpad back.
func TestPositions(t *testing.T) {
	want := []string{"", "7", "49590.0", "49590.2", "49590.10", "49590", "49591", "100000.3"}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, processor.CompareSeq)
	if !slices.Equal(got, want) {
		t.Errorf("sorted %v, want %v", got, want)
	}
	records := []string{"7", "49590.0", "49590.2", "49590.10", "49591", "100000.3"}
	padded := make([]string, len(records))
	for i, s := range records {
		padded[i] = processor.PadSeq(s)
		if u := processor.UnpadSeq(padded[i]); u != s {
			t.Errorf("UnpadSeq(PadSeq(%s)) = %s", s, u)
		}
		if !processor.ValidSeq(s) || !processor.ValidSeq(padded[i]) {
			t.Errorf("%s or its padding not valid", s)
		}
	}
	if !slices.IsSorted(padded) {
		t.Errorf("padded positions do not sort as strings: %v", padded)
	}
	if seq, sub := processor.SplitSeq(processor.UserSeq("49590", 12)); seq != "49590" || sub != 12 {
		t.Errorf("SplitSeq(UserSeq) = %s, %d", seq, sub)
	}
	if _, sub := processor.SplitSeq("49590"); sub != -1 {
		t.Errorf("a whole record's sub-sequence number is %d, want -1", sub)
	}
	for _, bad := range []string{"", "x1", "1.", ".1", "1.x", "1.2.3", strings.Repeat("9", processor.SeqWidth+1), "1." + strings.Repeat("1", processor.SubWidth+1)} {
		if processor.ValidSeq(bad) {
			t.Errorf("%q valid", bad)
		}
	}
}
