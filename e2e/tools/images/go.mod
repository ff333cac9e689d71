// Wrapper module of kglue-image (main.go here; e2e/kglue-images) and of the upstream crane and registry
// commands, all from the pinned go-containerregistry. Regenerate with `go get -tool
// github.com/google/go-containerregistry/cmd/{crane,registry}@VERSION && go mod tidy`; the build never
// edits this file.
module kglue.dev/e2e/tools/images

go 1.26.0

require (
	github.com/google/go-containerregistry v0.22.1
	github.com/klauspost/compress v1.19.2
)

require (
	github.com/docker/cli v29.7.2+incompatible // indirect
	github.com/docker/docker-credential-helpers v0.9.3 // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	github.com/sirupsen/logrus v1.9.4 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.10 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
	gotest.tools/v3 v3.5.2 // indirect
)

tool (
	github.com/google/go-containerregistry/cmd/crane
	github.com/google/go-containerregistry/cmd/registry
)
