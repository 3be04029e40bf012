// Command cdp is the single StreamCDP binary: local stack, topology, producers
// and every processor are subcommands (see `cdp --help`).
package main

import (
	"os"

	"github.com/streamcdp/streamcdp/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
