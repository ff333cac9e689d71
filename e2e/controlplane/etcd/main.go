// The etcd server, built from the Go module proxy at the version pinned in ../versions.env.
// This is the same entrypoint as etcd's own main.go; it lives here because the root module of the
// etcd repository is not published on the proxy under a path `go build` can use.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
