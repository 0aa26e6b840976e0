// Package deps pins the module's chosen dependencies while the packages that use them are being
// written. It is removed once every dependency has a real importer.
package deps

import (
	_ "github.com/containers/gvisor-tap-vsock/pkg/virtualnetwork"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/hashicorp/memberlist"
	_ "github.com/mark3labs/mcp-go/server"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/nats-io/nats.go/micro"
	_ "github.com/oklog/ulid/v2"
	_ "github.com/pkg/sftp"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/sys/unix"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/layout"
	_ "github.com/google/go-containerregistry/pkg/v1/mutate"
)
