package dynamodb

import (
	"strings"
	"time"

	"github.com/buildtelemetry/pipeline/event"
)

// The item schema; see the package documentation.
const (
	attrPK        = "pk"   // S: the dimension's name
	attrSK        = "sk"   // S: dayPrefix + the UTC day + "#" + the shard
	attrEvents    = "n"    // N: events counted for the day
	valuePrefix   = "v#"   // N: valuePrefix + value: events with that value
	attrWatermark = "wm"   // S: padded sequence number of the shard's last record counted
	holePrefix    = "h#"   // S: holePrefix + LetterID.Key(): a parked range not counted yet
	dayPrefix     = "day#" // starts every sort key
	shardSep      = "#"    // between the day and the shard in a sort key
	// noneCounted is a hole's value when the item had counted nothing of
	// the shard: it sorts before every padded sequence number.
	noneCounted = "0"
)

// DayLayout is the layout of a day in keys and in DayCounts.
const DayLayout = "2006-01-02"

// OtherValue is the value under which a record's values beyond
// MaxValuesPerUpdate for one dimension and day are counted.
const OtherValue = "(other)"

// MaxEventSkew is how far before its receivedAt an event's timestamp may
// be and still decide its day; see dayOf.
const MaxEventSkew = 24 * time.Hour

func dayKey(day string) string { return dayPrefix + day }

// itemKey is the sort key of a shard's item for a day.
func itemKey(day, shard string) string { return dayPrefix + day + shardSep + shard }

// dayOfKey returns the day of a sort key, with or without a shard.
func dayOfKey(sk string) string {
	day, _, _ := strings.Cut(strings.TrimPrefix(sk, dayPrefix), shardSep)
	return day
}

// dayOf is the UTC day an event is counted on: its own timestamp, the time
// the build ran, which the gateway has already corrected for client clock
// skew when the client sent sentAt. Netlify Build sends no sentAt and
// posts at once without retries, so a timestamp after receivedAt, or more
// than MaxEventSkew before it, is a wrong clock: receivedAt is used
// instead, so that a bad clock cannot create counters for years past or
// to come. Without either, the record's arrival time decides. All three
// come from the record, never from the clock of the worker, so a replay
// counts every event on the same day.
func dayOf(e *event.Event, arrival time.Time) string {
	t := e.Timestamp
	if r := e.ReceivedAt; !r.IsZero() && (t.IsZero() || t.After(r) || r.Sub(t) > MaxEventSkew) {
		t = r
	}
	if t.IsZero() {
		t = arrival
	}
	return t.UTC().Format(DayLayout)
}
