package event

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// The Kinesis record format. Many events share one record, because Kinesis
// limits each shard to 1,000 records/s and 1 MB/s: packing and compressing
// raise a shard's capacity from 1,000 to several thousand events/s.
//
//	offset 0  magic   0xB7 'B' 'T'   (not '{', '[', whitespace or the KPL magic)
//	offset 3  version 0x01
//	offset 4  codec   0 = none, 1 = zstd, 2 = zstd with dictionary 1
//	offset 5  payload, compressed by codec:
//	          uvarint n, then n times (uvarint length, event JSON)
//
// A decoder must keep reading every version and codec it ever wrote: the
// stream holds records for the retention period, and a replay may reach
// them long after a deploy.
var recordMagic = [3]byte{0xB7, 'B', 'T'}

const (
	recordVersion1 = 1
	headerLen      = 5

	codecNone    = 0
	codecZstd    = 1
	codecZstdDV1 = 2

	// dictV1ID is the zstd dictionary ID of dictV1. Never change either:
	// add a new codec with a new dictionary instead.
	dictV1ID = 0x42540001
)

// Limits applied when decoding, so a corrupt or hostile record cannot make
// the worker allocate without bound.
const (
	// MaxRecordDecodedBytes bounds a record's decompressed payload. Kinesis
	// records are at most 1 MiB, and JSON compresses less than 16:1 in
	// practice.
	MaxRecordDecodedBytes = 16 << 20
	maxRecordEvents       = 1 << 20
)

// Errors returned by RecordDecoder.Decode.
var (
	// ErrUnknownFormat: the data is neither our record format nor JSON.
	ErrUnknownFormat = errors.New("unknown record format")
	// ErrCorruptRecord: the data starts with our magic but does not decode.
	ErrCorruptRecord = errors.New("corrupt record")
)

// IsRecord reports whether data starts with the record format's magic.
func IsRecord(data []byte) bool {
	return len(data) >= 3 && data[0] == recordMagic[0] && data[1] == recordMagic[1] && data[2] == recordMagic[2]
}

// RecordSize returns the uncompressed payload size of a record holding
// events of the given lengths, so that a producer can cut records before
// they exceed a bound.
func RecordSize(count int, eventBytes int) int {
	return headerLen + binary.MaxVarintLen64 + count*binary.MaxVarintLen32 + eventBytes
}

// RecordEncoder packs events into records. It is safe for concurrent use.
type RecordEncoder struct {
	enc *zstd.Encoder
}

// NewRecordEncoder returns an encoder that writes version 1 records,
// compressed with zstd and the built-in dictionary.
func NewRecordEncoder() (*RecordEncoder, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderDictRaw(dictV1ID, []byte(dictV1)),
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(1),
		// The frame checksum lets the decoder tell a corrupt record from
		// a valid one, so poison records are parked with a clear reason.
		zstd.WithEncoderCRC(true),
	)
	if err != nil {
		return nil, fmt.Errorf("create zstd encoder: %w", err)
	}
	return &RecordEncoder{enc: enc}, nil
}

// Encode appends to dst one record holding events, each a JSON object.
func (e *RecordEncoder) Encode(dst []byte, events [][]byte) []byte {
	size := binary.MaxVarintLen64
	for _, ev := range events {
		size += binary.MaxVarintLen32 + len(ev)
	}
	raw := make([]byte, 0, size)
	raw = binary.AppendUvarint(raw, uint64(len(events)))
	for _, ev := range events {
		raw = binary.AppendUvarint(raw, uint64(len(ev)))
		raw = append(raw, ev...)
	}
	dst = append(dst, recordMagic[0], recordMagic[1], recordMagic[2], recordVersion1, codecZstdDV1)
	return e.enc.EncodeAll(raw, dst)
}

// RecordDecoder reads records. It is safe for concurrent use.
type RecordDecoder struct {
	plain *zstd.Decoder
	dict  *zstd.Decoder
}

// NewRecordDecoder returns a decoder for every record version and codec
// this package has written.
func NewRecordDecoder() (*RecordDecoder, error) {
	opts := []zstd.DOption{
		zstd.WithDecoderMaxMemory(MaxRecordDecodedBytes),
		zstd.WithDecoderConcurrency(0),
	}
	plain, err := zstd.NewReader(nil, opts...)
	if err != nil {
		return nil, fmt.Errorf("create zstd decoder: %w", err)
	}
	dict, err := zstd.NewReader(nil, append(opts, zstd.WithDecoderDictRaw(dictV1ID, []byte(dictV1)))...)
	if err != nil {
		return nil, fmt.Errorf("create zstd decoder: %w", err)
	}
	return &RecordDecoder{plain: plain, dict: dict}, nil
}

// Decode returns the events held by one Kinesis record's data: a record of
// ours, a plain JSON object (one event, as a Kinesis console or another
// producer would write it), a JSON array of objects, or a KPL aggregate of
// any of these (bare or as WrapKPL hides it). The returned slices may
// alias data.
//
// Errors wrap ErrUnknownFormat, ErrCorruptRecord or ErrBadAggregate and
// say what is wrong, so the caller can park the record with that reason.
// An aggregate some of whose user records fail gives the others' events
// and an *AggregateError listing the failed ones.
func (d *RecordDecoder) Decode(data []byte) ([][]byte, error) {
	parts, err := d.DecodeParts(data)
	if len(parts) == 1 {
		return parts[0].Events, err
	}
	var out [][]byte
	for _, p := range parts {
		out = append(out, p.Events...)
	}
	return out, err
}

// Part is what of a Kinesis record is one unit of progress: the whole
// record, or one user record of a KPL aggregate.
type Part struct {
	// Sub is the user record's index in its aggregate (its sub-sequence
	// number), or -1 for a record that is not an aggregate.
	Sub int
	// Events are the part's events.
	Events [][]byte
}

// DecodeParts is Decode keeping an aggregate's user records apart, each
// with its index, so that progress can be kept per user record. A record
// that is not an aggregate is one part with Sub -1. The failed user
// records of an *AggregateError have no part.
func (d *RecordDecoder) DecodeParts(data []byte) ([]Part, error) {
	if bytes.HasPrefix(data, kplWrapper) {
		return d.decodeKPL(data[len(kplWrapper):])
	}
	if IsKPL(data) {
		return d.decodeKPL(data)
	}
	evs, err := d.decodeOne(data)
	if err != nil {
		return nil, err
	}
	return []Part{{Sub: -1, Events: evs}}, nil
}

// decodeKPL decodes each user record of an aggregate as a record of its
// own (JSON, or our format). With some that fail it returns the others'
// parts and an *AggregateError naming the failed ones.
func (d *RecordDecoder) decodeKPL(data []byte) ([]Part, error) {
	users, err := kplUserRecords(data)
	if err != nil {
		return nil, err
	}
	out := make([]Part, 0, len(users))
	var bad []BadUserRecord
	for i, u := range users {
		evs, err := d.decodeOne(u)
		if err != nil {
			bad = append(bad, BadUserRecord{Index: i, Data: u, Err: err})
			continue
		}
		out = append(out, Part{Sub: i, Events: evs})
	}
	if len(bad) > 0 {
		return out, &AggregateError{Bad: bad}
	}
	return out, nil
}

func (d *RecordDecoder) decodeOne(data []byte) ([][]byte, error) {
	if IsRecord(data) {
		return d.decodeRecord(data)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: empty data", ErrUnknownFormat)
	}
	switch trimmed[0] {
	case '{':
		if !json.Valid(trimmed) {
			return nil, fmt.Errorf("%w: malformed JSON object", ErrUnknownFormat)
		}
		return [][]byte{trimmed}, nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, fmt.Errorf("%w: malformed JSON array: %v", ErrUnknownFormat, err)
		}
		out := make([][]byte, len(items))
		for i, it := range items {
			if len(it) == 0 || it[0] != '{' {
				return nil, fmt.Errorf("%w: array item %d is not an object", ErrUnknownFormat, i)
			}
			out[i] = it
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: starts with byte 0x%02x", ErrUnknownFormat, data[0])
}

func (d *RecordDecoder) decodeRecord(data []byte) ([][]byte, error) {
	if len(data) < headerLen {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the header", ErrCorruptRecord, len(data))
	}
	if v := data[3]; v != recordVersion1 {
		return nil, fmt.Errorf("%w: version %d is newer than this decoder", ErrUnknownFormat, v)
	}
	var payload []byte
	var err error
	switch c := data[4]; c {
	case codecNone:
		payload = data[headerLen:]
	case codecZstd:
		payload, err = d.plain.DecodeAll(data[headerLen:], nil)
	case codecZstdDV1:
		payload, err = d.dict.DecodeAll(data[headerLen:], nil)
	default:
		return nil, fmt.Errorf("%w: codec %d", ErrUnknownFormat, c)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: decompress: %v", ErrCorruptRecord, err)
	}
	n, k := binary.Uvarint(payload)
	if k <= 0 || n > maxRecordEvents {
		return nil, fmt.Errorf("%w: bad event count", ErrCorruptRecord)
	}
	payload = payload[k:]
	events := make([][]byte, 0, n)
	for i := uint64(0); i < n; i++ {
		l, k := binary.Uvarint(payload)
		if k <= 0 || l > uint64(len(payload)-k) {
			return nil, fmt.Errorf("%w: event %d: bad length", ErrCorruptRecord, i)
		}
		events = append(events, payload[k:k+int(l)])
		payload = payload[k+int(l):]
	}
	if len(payload) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorruptRecord, len(payload))
	}
	return events, nil
}
