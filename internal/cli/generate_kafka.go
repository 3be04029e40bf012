package cli

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/producer"
)

func init() { generateKafkaSink = openGenerateKafkaSink }

// openGenerateKafkaSink produces `cdp generate` output to the raw events
// topic through the producer package: each line is parsed, validated and
// encoded as Avro, in order, keyed by userId else anonymousId (runGenerate
// applies --rate in front of it).
//
// Lines the generator makes invalid on purpose (--invalid-share) are sent
// anyway so that the dead-letter path gets exercised: as Avro when they
// encode (a track without an event name, a missing identifier, a 1970
// timestamp and an oversize event all do), else as their JSON bytes, which
// the identity stage dead-letters as wrong_magic. Valid lines that cannot be
// delivered make the command fail.
func openGenerateKafkaSink(ctx context.Context) (generate.Sink, func() error, error) {
	cfg, err := producer.ConfigFromEnv()
	if err != nil {
		return nil, nil, err
	}
	p, err := producer.New(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	w := p.NewLineWriter(ctx, producer.LinesOptions{SendInvalid: true})
	closeFn := func() error {
		res, err := w.Close(ctx)
		var de *producer.DeliveryError
		if cerr := p.Close(ctx); cerr != nil && !errors.As(cerr, &de) {
			err = errors.Join(err, cerr) // delivery failures are counted in res
		}
		fmt.Fprintf(os.Stderr, "produced %d of %d lines to %s in %s (%.0f lines/s); %d deliberately invalid sent (%d as JSON bytes), %d not delivered\n",
			res.Sent, res.Lines, p.Topic(), res.Elapsed.Round(1e6), res.PerSecond(), res.InvalidSent, res.InvalidAsJSON, res.Failed)
		if err != nil {
			return err
		}
		if res.Failed > 0 {
			return fmt.Errorf("%d generated line(s) were not delivered to %s", res.Failed, p.Topic())
		}
		return nil
	}
	return generate.SinkFunc(w.WriteLine), closeFn, nil
}
