// The registry command of distribution v3 (cmd/registry) with the one storage driver the local registry's
// config uses (hack/files/registry-config.yml: filesystem): the cloud drivers (S3, GCS, Azure) and the
// proxy, auth and CDN middlewares upstream links in are most of its build and unused here.
package main

import (
	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
	// RootCmd's commands exit the process themselves with a non-zero code when they fail.
	_ = registry.RootCmd.Execute()
}
