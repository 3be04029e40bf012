package eval

// Progress receives the progress of long steps (the CLI draws bars). Stage
// starts a step of total units (-1 when unknown), Add reports n more done,
// Done ends the step.
type Progress interface {
	Stage(name string, total int)
	Add(n int)
	Done()
}

type nopProgress struct{}

func (nopProgress) Stage(string, int) {}
func (nopProgress) Add(int)           {}
func (nopProgress) Done()             {}

func orNop(p Progress) Progress {
	if p == nil {
		return nopProgress{}
	}
	return p
}
