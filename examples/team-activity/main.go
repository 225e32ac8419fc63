// Command team-activity broadcasts a walking activity to a team: the event
// goes to the team's presence channel (members online see it in the live
// feed) and its private channel (the team dashboard), in one SendEvent.
//
//	PUSHERCM_TOKEN=$(pushercm token --dev --sub svc-activity --scopes events:publish) \
//	  go -C examples run ./team-activity -team 42 -user u-7 -steps 3400
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/milequest/pushercm/client"
	"github.com/milequest/pushercm/examples/internal/exampleenv"
)

// Activity is the event payload the web app renders.
type Activity struct {
	UserID   string    `json:"userId"`
	TeamID   string    `json:"teamId"`
	Steps    int       `json:"steps"`
	Distance float64   `json:"distanceKm"`
	LoggedAt time.Time `json:"loggedAt"`
}

func main() {
	team := flag.String("team", "42", "team id")
	user := flag.String("user", "u-7", "the user who logged the activity")
	steps := flag.Int("steps", 3400, "steps walked")
	exclude := flag.String("exclude-socket", "", "socket id of the user's own connection, which already shows the activity")
	flag.Parse()

	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	c, err := exampleenv.Dial(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	res, err := c.SendEvent(ctx, client.Event{
		Channels: []string{"presence-team-" + *team, "private-team-" + *team},
		Name:     "activity-logged",
		JSON: Activity{
			UserID: *user, TeamID: *team, Steps: *steps,
			Distance: float64(*steps) * 0.00075, LoggedAt: time.Now().UTC(),
		},
		UserID:          *user, // the per-user rate limit key
		ExcludeSocketID: *exclude,
	})
	if err != nil {
		log.Printf("send failed: %v (reason %s)", err, client.Reason(err))
		for _, v := range client.FieldViolations(err) {
			log.Printf("  %s: %s", v.Field, v.Description)
		}
		os.Exit(1)
	}
	fmt.Printf("event %s delivered to %d connections (duplicate: %v)\n", res.EventID, res.DeliveredTo, res.Duplicate)
}
