package checkpoint

import (
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	chk "github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
)

// Attribute names. The first six are the library's, so that its tools and
// ours read the same rows.
const (
	attrShardID        = chk.LeaseKeyKey       // "ShardID"
	attrOwner          = chk.LeaseOwnerKey     // "AssignedTo"
	attrTimeout        = chk.LeaseTimeoutKey   // "LeaseTimeout"
	attrCheckpoint     = chk.SequenceNumberKey // "Checkpoint"
	attrParent         = chk.ParentShardIdKey  // "ParentShardId"
	attrClaimRequest   = chk.ClaimRequestKey   // "ClaimRequest"
	attrCounter        = "LeaseCounter"
	attrToken          = "LeaseToken"
	attrSinkWatermarks = "SinkWatermarks"
	attrSinkState      = "SinkState"
	attrClaimExpiry    = "ClaimExpiry"
	attrEntityType     = "EntityType"
	attrHeartbeat      = "HeartbeatExpiry"
	attrWorkerLeases   = "LeasesHeld"
)

// Worker rows share the lease table with shard rows, as KCL 3.5's single
// table format does: their hash key is workerKeyPrefix + the worker ID,
// which no shard ID can start with, and EntityType is entityWorker.
const (
	workerKeyPrefix = "worker/"
	entityWorker    = "worker"
)

// timeFormat is the library's LeaseTimeout format.
const timeFormat = time.RFC3339Nano

// row is a decoded lease row. Absent attributes decode to zero values;
// has* record presence where the conditions need it.
type row struct {
	ShardID       string
	Owner         string
	Timeout       time.Time
	HasTimeout    bool
	TimeoutRaw    string // as stored, for conditions on legacy rows
	Checkpoint    string
	HasCheckpoint bool
	Parent        string
	ClaimRequest  string
	ClaimExpiry   time.Time // zero without a claim
	Counter       int64
	HasCounter    bool
	Token         string
	Watermarks    map[string]string
	State         map[string][]byte
	// IsWorker marks a worker row; of the fields above only ShardID (the
	// key) is set, and Heartbeat is when the worker counts as gone.
	IsWorker  bool
	Heartbeat time.Time
}

// decodeRow decodes a lease row. It fails on attributes of the wrong type
// or unparsable values rather than guessing: a lease decision on a
// misread row could hand one shard to two workers.
func decodeRow(item map[string]types.AttributeValue) (row, error) {
	var r row
	var err error
	str := func(name string) (string, bool) {
		v, ok := item[name]
		if !ok || err != nil {
			return "", false
		}
		s, isS := v.(*types.AttributeValueMemberS)
		if !isS {
			err = fmt.Errorf("attribute %s is %T, want S", name, v)
			return "", false
		}
		return s.Value, true
	}
	r.ShardID, _ = str(attrShardID)
	r.Owner, _ = str(attrOwner)
	r.TimeoutRaw, r.HasTimeout = str(attrTimeout)
	r.Checkpoint, r.HasCheckpoint = str(attrCheckpoint)
	r.Parent, _ = str(attrParent)
	r.ClaimRequest, _ = str(attrClaimRequest)
	r.Token, _ = str(attrToken)
	if err != nil {
		return row{}, err
	}
	if r.HasTimeout && r.TimeoutRaw != "" {
		if r.Timeout, err = time.Parse(timeFormat, r.TimeoutRaw); err != nil {
			return row{}, fmt.Errorf("attribute %s: %w", attrTimeout, err)
		}
	}
	if et, _ := str(attrEntityType); et == entityWorker {
		r.IsWorker = true
		if r.Heartbeat, err = msAttr(item, attrHeartbeat); err != nil {
			return row{}, err
		}
		return r, nil
	}
	if r.ClaimRequest != "" {
		if r.ClaimExpiry, err = msAttr(item, attrClaimExpiry); err != nil {
			return row{}, err
		}
	}
	if v, ok := item[attrCounter]; ok {
		n, isN := v.(*types.AttributeValueMemberN)
		if !isN {
			return row{}, fmt.Errorf("attribute %s is %T, want N", attrCounter, v)
		}
		if r.Counter, err = strconv.ParseInt(n.Value, 10, 64); err != nil {
			return row{}, fmt.Errorf("attribute %s: %w", attrCounter, err)
		}
		r.HasCounter = true
	}
	if v, ok := item[attrSinkWatermarks]; ok {
		m, isM := v.(*types.AttributeValueMemberM)
		if !isM {
			return row{}, fmt.Errorf("attribute %s is %T, want M", attrSinkWatermarks, v)
		}
		r.Watermarks = make(map[string]string, len(m.Value))
		for sink, w := range m.Value {
			s, isS := w.(*types.AttributeValueMemberS)
			if !isS {
				return row{}, fmt.Errorf("attribute %s.%s is %T, want S", attrSinkWatermarks, sink, w)
			}
			r.Watermarks[sink] = s.Value
		}
	}
	if v, ok := item[attrSinkState]; ok {
		m, isM := v.(*types.AttributeValueMemberM)
		if !isM {
			return row{}, fmt.Errorf("attribute %s is %T, want M", attrSinkState, v)
		}
		r.State = make(map[string][]byte, len(m.Value))
		for sink, st := range m.Value {
			b, isB := st.(*types.AttributeValueMemberB)
			if !isB {
				return row{}, fmt.Errorf("attribute %s.%s is %T, want B", attrSinkState, sink, st)
			}
			r.State[sink] = b.Value
		}
	}
	return r, nil
}

// heldByOther reports whether the row's lease belongs to a worker other
// than me and has not expired at now. A row without an owner is free
// whatever its timeout: RemoveLeaseOwner removes the owner on release.
func (r row) heldByOther(me string, now time.Time) bool {
	return r.Owner != "" && r.Owner != me && now.Before(r.Timeout)
}

// msAttr decodes a time stored as N milliseconds since the epoch; absent
// decodes to the zero time. Claim and heartbeat expiries are numbers, not
// the library's RFC3339Nano strings, so that conditions can compare them.
func msAttr(item map[string]types.AttributeValue, name string) (time.Time, error) {
	v, ok := item[name]
	if !ok {
		return time.Time{}, nil
	}
	n, isN := v.(*types.AttributeValueMemberN)
	if !isN {
		return time.Time{}, fmt.Errorf("attribute %s is %T, want N", name, v)
	}
	ms, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("attribute %s: %w", name, err)
	}
	return time.UnixMilli(ms), nil
}

func msValue(t time.Time) types.AttributeValue { return nAttr(t.UnixMilli()) }

// claimLive reports whether the row carries a claim that has not expired
// at now.
func (r row) claimLive(now time.Time) bool {
	return r.ClaimRequest != "" && now.Before(r.ClaimExpiry)
}

func sAttr(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

func nAttr(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

func key(shardID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrShardID: sAttr(shardID)}
}
