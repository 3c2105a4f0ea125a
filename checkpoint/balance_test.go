package checkpoint

import (
	"fmt"
	"maps"
	"slices"
	"testing"
)

// simulate runs balance passes of every worker in turn, applying each
// claim as a completed handoff, until no worker claims anything, and
// returns the leases per worker and the number of handoffs.
func simulate(t *testing.T, owners map[string]int, shards int, maxLeases int) (map[string]int, int) {
	t.Helper()
	workers := slices.Sorted(maps.Keys(owners))
	live := map[string]bool{}
	for _, w := range workers {
		live[w] = true
	}
	state := make([]shardState, shards)
	i := 0
	for _, w := range workers {
		for n := 0; n < owners[w]; n++ {
			state[i] = shardState{id: fmt.Sprintf("s%02d", i), owner: w, token: "t"}
			i++
		}
	}
	for ; i < shards; i++ {
		state[i] = shardState{id: fmt.Sprintf("s%02d", i)}
	}
	first := func(int) int { return 0 }
	handoffs := 0
	for round := 0; round < 100; round++ {
		moved := false
		// Free shards go to workers under their share, as GetLease admits.
		for k := range state {
			if state[k].owner != "" {
				continue
			}
			for _, w := range workers {
				share, _ := plan(w, live, state, maxLeases, first)
				if count(state, w) < share {
					state[k].owner = w
					moved = true
					break
				}
			}
		}
		for _, w := range workers {
			_, claims := plan(w, live, state, maxLeases, first)
			for _, c := range claims {
				for k := range state {
					if state[k].id == c.shard {
						if state[k].owner != c.victim {
							t.Fatalf("claim of %s names victim %s, holder is %s", c.shard, c.victim, state[k].owner)
						}
						state[k].owner = w
					}
				}
				handoffs++
				moved = true
			}
		}
		if !moved {
			break
		}
	}
	got := map[string]int{}
	for _, w := range workers {
		got[w] = count(state, w)
	}
	return got, handoffs
}

func count(state []shardState, w string) int {
	n := 0
	for _, s := range state {
		if s.owner == w {
			n++
		}
	}
	return n
}

// TestPlanReachesFairShare: from any start, balancing ends with every
// worker at floor or ceil of shards over workers, with no more handoffs
// than leases that had to move. The library's rule (steal only below
// floor) stops at 4/2/2 for the third case.
func TestPlanReachesFairShare(t *testing.T) {
	cases := []struct {
		name      string
		owners    map[string]int
		shards    int
		maxLeases int
		want      map[string]int
		handoffs  int
	}{
		{"join", map[string]int{"a": 8, "b": 0}, 8, 0, map[string]int{"a": 4, "b": 4}, 4},
		{"third joins", map[string]int{"a": 4, "b": 4, "c": 0}, 8, 0, map[string]int{"a": 3, "b": 3, "c": 2}, 2},
		{"library stops here", map[string]int{"a": 4, "b": 2, "c": 2}, 8, 0, map[string]int{"a": 3, "b": 3, "c": 2}, 1},
		{"rolling restart", map[string]int{"a": 0, "b": 6, "c": 6}, 12, 0, map[string]int{"a": 4, "b": 4, "c": 4}, 4},
		{"scale down frees", map[string]int{"a": 4, "b": 4}, 12, 0, map[string]int{"a": 6, "b": 6}, 0},
		{"balanced", map[string]int{"a": 3, "b": 3, "c": 2}, 8, 0, map[string]int{"a": 3, "b": 3, "c": 2}, 0},
		{"more workers than shards", map[string]int{"a": 2, "b": 0, "c": 0}, 2, 0, map[string]int{"a": 1, "b": 1, "c": 0}, 1},
		{"cap", map[string]int{"a": 8, "b": 0}, 8, 2, map[string]int{"a": 6, "b": 2}, 2},
		{"cold start", map[string]int{"a": 0, "b": 0, "c": 0}, 12, 0, map[string]int{"a": 4, "b": 4, "c": 4}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, handoffs := simulate(t, tc.owners, tc.shards, tc.maxLeases)
			if !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if handoffs != tc.handoffs {
				t.Errorf("got %d handoffs, want %d", handoffs, tc.handoffs)
			}
		})
	}
}

// TestPlanWaitsForFreeShards: no claim while a shard is free, and a shard
// counts for its live claimant, so a claim is not repeated.
func TestPlanWaitsForFreeShards(t *testing.T) {
	live := map[string]bool{"a": true, "b": true}
	first := func(int) int { return 0 }
	state := []shardState{{id: "1", owner: "a"}, {id: "2", owner: "a"}, {id: "3", owner: "a"}, {id: "4"}}
	if share, claims := plan("b", live, state, 0, first); share != 2 || len(claims) != 0 {
		t.Errorf("with a free shard: share %d, claims %v; want 2 and none", share, claims)
	}
	state = []shardState{{id: "1", owner: "a", claimant: "b"}, {id: "2", owner: "a", claimant: "b"}, {id: "3", owner: "a"}, {id: "4", owner: "a"}}
	if _, claims := plan("b", live, state, 0, first); len(claims) != 0 {
		t.Errorf("with two claims under way: claims %v, want none", claims)
	}
	// A claim by a dead worker counts for nobody: the holder keeps it.
	state[0].claimant, state[1].claimant = "gone", "gone"
	if _, claims := plan("b", live, state, 0, first); len(claims) != 2 {
		t.Errorf("with void claims: claims %v, want two", claims)
	}
}
