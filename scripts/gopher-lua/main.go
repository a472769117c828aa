// Command gopher-lua runs the Lua 5.1 program on stdin in gopher-lua, the interpreter Argo CD
// embeds for resource health checks, so that scripts/argocd-health-test.py can check our
// health.lua files under the same interpreter Argo CD runs them with.
//
//	go build -o target/tools/bin/gopher-lua ./scripts/gopher-lua
package main

import (
	"fmt"
	"io"
	"os"

	lua "github.com/yuin/gopher-lua"
)

func main() {
	src, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	state := lua.NewState()
	defer state.Close()
	if err := state.DoString(string(src)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
