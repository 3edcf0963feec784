// Command echo is the echo plugin built as its own binary. Enable it with
//
//	plugins:
//	  echo:
//	    enabled: true
//	    path: /path/to/echo
//
// The binary is only meant to be started by the realtime host.
package main

import (
	"github.com/clowdr/realtime/plugins/echo"
	"github.com/clowdr/realtime/plugins/sdk"
)

func main() { sdk.Serve(echo.New()) }
