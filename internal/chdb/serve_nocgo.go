//go:build !cgo

package chdb

import "errors"

// Serve is unavailable without cgo: loading libchdb.so needs dlopen.
func Serve(Options) error {
	return errors.New("this cdp binary was built without cgo; the local ClickHouse needs a build with CGO_ENABLED=1 and gcc (apt-get install gcc)")
}

// Available reports whether this binary can serve ClickHouse.
const Available = false
