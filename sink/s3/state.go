package s3

import (
	"encoding/json"
	"time"

	"github.com/buildtelemetry/pipeline/processor"
)

// stateVersion is the version of pendingState's encoding.
const stateVersion = 1

// pendingState is what a writer saves in the lease row before uploading
// an object: the object's range, so that a replay rebuilds exactly it.
// Hour and Key are for operators reading the lease table and for a
// replay whose first record lacks an arrival time; the range decides.
type pendingState struct {
	V     int    `json:"v"`
	First string `json:"first"`
	Last  string `json:"last"`
	Hour  string `json:"hour"` // HourLayout, UTC
	Key   string `json:"key,omitempty"`

	hour time.Time
}

func (p pendingState) encode() []byte {
	b, _ := json.Marshal(p) // strings and ints always marshal
	return b
}

// decodeState reads a saved state, or returns nil when there is none or
// it is not one this version wrote.
func decodeState(b []byte) *pendingState {
	if len(b) == 0 {
		return nil
	}
	var p pendingState
	if json.Unmarshal(b, &p) != nil || p.V != stateVersion || !processor.ValidSeq(p.First) || !processor.ValidSeq(p.Last) ||
		processor.CompareSeq(p.First, p.Last) > 0 {
		return nil
	}
	t, err := time.Parse(HourLayout, p.Hour)
	if err != nil {
		return nil
	}
	p.hour = t.UTC()
	return &p
}
