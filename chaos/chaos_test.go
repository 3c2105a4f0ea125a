//go:build integration

package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/deadletter"
	"github.com/buildtelemetry/pipeline/internal/devstack"
)

// Knobs, all optional:
//
//	CHAOS_DURATION  load time of the long form, rounded down to whole
//	                minutes (one disruption cycle per minute); unset: the
//	                short form, one cycle of 60 s
//	CHAOS_RATE      events per second sent (default 70 short, 120 long)
//	CHAOS_SHARDS    stream shards (default 4 short, 8 long)
//	CHAOS_LOG_DIR   keep the processes' logs there (default: a temp dir,
//	                removed when the test passes, kept and named when not)
//	CHAOS_REPORT    also write the report to this file
type config struct {
	form     string // "short" or "long"
	cycles   int
	duration time.Duration // of the load
	rate     float64
	shards   int32
	clients  int
	workers  int
}

const cycleLength = 60 * time.Second

// gatewayGap is how long the gateway stays down when it is restarted.
const gatewayGap = 2 * time.Second

func loadConfig(t *testing.T) config {
	t.Helper()
	c := config{form: "short", cycles: 1, rate: 70, shards: 4, clients: 4, workers: 3}
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("CHAOS_DURATION=%q: want a positive duration such as 5m", v)
		}
		c.form, c.rate, c.shards, c.clients = "long", 120, 8, 6
		c.cycles = max(1, int(d/cycleLength))
	}
	c.duration = time.Duration(c.cycles) * cycleLength
	if v := os.Getenv("CHAOS_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			t.Fatalf("CHAOS_RATE=%q: want events per second", v)
		}
		c.rate = r
	}
	if v := os.Getenv("CHAOS_SHARDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 64 {
			t.Fatalf("CHAOS_SHARDS=%q: want 1 to 64", v)
		}
		c.shards = int32(n)
	}
	return c
}

// Names inside the private stack.
const (
	streamName   = "chaos-events"
	eventsBucket = "chaos-events"
	dlBucket     = "chaos-deadletters"
	countsTable  = "chaos-counts"
	workerApp    = "chaos-workers" // also the lease table
	gatewayKey   = "chaos-write-key"
	segmentKey   = "chaos-segment-key"
	ga4ID        = "G-CHAOS0001"
	ga4Secret    = "chaos-ga4-secret"
)

// cluster is the gateway and the workers, as separate processes, and what
// the harness did to them.
type cluster struct {
	t                     *testing.T
	logDir                string
	gatewayBin, workerBin string
	gatewayAddr           string
	gatewayEnv, workerEnv []string
	seg                   *segmentServer
	ga                    *ga4Server
	tl                    *timeline

	mu          sync.Mutex
	workers     []*proc
	incarnation []int
	gateway     *proc
	gwStarts    int
	all         []*proc
	problems    []string // failures found while running

	// What was done.
	sigkills, sigterms     int
	gwTerms, gwKills       int
	segDown, ga4Failing    time.Duration
	sigtermExit, gwDown    []time.Duration
	segOutages, ga4Outages int
	redriveTook            time.Duration // after the drain, until the SaaS sinks held every event
}

func (c *cluster) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.tl.addf("PROBLEM: %s", msg)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.problems = append(c.problems, msg)
}

// watch reports a process that exits without being asked to.
func (c *cluster) watch(p *proc) {
	<-p.done
	if !p.stopped.Load() {
		c.problem("%s exited on its own (%v); last log lines:\n%s", p.name, p.err, tailLines(p.logs(), 15))
	}
}

func (c *cluster) startWorker(slot int) error {
	c.mu.Lock()
	c.incarnation[slot]++
	name := fmt.Sprintf("w%d.%d", slot+1, c.incarnation[slot])
	c.mu.Unlock()
	p, err := startProc("worker "+name, filepath.Join(c.logDir, "worker-"+name+".log"), c.workerBin,
		append(slices.Clone(c.workerEnv), "WORKER_ID="+name), "run")
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.workers[slot] = p
	c.all = append(c.all, p)
	c.mu.Unlock()
	go c.watch(p)
	c.tl.addf("started worker %s", name)
	return nil
}

func (c *cluster) worker(slot int) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.workers[slot]
}

func (c *cluster) startGateway(ctx context.Context) error {
	c.mu.Lock()
	c.gwStarts++
	name := fmt.Sprintf("gateway.%d", c.gwStarts)
	c.mu.Unlock()
	p, err := startProc(name, filepath.Join(c.logDir, name+".log"), c.gatewayBin, c.gatewayEnv)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.gateway = p
	c.all = append(c.all, p)
	c.mu.Unlock()
	go c.watch(p)
	if !waitFor(ctx, 60*time.Second, 50*time.Millisecond, func() bool {
		return p.exited() || httpOK("http://"+c.gatewayAddr+"/readyz")
	}) || p.exited() {
		return fmt.Errorf("%s not ready within 60 s; last log lines:\n%s", name, tailLines(p.logs(), 15))
	}
	c.tl.addf("%s ready on %s", name, c.gatewayAddr)
	return nil
}

// sigkill kills a worker the hard way: its leases stay until they expire.
func (c *cluster) sigkill(slot int) {
	p := c.worker(slot)
	p.signal(syscall.SIGKILL)
	_ = p.wait(30 * time.Second)
	c.mu.Lock()
	c.sigkills++
	c.mu.Unlock()
	c.tl.addf("SIGKILL %s", p.name)
}

// sigterm stops a worker gracefully and waits for it: it flushes,
// checkpoints and releases its leases.
func (c *cluster) sigterm(slot int) {
	p := c.worker(slot)
	start := time.Now()
	p.signal(syscall.SIGTERM)
	err := p.wait(60 * time.Second)
	took := time.Since(start)
	c.mu.Lock()
	c.sigterms++
	c.sigtermExit = append(c.sigtermExit, took)
	c.mu.Unlock()
	c.tl.addf("SIGTERM %s: exited after %v (%v)", p.name, took.Round(100*time.Millisecond), err)
	if err != nil {
		c.problem("%s after SIGTERM: %v", p.name, err)
	}
	if strings.Contains(p.logs(), "shutdown timed out") {
		c.problem("%s: graceful shutdown timed out after SIGTERM (leases left to expire)", p.name)
	}
}

// restartGateway stops the gateway and starts a new one on the same
// address. With SIGTERM the gateway drains what it acknowledged; with
// SIGKILL whatever it had not acknowledged may or may not be in the
// stream, and its clients get resets: those events are unacknowledged.
func (c *cluster) restartGateway(ctx context.Context, sig syscall.Signal) {
	c.mu.Lock()
	p := c.gateway
	c.mu.Unlock()
	start := time.Now()
	p.signal(sig)
	err := p.wait(60 * time.Second)
	c.tl.addf("%v %s: exited after %v (%v)", sigName(sig), p.name, time.Since(start).Round(100*time.Millisecond), err)
	if err != nil && sig == syscall.SIGTERM {
		c.problem("%s after SIGTERM: %v; last log lines:\n%s", p.name, err, tailLines(p.logs(), 10))
	}
	// A restart is not instant (a pod is replaced, an image pulled): the
	// clients see connection refused for a while.
	time.Sleep(gatewayGap)
	if err := c.startGateway(ctx); err != nil {
		c.problem("restart gateway: %v", err)
		return
	}
	c.mu.Lock()
	if sig == syscall.SIGKILL {
		c.gwKills++
	} else {
		c.gwTerms++
	}
	c.gwDown = append(c.gwDown, time.Since(start))
	c.mu.Unlock()
}

func sigName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "SIGKILL"
	}
	return "SIGTERM"
}

// step is one disruption at an offset from the start of the load.
type step struct {
	at time.Duration
	do func()
}

// schedule returns the disruptions of every cycle of 60 s. Even cycles
// (the short form has only cycle 0):
//
//	10 s SIGKILL a worker, 15 s restart it
//	20 s Segment down (connection refused) until 30 s
//	25 s GA4 answers 500 until 35 s
//	40 s SIGTERM another worker, 45 s restart it (once it exited)
//	50 s SIGTERM the gateway and start a new one on the same address
//	 5 s a fourth worker joins; 52 s rolling restart of the first three
//	     (SIGTERM, start the replacement, next one 2 s later), then the
//	     fourth leaves with SIGTERM
//
// Odd cycles (long form) are harsher: Segment down and GA4 failing as
// above, two workers SIGKILLed at once at 27 s, while both breakers park,
// and restarted at 33 s; the third worker SIGTERMed at 40 s and restarted
// at 45 s; the gateway SIGKILLed at 50 s and started again. The workers
// disrupted rotate from cycle to cycle.
func (c *cluster) schedule(ctx context.Context, cycles, workers int) []step {
	var steps []step
	var segDownAt, gaFailAt time.Time
	for i := range cycles {
		base := time.Duration(i) * cycleLength
		add := func(at time.Duration, do func()) { steps = append(steps, step{base + at, do}) }
		restart := func(slot int) func() {
			return func() {
				if err := c.startWorker(slot); err != nil {
					c.problem("restart worker %d: %v", slot+1, err)
				}
			}
		}
		add(20*time.Second, func() {
			c.seg.down()
			segDownAt = time.Now()
			c.tl.addf("Segment down (connection refused)")
		})
		add(25*time.Second, func() {
			c.ga.fail500.Store(true)
			gaFailAt = time.Now()
			c.tl.addf("GA4 answers 500")
		})
		add(30*time.Second, func() {
			if err := c.seg.up(); err != nil {
				c.problem("Segment up: %v", err)
			}
			c.mu.Lock()
			c.segDown += time.Since(segDownAt)
			c.segOutages++
			c.mu.Unlock()
			c.tl.addf("Segment up")
		})
		add(35*time.Second, func() {
			c.ga.fail500.Store(false)
			c.mu.Lock()
			c.ga4Failing += time.Since(gaFailAt)
			c.ga4Outages++
			c.mu.Unlock()
			c.tl.addf("GA4 answers normally")
		})
		if i%2 == 0 {
			// A worker joins a balanced fleet under load: leases are
			// claimed and handed over; after the rolling restart it
			// leaves again (scale-down).
			add(5*time.Second, restart(workers))
			add(52*time.Second, func() {
				c.tl.addf("rolling restart of workers 1 to %d", workers)
				for slot := range workers {
					c.sigterm(slot)
					restart(slot)()
					time.Sleep(2 * time.Second) // the next pod waits for this one's readiness
				}
				c.sigterm(workers)
			})
			k, j := i%workers, (i+1)%workers
			add(10*time.Second, func() { c.sigkill(k) })
			add(15*time.Second, restart(k))
			add(40*time.Second, func() { c.sigterm(j) })
			add(45*time.Second, restart(j))
			add(50*time.Second, func() { c.restartGateway(ctx, syscall.SIGTERM) })
		} else {
			k, j, m := i%workers, (i+1)%workers, (i+2)%workers
			add(27*time.Second, func() { c.sigkill(k); c.sigkill(j) })
			add(33*time.Second, func() { restart(k)(); restart(j)() })
			add(40*time.Second, func() { c.sigterm(m) })
			add(45*time.Second, restart(m))
			add(50*time.Second, func() { c.restartGateway(ctx, syscall.SIGKILL) })
		}
	}
	sort.SliceStable(steps, func(a, b int) bool { return steps[a].at < steps[b].at })
	return steps
}

func (c *cluster) runSchedule(ctx context.Context, start time.Time, steps []step) {
	for _, s := range steps {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(s.at))):
		}
		s.do()
	}
}

// stopAll stops every process still running with SIGTERM (the graceful
// path a deployment takes), then kills what is left.
func (c *cluster) stopAll(timeout time.Duration) []string {
	c.mu.Lock()
	procs := slices.Clone(c.all)
	c.mu.Unlock()
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	for _, p := range procs {
		if p.exited() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.signal(syscall.SIGTERM)
			if err := p.wait(timeout); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("%s after the final SIGTERM: %v", p.name, err))
				mu.Unlock()
				p.kill()
			}
		}()
	}
	wg.Wait()
	sort.Strings(errs)
	return errs
}

func (c *cluster) killAll() {
	c.mu.Lock()
	procs := slices.Clone(c.all)
	c.mu.Unlock()
	for _, p := range procs {
		if !p.exited() {
			p.kill()
		}
	}
}

var replayLine = regexp.MustCompile(`replayed (\d+) letters, (\d+) events into (\S+); (\d+) letters failed, (\d+) entries kept \(not replayable\), (\d+) events rejected again`)

type replayResult struct {
	letters, events, failed, kept, rejected int
	took                                    time.Duration
}

// replay runs `worker replay -sink NAME` with the workers' settings.
func (c *cluster) replay(ctx context.Context, sink string) (replayResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, c.workerBin, "replay", "-sink", sink)
	cmd.Env = c.workerEnv
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(filepath.Join(c.logDir, "replay-"+sink+".log"), out, 0o644)
	r := replayResult{took: time.Since(start)}
	m := replayLine.FindStringSubmatch(string(out))
	if m != nil {
		r.letters, _ = strconv.Atoi(m[1])
		r.events, _ = strconv.Atoi(m[2])
		r.failed, _ = strconv.Atoi(m[4])
		r.kept, _ = strconv.Atoi(m[5])
		r.rejected, _ = strconv.Atoi(m[6])
	}
	if err != nil || m == nil {
		return r, fmt.Errorf("worker replay -sink %s: %v\n%s", sink, err, tailLines(string(out), 15))
	}
	return r, nil
}

// TestChaos runs the pipeline as separate processes under load while it
// kills, stops and restarts them and fails the SaaS sinks, then drains
// and checks every sink against the stream. See the package doc and
// config for the short and long forms.
func TestChaos(t *testing.T) {
	cfg := loadConfig(t)
	began := time.Now()
	logDir, keepLogs := os.Getenv("CHAOS_LOG_DIR"), true
	if logDir == "" {
		var err error
		if logDir, err = os.MkdirTemp("", "chaos-logs-"); err != nil {
			t.Fatal(err)
		}
		keepLogs = false
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || keepLogs {
			t.Logf("process logs kept in %s", logDir)
			return
		}
		os.RemoveAll(logDir)
	})

	gatewayBin, workerBin := buildBinaries(t)

	// The suite's own stack, on disk (not make test's shared one).
	dataDir := t.TempDir()
	emuLog, err := os.Create(filepath.Join(logDir, "emulators.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emuLog.Close() })
	startCtx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	stack, err := devstack.Start(startCtx, devstack.Config{DataDir: dataDir, Log: emuLog, StartTimeout: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stack.Close(); err != nil {
			t.Logf("stop emulators: %v", err)
		}
	})
	ctx := t.Context()
	if err := stack.CreateStream(startCtx, streamName, cfg.shards); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{eventsBucket, dlBucket} {
		if err := stack.CreateBucket(startCtx, b); err != nil {
			t.Fatal(err)
		}
	}

	seg, err := newSegmentServer(segmentKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(seg.close)
	ga, err := newGA4Server(ga4ID, ga4Secret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ga.close)
	gwAddr, err := stableAddr()
	if err != nil {
		t.Fatal(err)
	}

	base := append(stack.Endpoints().ChildEnv(), "KINESIS_STREAM="+streamName, "LOG_LEVEL=info")
	c := &cluster{
		t: t, logDir: logDir, gatewayBin: gatewayBin, workerBin: workerBin, gatewayAddr: gwAddr,
		gatewayEnv: slices.Concat(base, []string{
			"GATEWAY_ADDR=" + gwAddr, "GATEWAY_METRICS_ADDR=127.0.0.1:0", "GATEWAY_WRITE_KEYS=" + gatewayKey + "=chaos",
			// Longer than the default 1 ms, so that a SIGKILL finds
			// requests in flight whose events may or may not be in the
			// stream: unacknowledged, and allowed at most once.
			"GATEWAY_LINGER=20ms",
		}),
		workerEnv: slices.Concat(base, []string{
			"WORKER_APP=" + workerApp, "DEADLETTER_BUCKET=" + dlBucket,
			"WORKER_HEALTH_ADDR=127.0.0.1:0", "WORKER_METRICS_ADDR=127.0.0.1:0",
			"WORKER_BREAKER_OPEN_TIMEOUT=2s", "WORKER_RETRY_BUDGET=3s",
			"S3_BUCKET=" + eventsBucket, "S3_BUFFER_INTERVAL=2s",
			"DYNAMODB_COUNTS_TABLE=" + countsTable,
			"SEGMENT_WRITE_KEY=" + segmentKey, "SEGMENT_ENDPOINT=" + seg.URL(),
			"GA4_MEASUREMENT_ID=" + ga4ID, "GA4_API_SECRET=" + ga4Secret, "GA4_ENDPOINT=" + ga.URL(),
		}),
		seg: seg, ga: ga, tl: &timeline{},
		// One slot more than the fleet: the worker that joins (and leaves)
		// in even cycles.
		workers: make([]*proc, cfg.workers+1), incarnation: make([]int, cfg.workers+1),
	}
	t.Cleanup(c.killAll)

	for i := range cfg.workers {
		if err := c.startWorker(i); err != nil {
			t.Fatal(err)
		}
	}
	leased := func() bool {
		ls, err := readLeases(ctx, stack.DynamoDB(), workerApp)
		if err != nil {
			return false
		}
		n := 0
		for _, l := range ls {
			if l.owner != "" {
				n++
			}
		}
		return n == int(cfg.shards)
	}
	if !waitFor(ctx, 2*time.Minute, 200*time.Millisecond, leased) {
		t.Fatalf("the workers did not lease all %d shards within 2 min; worker 1's last log lines:\n%s", cfg.shards, tailLines(c.worker(0).logs(), 20))
	}
	c.tl.addf("all %d shards leased", cfg.shards)
	if err := c.startGateway(ctx); err != nil {
		t.Fatal(err)
	}
	setup := time.Since(began)

	// Load and disruptions.
	load := newLoadGen("http://"+gwAddr, gatewayKey, "chaos", cfg.rate, cfg.clients)
	loadStart := time.Now()
	c.tl.mu.Lock()
	c.tl.start = loadStart
	c.tl.mu.Unlock()
	c.tl.addf("load starts: %.0f events/s for %v", cfg.rate, cfg.duration)
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		load.run(loadCtx, uint64(began.UnixNano()))
	}()
	kplDone := make(chan kplResult, 1)
	go func() { kplDone <- produceKPL(loadCtx, stack.Kinesis(), streamName, load) }()
	c.runSchedule(ctx, loadStart, c.schedule(ctx, cfg.cycles, cfg.workers))
	select {
	case <-time.After(time.Until(loadStart.Add(cfg.duration))):
	case <-ctx.Done():
	}
	stopLoad()
	<-loadDone
	kpl := <-kplDone
	c.tl.addf("KPL producer: %d aggregates (%d events), %d poison records", kpl.aggregates, kpl.events, kpl.poison)
	loadTime := time.Since(loadStart)
	c.tl.addf("load stopped: %s", load.outcomeSummary())

	// Drain: every shard's checkpoint reaches the last record in the
	// stream, which happens only once every sink made it durable or
	// parked it.
	truth, err := readStream(ctx, stack.Kinesis(), streamName)
	if err != nil {
		t.Fatalf("read the stream: %v", err)
	}
	drainStart := time.Now()
	var lag []string
	nextLog := time.Now().Add(20 * time.Second)
	drained := waitFor(ctx, 5*time.Minute, 500*time.Millisecond, func() bool {
		ls, err := readLeases(ctx, stack.DynamoDB(), workerApp)
		if err != nil {
			return false
		}
		lag = behind(ls, truth.lastSeq)
		if len(lag) > 0 && time.Now().After(nextLog) {
			t.Logf("draining: %d shards behind: %s", len(lag), strings.Join(lag, "; "))
			nextLog = time.Now().Add(20 * time.Second)
		}
		return len(lag) == 0
	})
	drainTook := time.Since(drainStart)
	if !drained {
		c.problem("not drained %v after the load stopped: shards behind: %s", drainTook.Round(time.Second), strings.Join(lag, "; "))
	} else {
		c.tl.addf("drained: every checkpoint at the end of its shard")
	}

	// The workers re-drive what the outages parked by themselves once the
	// breakers closed: every event of the stream must reach Segment and
	// GA4 with no replay run.
	missingAt := func() (seg, ga int) {
		sg, g := c.seg.ids.snapshot(), c.ga.ids.snapshot()
		for id := range truth.count {
			if sg[id] == 0 {
				seg++
			}
			if g[id] == 0 {
				ga++
			}
		}
		return seg, ga
	}
	redriveStart := time.Now()
	redriven := waitFor(ctx, 90*time.Second, 500*time.Millisecond, func() bool {
		seg, ga := missingAt()
		return seg == 0 && ga == 0
	})
	c.redriveTook = time.Since(redriveStart)
	if !redriven {
		seg, ga := missingAt()
		c.problem("automatic re-drive: after %v, %d events never reached Segment and %d never reached GA4 without a replay", c.redriveTook.Round(time.Second), seg, ga)
	} else {
		c.tl.addf("automatic re-drive: Segment and GA4 hold every event, no replay run")
	}

	// Then replay whatever is left (permanent letters, or what re-drive
	// missed), as an operator would.
	store, err := deadletter.New(stack.S3(), deadletter.Config{Bucket: dlBucket})
	if err != nil {
		t.Fatal(err)
	}
	parkedBefore, err := readDeadLetters(ctx, store)
	if err != nil {
		t.Fatalf("read dead letters: %v", err)
	}
	replays := map[string]replayResult{}
	for _, sink := range []string{"s3", "dynamodb", "segment", "ga4"} {
		if parkedBefore[sink].letters == 0 {
			continue
		}
		r, err := c.replay(ctx, sink)
		replays[sink] = r
		if err != nil {
			c.problem("%v", err)
		}
		c.tl.addf("replay %s: %d letters, %d events in %v", sink, r.letters, r.events, r.took.Round(100*time.Millisecond))
	}
	parkedAfter, err := readDeadLetters(ctx, store)
	if err != nil {
		t.Fatalf("read dead letters: %v", err)
	}
	for _, errText := range c.stopAll(60 * time.Second) {
		c.problem("%s", errText)
	}
	c.tl.addf("stopped every process")
	c.mu.Lock()
	procs := slices.Clone(c.all)
	c.mu.Unlock()
	for _, p := range procs {
		if logs := p.logs(); strings.Contains(logs, "panic:") || strings.Contains(logs, "fatal error:") {
			c.problem("%s panicked; see %s", p.name, p.logPath)
		}
	}

	// Read every sink back.
	s3c, err := readS3(ctx, stack.S3(), eventsBucket)
	if err != nil {
		t.Fatalf("read S3: %v", err)
	}
	counts, err := readCounts(ctx, stack.DynamoDB(), countsTable)
	if err != nil {
		t.Fatalf("read counts: %v", err)
	}
	r := &results{
		cfg: cfg, load: load, sent: load.snapshot(), truth: truth, s3: s3c, counts: counts,
		segment: seg.ids.snapshot(), ga4: ga.ids.snapshot(),
		parkedBefore: parkedBefore, parkedAfter: parkedAfter, replays: replays,
		c: c, loadTime: loadTime, setup: setup, drain: drainTook, total: time.Since(began),
		limits: stack.Limits(), kpl: kpl,
	}
	r.check()
	t.Logf("timeline:\n%s", c.tl)
	report := r.report()
	fmt.Print(report)
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Errorf("write report: %v", err)
		}
	}
	for _, p := range r.problems {
		t.Error(p)
	}
}
