package event

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
)

// KPL aggregates. The Kinesis Producer Library (and Fluent Bit, the
// Kinesis agent) pack many user records into one Kinesis record:
//
//	magic 0xF3 0x89 0x9A 0xC2, protobuf AggregatedRecord, MD5 of the protobuf
//
//	message AggregatedRecord {
//	  repeated string partition_key_table     = 1;
//	  repeated string explicit_hash_key_table = 2;
//	  repeated Record records                 = 3;
//	}
//	message Record {
//	  required uint64 partition_key_index     = 1;
//	  optional uint64 explicit_hash_key_index = 2;
//	  required bytes  data                    = 3;
//	  repeated Tag    tags                    = 4;
//	}
//
// The worker de-aggregates them itself: the KCL library's de-aggregator
// drops the whole GetRecords batch when one aggregate does not decode and
// panics on a partition key index outside the table. The worker's Kinesis
// client hides aggregates from the library (WrapKPL), and RecordDecoder
// opens them here, checking everything.

var (
	kplMagic = []byte{0xF3, 0x89, 0x9A, 0xC2}
	// kplWrapper marks an aggregate hidden from the library. It starts
	// with our record magic's first byte and differs from it after, so no
	// other decoder takes it for anything.
	kplWrapper = []byte{0xB7, 'K', 'P', 'L'}
)

const md5Len = 16

// IsKPL reports whether data starts with the KPL aggregate magic.
func IsKPL(data []byte) bool { return bytes.HasPrefix(data, kplMagic) }

// WrapKPL returns data prefixed so that the KCL library does not
// recognise it as an aggregate (its magic no longer comes first);
// RecordDecoder unwraps it. Other data is returned as is.
func WrapKPL(data []byte) []byte {
	if !IsKPL(data) {
		return data
	}
	return append(append(make([]byte, 0, len(kplWrapper)+len(data)), kplWrapper...), data...)
}

// ErrBadAggregate: the data carries the KPL magic but is not a valid
// aggregate (digest, protobuf, or a table index out of range).
var ErrBadAggregate = errors.New("bad KPL aggregate")

// BadUserRecord is one user record of an aggregate that did not decode.
type BadUserRecord struct {
	Index int // in the aggregate
	Data  []byte
	Err   error
}

// AggregateError is returned by RecordDecoder.Decode, with the events of the
// user records that decoded, when some of an aggregate's did not.
type AggregateError struct {
	Bad []BadUserRecord
}

func (e *AggregateError) Error() string {
	return fmt.Sprintf("%d user records of the aggregate did not decode, first: %v", len(e.Bad), e.Bad[0].Err)
}

// kplUserRecords returns the data of each user record of an aggregate.
func kplUserRecords(data []byte) ([][]byte, error) {
	if len(data) < len(kplMagic)+md5Len {
		return nil, fmt.Errorf("%w: %d bytes, shorter than magic and digest", ErrBadAggregate, len(data))
	}
	body := data[len(kplMagic) : len(data)-md5Len]
	sum := md5.Sum(body)
	if !bytes.Equal(sum[:], data[len(data)-md5Len:]) {
		return nil, fmt.Errorf("%w: MD5 digest does not match", ErrBadAggregate)
	}
	var keys, hashKeys int
	var records [][]byte
	err := protoFields(body, func(field int, v []byte, _ uint64) error {
		switch field {
		case 1:
			keys++
		case 2:
			hashKeys++
		case 3:
			records = append(records, v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadAggregate, err)
	}
	out := make([][]byte, 0, len(records))
	for i, rec := range records {
		var data []byte
		hasKey, hasData := false, false
		err := protoFields(rec, func(field int, v []byte, n uint64) error {
			switch field {
			case 1:
				if n >= uint64(keys) {
					return fmt.Errorf("partition key index %d, table has %d", n, keys)
				}
				hasKey = true
			case 2:
				if n >= uint64(hashKeys) {
					return fmt.Errorf("explicit hash key index %d, table has %d", n, hashKeys)
				}
			case 3:
				data, hasData = v, true
			}
			return nil
		})
		if err == nil && (!hasKey || !hasData) {
			err = errors.New("missing partition key index or data")
		}
		if err != nil {
			return nil, fmt.Errorf("%w: user record %d: %v", ErrBadAggregate, i, err)
		}
		out = append(out, data)
	}
	return out, nil
}

// protoFields calls fn for each field of a protobuf message: its number,
// and its bytes (length-delimited) or value (varint). Fixed-width fields
// are skipped. It never reads past b.
func protoFields(b []byte, fn func(field int, v []byte, n uint64) error) error {
	for len(b) > 0 {
		tag, k := binary.Uvarint(b)
		if k <= 0 {
			return errors.New("truncated field tag")
		}
		b = b[k:]
		field, wire := int(tag>>3), tag&7
		if field <= 0 {
			return fmt.Errorf("field number %d", field)
		}
		switch wire {
		case 0:
			n, k := binary.Uvarint(b)
			if k <= 0 {
				return fmt.Errorf("truncated varint of field %d", field)
			}
			b = b[k:]
			if err := fn(field, nil, n); err != nil {
				return err
			}
		case 2:
			n, k := binary.Uvarint(b)
			if k <= 0 || n > uint64(len(b)-k) {
				return fmt.Errorf("field %d: bad length", field)
			}
			v := b[k : k+int(n)]
			b = b[k+int(n):]
			if err := fn(field, v, 0); err != nil {
				return err
			}
		case 1:
			if len(b) < 8 {
				return fmt.Errorf("truncated field %d", field)
			}
			b = b[8:]
		case 5:
			if len(b) < 4 {
				return fmt.Errorf("truncated field %d", field)
			}
			b = b[4:]
		default:
			return fmt.Errorf("field %d: wire type %d", field, wire)
		}
	}
	return nil
}

// EncodeKPL builds a KPL aggregate of the given user records, each with
// its own partition key: what the KPL writes, for tests and tools.
func EncodeKPL(keys []string, records [][]byte) []byte {
	var body []byte
	field := func(dst []byte, num int, v []byte) []byte {
		dst = binary.AppendUvarint(dst, uint64(num<<3|2))
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		return append(dst, v...)
	}
	for _, k := range keys {
		body = field(body, 1, []byte(k))
	}
	for i, r := range records {
		var rec []byte
		rec = binary.AppendUvarint(rec, 1<<3) // field 1 (partition key index), wire type 0: varint
		rec = binary.AppendUvarint(rec, uint64(i%max(len(keys), 1)))
		rec = field(rec, 3, r)
		body = field(body, 3, rec)
	}
	sum := md5.Sum(body)
	out := append(append([]byte(nil), kplMagic...), body...)
	return append(out, sum[:]...)
}
