package identity

// For the pipeline benchmarks of package identity_test.
var (
	RedisCPU    = redisCPU
	EvalshaUsec = evalshaUsec
)

// SetEmitHook makes f run before each record's outputs are emitted; an
// error fails the Process call there.
func SetEmitHook(p *Processor, f func(offset int64) error) { p.emitHook = f }
