// Command batch-updates publishes a leaderboard refresh for several teams in
// one SendBatch. Each event has its own result: a bad event (here, on
// purpose, a channel name with a space) fails alone.
//
//	PUSHERCM_TOKEN=$(pushercm token --dev --sub svc-leaderboard --scopes events:publish) \
//	  go -C examples run ./batch-updates -teams 1,2,3
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/milequest/pushercm/client"
	"github.com/milequest/pushercm/examples/internal/exampleenv"
)

func main() {
	teams := flag.String("teams", "1,2,3", "team ids (comma separated)")
	withBad := flag.Bool("with-bad-event", true, "add one invalid event to show per-event errors")
	flag.Parse()

	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	c, err := exampleenv.Dial(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	var events []client.Event
	for rank, team := range strings.Split(*teams, ",") {
		events = append(events, client.Event{
			Channels: []string{"private-team-" + team},
			Name:     "leaderboard-updated",
			JSON:     map[string]any{"teamId": team, "rank": rank + 1, "at": time.Now().UTC()},
		})
	}
	if *withBad {
		events = append(events, client.Event{Channels: []string{"not a channel"}, Name: "leaderboard-updated"})
	}

	results, err := c.SendBatch(ctx, events)
	if err != nil {
		log.Fatalf("batch refused: %v (reason %s)", err, client.Reason(err))
	}
	for i, r := range results {
		if r.Err != nil {
			fmt.Printf("event %d failed: %s\n", i, client.Reason(r.Err))
			for _, v := range client.FieldViolations(r.Err) {
				fmt.Printf("  %s: %s\n", v.Field, v.Description)
			}
			continue
		}
		fmt.Printf("event %d (%s): delivered to %d connections\n", i, r.EventID, r.DeliveredTo)
	}
}
