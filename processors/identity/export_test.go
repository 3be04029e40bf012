package identity

// For the pipeline benchmarks of package identity_test.
var (
	RedisCPU    = redisCPU
	EvalshaUsec = evalshaUsec
)
