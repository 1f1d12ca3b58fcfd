// Command lakefs is the lakeFS server, built from its Go module for the native local stack.
package main

import "github.com/treeverse/lakefs/cmd/lakefs/cmd"

func main() {
	cmd.Execute()
}
