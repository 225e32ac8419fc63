package demo

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"slices"
)

//go:embed static
var static embed.FS

// User is a demo user the page offers.
type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Team is a demo team.
type Team struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Users and Teams are the Mile Quest people the page offers to sign in as.
var (
	Users = []User{
		{ID: "ana", Name: "Ana Walker"}, {ID: "ben", Name: "Ben Strider"},
		{ID: "chloe", Name: "Chloe Hill"}, {ID: "dev", Name: "Dev Rambler"},
	}
	Teams = []Team{{ID: "trailblazers", Name: "Trailblazers"}, {ID: "summiteers", Name: "Summiteers"}}
)

// MintFunc mints a user token (JWT) with sub = userID, the display name in
// the name claim and the given teams.
type MintFunc func(userID, name string, teams []string) (string, error)

// Config configures the demo.
type Config struct {
	// AppKey is the Pusher app key pusher-js connects with.
	AppKey string
	// GRPCAddr gives the gRPC address the page's grpcurl examples name
	// (display only; read per request, as the listener opens after
	// Register).
	GRPCAddr func() string
	// Mint, when set (dev mode only), serves POST /demo/api/token. Nil: the
	// route does not exist.
	Mint MintFunc
}

// Register adds the demo's routes with handle (the realtime listener's
// route registration).
func Register(cfg Config, handle func(pattern string, h http.Handler)) error {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return err
	}
	files := http.StripPrefix("/demo/", http.FileServerFS(sub))
	handle("GET /demo/", noCache(files))
	handle("GET /demo/api/config", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"key": cfg.AppKey, "grpcAddr": cfg.GRPCAddr(), "dev": cfg.Mint != nil,
			"users": Users, "teams": Teams,
		})
	}))
	if cfg.Mint != nil {
		handle("POST /demo/api/token", tokenHandler(cfg.Mint))
	}
	return nil
}

// noCache keeps a browser from running an older page against a newer
// binary.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

type tokenRequest struct {
	User string `json:"user"`
	Team string `json:"team"`
}

func tokenHandler(mint MintFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req tokenRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be JSON {user, team}"})
			return
		}
		i := slices.IndexFunc(Users, func(u User) bool { return u.ID == req.User })
		if i < 0 || !slices.ContainsFunc(Teams, func(t Team) bool { return t.ID == req.Team }) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unknown user or team"})
			return
		}
		tok, err := mint(Users[i].ID, Users[i].Name, []string{req.Team})
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "could not mint a token"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"token": tok, "user": Users[i].ID, "name": Users[i].Name})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}
