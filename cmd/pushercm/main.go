// Command pushercm is the realtime control plane for apps that speak the
// Pusher Channels protocol. See `pushercm --help`.
package main

import (
	"context"
	"os"

	"github.com/milequest/pushercm/app"
)

func main() {
	os.Exit(app.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
