package store

import (
	"context"
	"log/slog"
)

// StartEmbedded runs the embedded server on its own, on a loopback port,
// for several clients at once: the tests that run several daemons on one
// store, each given the returned URI as store.uri (so each runs the shared
// compare-and-set mode, as on MongoDB). Open with an empty URI is the
// daemon's way; this is not. stop ends the server.
func StartEmbedded(ctx context.Context, dataDir string, log *slog.Logger) (uri string, stop func(context.Context) error, err error) {
	return startEmbedded(ctx, dataDir, log)
}
