package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/milequest/pushercm/authz/authsvc"
	"github.com/milequest/pushercm/authz/httpauth"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/server"
)

// rulesReloadDebounce gathers the burst of events one save makes (editors
// write, rename and chmod) into one reload.
const rulesReloadDebounce = 250 * time.Millisecond

// authWiring holds the state of channel-rule reloads.
type authWiring struct {
	// reloadMu serialises rule reloads from the file watcher and SIGHUP's
	// Reload, so two reloads never race to store different sets.
	reloadMu sync.Mutex
	lastSum  [sha256.Size]byte // of the config file the live rules came from
}

// wireAuth registers AuthService, the realtime auth endpoints
// (POST /pusher/auth, POST /pusher/user-auth) and, when the rules come from
// a config file, a watcher that reloads them when the file changes.
func (a *App) wireAuth(ctx context.Context) error {
	svc, err := authsvc.New(authsvc.Config{
		Verifier:       a.verifier,
		Authorizer:     a.authorizer,
		TracerProvider: a.tel.Tracer,
		MeterProvider:  a.tel.Meter,
		Logger:         a.log.With("component", "auth"),
		// gRPC calls run inside otelgrpc's server span: one per call.
		AnnotateParentSpan: true,
	})
	if err != nil {
		return err
	}
	h, err := httpauth.New(svc, httpauth.Config{
		AllowedOrigins: a.cfg.HTTP.AllowedOrigins,
		Logger:         a.log.With("component", "auth-http"),
	})
	if err != nil {
		return fmt.Errorf("http.allowedOrigins: %w", err)
	}
	a.authw = &authWiring{}
	pushercmv1.RegisterAuthServiceServer(a.grpc, &server.Auth{Authorizer: svc})
	h.Register(func(pattern string, hh http.Handler) { a.handleRealtimeLimit(pattern, hh, h.MaxBodyBytes()) })

	if a.cfg.File != "" {
		if b, err := os.ReadFile(a.cfg.File); err == nil {
			a.authw.lastSum = sha256.Sum256(b)
		}
		stop, err := a.watchRulesFile(a.cfg.File)
		if err != nil {
			// Reloading on SIGHUP still works; say why the watch does not.
			a.log.Warn("channel rules will reload on SIGHUP only", "path", a.cfg.File, "error", err)
		} else {
			a.closers = append(a.closers, stop)
		}
	}
	return nil
}

// reloadRulesFile re-reads the config file and swaps in its channel rules.
// The file watcher passes force=false and skips a file whose content has
// not changed since the last load (another file in the directory changed,
// or the same content was written again); SIGHUP's Reload passes true. A bad
// file keeps the current rules and is returned. The swap is atomic
// (authz.Rules), so requests in flight finish on the old set and none is
// refused for it.
func (a *App) reloadRulesFile(path string, force bool) error {
	w := a.authw
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	sum := sha256.Sum256(b)
	if !force && sum == w.lastSum {
		return nil
	}
	fresh := config.Default()
	if err := config.Decode(bytes.NewReader(b), &fresh); err != nil {
		return fmt.Errorf("config file %s:\n%w", path, err)
	}
	if err := a.rules.Load(fresh.ChannelRules); err != nil {
		return fmt.Errorf("channelRules: %w", err)
	}
	w.lastSum = sum
	return nil
}

// watchRulesFile reloads the rules when the config file changes. It
// watches the directory, not the file, so editors that save by rename and
// Kubernetes ConfigMap symlink swaps are seen. The returned closer stops the
// watcher and waits for it.
func (a *App) watchRulesFile(path string) (func(context.Context) error, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := fw.Add(filepath.Dir(abs)); err != nil {
		_ = fw.Close()
		return nil, err
	}
	done := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(done)
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		for {
			select {
			case <-quit:
				return
			case ev, ok := <-fw.Events:
				if !ok {
					return
				}
				if ev.Op == fsnotify.Chmod {
					continue
				}
				timer.Reset(rulesReloadDebounce)
			case err, ok := <-fw.Errors:
				if !ok {
					return
				}
				a.log.Warn("channel rules watcher error", "path", abs, "error", err)
			case <-timer.C:
				if err := a.reloadRulesFile(abs, false); err != nil {
					a.log.Error("channel rules reload failed; keeping the current rules", "path", abs, "error", err)
				} else {
					a.log.Info("channel rules reloaded", "path", abs, "rules", a.rules.Names())
				}
			}
		}
	}()
	var once sync.Once
	return func(context.Context) error {
		var err error
		once.Do(func() {
			close(quit)
			err = fw.Close()
			<-done
		})
		return err
	}, nil
}
