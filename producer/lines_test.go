package producer_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/producer"
	"github.com/streamcdp/streamcdp/schemas"
)

const ts = `"timestamp":"2026-03-01T12:00:00.000Z","sentAt":"2026-03-01T12:00:01.000Z"`

// mixedLines is a file of good and bad lines; want lists, by line number,
// the code and field of every bad one.
var mixedLines = []struct {
	line        string
	code, field string // empty for good lines
}{
	/* 1 */ {`{"type":"track","event":"Product Viewed","messageId":"good-1","userId":"u-1",` + ts + `,"properties":{"product_id":"p-1","price":9.5}}`, "", ""},
	/* 2 */ {``, "", ""},
	/* 3 */ {`{"type":"track","event":`, schemas.CodeBadJSON, ""},
	/* 4 */ {`{"type":"track","messageId":"bad-4","userId":"u-1",` + ts + `}`, schemas.CodeMissingField, "event"},
	/* 5 */ {`{"type":"identify","userId":"u-2","traits":{"email":"b@example.com"},` + ts + `}`, "", ""},
	/* 6 */ {`{"type":"track","event":"X","messageId":"bad-6",` + ts + `}`, schemas.CodeMissingIdentifier, ""},
	/* 7 */ {`{"type":"track","event":"X","messageId":"bad-7","userId":"u-1","timestamp":"1970-01-04T00:00:00.000Z"}`, schemas.CodeBadTimestamp, "timestamp"},
	/* 8 */ {`{"type":"track","event":"X","messageId":"bad-8","userId":5}`, schemas.CodeWrongType, "userId"},
	/* 9 */ {"{\"type\":\"page\",\"name\":\"Home\",\"messageId\":\"good-9\",\"anonymousId\":\"a-9\"," + ts + "}\r", "", ""},
	/* 10 */ {`{"type":"click","messageId":"bad-10","userId":"u-1"}`, schemas.CodeUnknownType, "type"},
	/* 11 */ {`{"type":"track","event":"X","messageId":"bad-11","userId":"u-1","properties":{"blob":"` + strings.Repeat("x", 40<<10) + `"}}`, schemas.CodeOversize, ""},
	/* 12 */ {`{"type":"track","event":"Order Completed","messageId":"bad-12","userId":"u-1","properties":{"revenue":"lots"}}`, schemas.CodeWrongType, "properties.revenue"},
	/* 13 */ {`{"type":"track","event":"X","messageId":"bad-13","userId":"` + strings.Repeat("y", 1100<<10) + `"}`, schemas.CodeOversize, ""},
	/* 14 */ {`{"type":"alias","userId":"u-3","previousId":"a-9","messageId":"good-14",` + ts + `}`, "", ""},
	/* 15 */ {`   `, "", ""},
	/* 16 */ {`{"type":"group","groupId":"acme","messageId":"good-16","userId":"u-3",` + ts + `}`, "", ""}, // no final newline
}

func mixedFile() []byte {
	var b bytes.Buffer
	for i, l := range mixedLines {
		b.WriteString(l.line)
		if i < len(mixedLines)-1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func TestProduceLinesSendsGoodLinesAndReportsBadOnes(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			p, env, topic := newProducer(t, nil)
			ctx := testkit.Context(t)
			var rejects []producer.LineError
			res, err := p.ProduceLines(ctx, bytes.NewReader(mixedFile()), producer.LinesOptions{
				Workers:  workers,
				OnReject: func(e producer.LineError) { rejects = append(rejects, e) },
			})
			if err != nil {
				t.Fatalf("ProduceLines: %v", err)
			}

			var wantRejects []producer.LineError
			var wantIDs []string
			for i, l := range mixedLines {
				switch {
				case l.code != "":
					wantRejects = append(wantRejects, producer.LineError{Line: int64(i + 1), Code: l.code, Field: l.field})
				case strings.TrimSpace(l.line) != "":
					var id string
					if _, after, ok := strings.Cut(l.line, `"messageId":"`); ok {
						id, _, _ = strings.Cut(after, `"`)
					} else { // line 5: derived from its bytes
						id = uuid.NewSHA1(uuid.MustParse("6f1c2a6e-8f0e-4a57-9d7c-2b1f3c9e5a10"), []byte(l.line)).String()
					}
					wantIDs = append(wantIDs, id)
				}
			}
			if len(rejects) != len(wantRejects) {
				t.Fatalf("%d rejects %v, want %d", len(rejects), rejects, len(wantRejects))
			}
			for i, r := range rejects {
				w := wantRejects[i]
				if r.Line != w.Line || r.Code != w.Code || r.Field != w.Field || r.Reason == "" {
					t.Errorf("reject %d = %+v, want line %d code %s field %q", i, r, w.Line, w.Code, w.Field)
				}
			}
			want := producer.LinesResult{Lines: 14, Sent: int64(len(wantIDs)), Invalid: int64(len(wantRejects))}
			res.Elapsed = 0
			if res != want {
				t.Errorf("result %+v, want %+v", res, want)
			}

			dec := decoder(t, env)
			var gotIDs []string
			for _, r := range consume(t, env, topic, len(wantIDs)) {
				ev, err := dec.Decode(ctx, r.Value)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				gotIDs = append(gotIDs, ev.MessageID)
			}
			slices.Sort(gotIDs)
			slices.Sort(wantIDs)
			if !slices.Equal(gotIDs, wantIDs) {
				t.Errorf("produced %v, want %v", gotIDs, wantIDs)
			}
		})
	}
}

// TestProduceLinesKeepsOrder sends many lines of one user through several
// workers; the single partition they land on must hold them in file order.
func TestProduceLinesKeepsOrder(t *testing.T) {
	p, env, topic := newProducer(t, nil)
	ctx := testkit.Context(t)
	const n = 3000
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"type":"track","event":"Step","messageId":"m-%d","userId":"same",%s,"properties":{"i":%d}}`+"\n", i, ts, i)
	}
	res, err := p.ProduceLines(ctx, &b, producer.LinesOptions{Workers: 4})
	if err != nil || res.Sent != n {
		t.Fatalf("ProduceLines = %+v, %v", res, err)
	}
	dec := decoder(t, env)
	for i, r := range consume(t, env, topic, n) {
		ev, err := dec.Decode(ctx, r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(ev.Properties["i"]); got != fmt.Sprint(i) {
			t.Fatalf("record %d (offset %d) carries i=%s: out of order", i, r.Offset, got)
		}
	}
}

// TestSendInvalidProducesEveryLine is the generator's mode: invalid lines go
// to Kafka too, as Avro when they encode and as JSON when they do not.
func TestSendInvalidProducesEveryLine(t *testing.T) {
	p, env, topic := newProducer(t, nil)
	ctx := testkit.Context(t)
	lines := []string{
		`{"type":"track","event":"A","messageId":"ok","userId":"u",` + ts + `}`,
		`{"type":"track","messageId":"no-name","userId":"u",` + ts + `}`, // encodes
		`{"type":"click","messageId":"bad-type","userId":"u"}`,           // cannot be encoded
		`not json at all`,
	}
	w := p.NewLineWriter(ctx, producer.LinesOptions{SendInvalid: true})
	for _, l := range lines {
		if err := w.WriteLine(ctx, []byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := w.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res.Elapsed = 0
	if want := (producer.LinesResult{Lines: 4, Sent: 4, Invalid: 3, InvalidSent: 3, InvalidAsJSON: 2}); res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	dec := decoder(t, env)
	got := map[string]string{}
	for _, r := range consume(t, env, topic, 4) {
		ev, err := dec.Decode(ctx, r.Value)
		switch {
		case err == nil:
			got[ev.MessageID] = "avro"
		case r.Value[0] == '{' || r.Value[0] == 'n':
			got[string(r.Value)] = "json"
		default:
			t.Fatalf("record %q: %v", r.Value, err)
		}
	}
	want := map[string]string{"ok": "avro", "no-name": "avro", lines[2]: "json", lines[3]: "json"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records %v, want %v", got, want)
	}
}
