// Command achievement notifies one user of an achievement on every device
// they are signed in on (pusher:signin), through SendToUser. The event id is
// derived from the achievement, so running the program twice notifies once.
//
//	PUSHERCM_TOKEN=$(pushercm token --dev --sub svc-achievements --scopes events:publish) \
//	  go -C examples run ./achievement -user u-7 -badge 10k-steps
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/milequest/pushercm/client"
	"github.com/milequest/pushercm/examples/internal/exampleenv"
)

func main() {
	user := flag.String("user", "u-7", "user id as signed in by pusher:signin")
	badge := flag.String("badge", "10k-steps", "achievement id")
	flag.Parse()

	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	c, err := exampleenv.Dial(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	res, err := c.SendToUser(ctx, client.UserEvent{
		// One notification per user and badge, however often the awarding
		// job runs inside the idempotency window.
		ID:     "achievement-" + *user + "-" + *badge,
		UserID: *user,
		Name:   "achievement-unlocked",
		JSON: map[string]any{
			"badge":      *badge,
			"title":      "10,000 steps in a day",
			"unlockedAt": time.Now().UTC(),
		},
	})
	if err != nil {
		log.Fatalf("send failed: %v (reason %s)", err, client.Reason(err))
	}
	if res.Duplicate {
		fmt.Printf("already notified (event %s)\n", res.EventID)
		return
	}
	fmt.Printf("event %s delivered to %d connections of %s\n", res.EventID, res.DeliveredTo, *user)
}
