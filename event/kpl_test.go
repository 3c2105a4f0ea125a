package event

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"testing"
)

func TestDecodeKPL(t *testing.T) {
	d, err := NewRecordDecoder()
	if err != nil {
		t.Fatal(err)
	}
	var users [][]byte
	for i := 0; i < 50; i++ {
		users = append(users, fmt.Appendf(nil, `{"messageId":"m%d","type":"track","event":"build","userId":"u"}`, i))
	}
	agg := EncodeKPL([]string{"a", "b"}, users)
	for _, data := range [][]byte{agg, WrapKPL(agg)} {
		evs, err := d.Decode(data)
		if err != nil || len(evs) != 50 || !bytes.Equal(evs[49], users[49]) {
			t.Fatalf("Decode: %d events, %v; want 50", len(evs), err)
		}
	}
	if !bytes.Equal(WrapKPL([]byte(`{"a":1}`)), []byte(`{"a":1}`)) {
		t.Error("WrapKPL changed data that is not an aggregate")
	}

	// One bad user record: the others come back with an AggregateError.
	mixed := EncodeKPL([]string{"a"}, [][]byte{users[0], []byte("not json"), users[2]})
	evs, err := d.Decode(mixed)
	var ae *AggregateError
	if !errors.As(err, &ae) || len(ae.Bad) != 1 || ae.Bad[0].Index != 1 || len(evs) != 2 {
		t.Fatalf("mixed aggregate: %d events, %v; want 2 and user record 1 bad", len(evs), err)
	}

	// Corrupt aggregates fail whole, with the reason.
	badDigest := append([]byte(nil), agg...)
	badDigest[len(badDigest)-1] ^= 1
	badIndex := withDigest(append(append([]byte(nil), kplMagic...),
		0x1a, 0x06, 0x08, 0x05, 0x1a, 0x02, '{', '}')) // record: key index 5, no keys
	truncated := withDigest(append(append([]byte(nil), kplMagic...), 0x1a, 0x7f, 0x08))
	for name, data := range map[string][]byte{
		"digest":          badDigest,
		"index":           badIndex,
		"protobuf":        truncated,
		"short":           kplMagic,
		"wrapped corrupt": WrapKPL(badDigest),
	} {
		if _, err := d.Decode(data); !errors.Is(err, ErrBadAggregate) {
			t.Errorf("%s: %v, want ErrBadAggregate", name, err)
		}
	}
}

func withDigest(b []byte) []byte {
	sum := md5.Sum(b[len(kplMagic):])
	return append(b, sum[:]...)
}
