//go:build cgo

package chdb

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

typedef void* (*chdb_cmdline_fn)(int, char**);

// load returns chdb_query_cmdline from the library, or NULL with *err set.
static void* load(const char* path, char** err) {
	void* h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
	if (!h) { *err = dlerror(); return NULL; }
	void* f = dlsym(h, "chdb_query_cmdline");
	if (!f) { *err = dlerror(); return NULL; }
	return f;
}

static void* call(void* f, int argc, char** argv) {
	return ((chdb_cmdline_fn)f)(argc, argv);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Serve loads the library and serves until the process is killed. It returns
// only on failure: when the library cannot be loaded, or when the serving
// query ends (for example because a port is taken).
func Serve(o Options) error {
	cpath := C.CString(o.Library)
	defer C.free(unsafe.Pointer(cpath))
	var cerr *C.char
	fn := C.load(cpath, &cerr)
	if fn == nil {
		return fmt.Errorf("loading %s: %s", o.Library, C.GoString(cerr))
	}
	args := o.args()
	argv := C.malloc(C.size_t(len(args)+1) * C.size_t(unsafe.Sizeof(uintptr(0))))
	defer C.free(argv)
	slots := unsafe.Slice((**C.char)(argv), len(args)+1)
	for i, a := range args {
		slots[i] = C.CString(a)
		defer C.free(unsafe.Pointer(slots[i]))
	}
	slots[len(args)] = nil
	C.call(fn, C.int(len(args)), (**C.char)(argv))
	return errors.New("clickhouse-local returned: the serving query ended (see the log above for the reason, e.g. a port in use)")
}

// Available reports whether this binary can serve ClickHouse.
const Available = true
