package segments

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/testkit"
)

type nodeRecord struct {
	Key       string `json:"key"`
	Partition int    `json:"partition"`
	Offset    string `json:"offset"`
	Value     struct {
		ProfileID string `json:"profile_id"`
		Segment   string `json:"segment"`
		Status    string `json:"status"`
		Version   any    `json:"version"`
		Reason    any    `json:"reason"`
	} `json:"value"`
	Count *int `json:"count"`
}

// runNodeConsumer runs consume.js and returns its records, or its error
// output when it fails.
func runNodeConsumer(t *testing.T, dir string, pl *pipeline, topic string, count int, timeout time.Duration) ([]nodeRecord, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "consume.js", "--brokers", strings.Join(pl.env.Services.KafkaBrokers, ","),
		"--registry", pl.env.Services.SchemaRegistryURL, "--topic", topic, "--count", strconv.Itoa(count),
		"--timeout", strconv.Itoa(int(timeout.Seconds())))
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var recs []nodeRecord
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r nodeRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("consume.js printed %q: %v", sc.Text(), err)
		}
		if r.Count == nil {
			recs = append(recs, r)
		}
	}
	return recs, stderr.String(), err
}

// KafkaJS, the most used Node client, with the Confluent registry client,
// decodes every record of the segment topic that `cdp run segments` writes
// with CDP_KAFKA_COMPRESSION=gzip; and, as the README says, it cannot read
// the Snappy batches franz-go writes by default without a codec package.
func TestKafkaJSConsumerReadsMemberships(t *testing.T) {
	dir := testkit.NodeClient(t)
	bin := testkit.CDPBinary(t)
	fspec, sspec := defaultSpecs(t)
	pl := newPipelineN(t, fspec, sspec, nil, 6)
	stopF := pl.startFeatures(t)
	defer stopF()
	ops := testkit.FreeAddr(t)
	cmd := exec.Command(bin, "run", "segments", "--metrics-addr", ops)
	cmd.Env = append(pl.env.ProcessEnv(), "CDP_KAFKA_COMPRESSION=gzip")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	testkit.WaitHealthy(t, ops)

	r := rand.New(rand.NewPCG(5, 6))
	now := time.Now()
	var recs []*kgo.Record
	for i := range 40 {
		id := fmt.Sprintf("%s-n%d", pl.env.ID, i)
		for range 2 + r.IntN(6) {
			at := now.Add(-time.Duration(r.Int64N(int64(30 * 24 * time.Hour)))).Truncate(time.Millisecond)
			recs = append(recs, pl.eventRecord(t, id, segEvent(r, i, at), at))
		}
	}
	pl.produce(t, recs)
	pl.env.WaitConsumed(t, 2*time.Minute, 500*time.Millisecond,
		testkit.Consumed{Group: pl.env.Services.TopicPrefix + "-features", Topics: []string{pl.resolved, pl.merges, pl.fold}},
		testkit.Consumed{Group: pl.env.Services.TopicPrefix + "-segments", Topics: []string{pl.changes}})

	goSide := pl.memberships(t)
	want := map[string]change{}
	for profile, cs := range goSide {
		for _, c := range cs {
			want[profile+"/"+strconv.FormatInt(c.Version, 10)] = c
		}
	}
	if len(want) == 0 {
		t.Fatalf("no membership changes to read; segments log:\n%s", logs.String())
	}
	got, stderr, err := runNodeConsumer(t, dir, pl, pl.membership, len(want), 60*time.Second)
	if err != nil {
		t.Fatalf("consume.js: %v\n%s", err, stderr)
	}
	if len(got) != len(want) {
		t.Fatalf("KafkaJS decoded %d records, Go %d\n%s", len(got), len(want), stderr)
	}
	for _, nr := range got {
		v := fmt.Sprint(nr.Value.Version)
		c, ok := want[nr.Value.ProfileID+"/"+v]
		if !ok {
			t.Fatalf("KafkaJS read %+v, which Go did not", nr)
		}
		if nr.Key != nr.Value.ProfileID+"/"+c.Segment || nr.Value.Segment != c.Segment || nr.Value.Status != c.Status {
			t.Fatalf("KafkaJS read %+v, Go %v", nr, c)
		}
		delete(want, nr.Value.ProfileID+"/"+v)
	}
	t.Logf("KafkaJS decoded all %d membership records (gzip)", len(got))

	// The changes topic comes from the features processor with franz-go's
	// default, Snappy: plain KafkaJS cannot read it.
	n := len(pl.env.ReadAll(t, pl.changes))
	got, stderr, err = runNodeConsumer(t, dir, pl, pl.changes, n, 8*time.Second)
	if err == nil && len(got) == n {
		t.Fatalf("plain KafkaJS read %d Snappy-compressed records; the README says it needs kafkajs-snappy", n)
	}
	if !strings.Contains(strings.ToLower(stderr), "snappy") {
		t.Fatalf("KafkaJS read %d of %d Snappy records (%v) without saying why: %s", len(got), n, err, stderr)
	}
	t.Logf("plain KafkaJS on the Snappy-compressed changes topic: %d of %d records, as documented", len(got), n)
}
