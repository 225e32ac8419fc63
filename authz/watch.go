package authz

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchRulesFile reloads rules from path whenever the file changes, until ctx
// is done. It watches the directory, not the file, so editors that replace
// the file (write to a temp file, rename) and Kubernetes ConfigMap symlink
// swaps are seen. Events are debounced (debounce <= 0 means 200ms). A bad
// new file keeps the current rules and is logged with the reason; onReload,
// if non-nil, is called after every attempt with its result (for metrics).
//
// It returns once the watch is established (or failed to be); the watch
// runs in a goroutine that exits when ctx is done. The returned channel is
// closed when that goroutine has exited.
func WatchRulesFile(ctx context.Context, rules *Rules, path string, debounce time.Duration, logger *slog.Logger, onReload func(error)) (<-chan struct{}, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if debounce <= 0 {
		debounce = 200 * time.Millisecond
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("rules watch: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("rules watch: %w", err)
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("rules watch: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = w.Close() }()
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				// Any change in the directory may be the file (or the ..data
				// symlink behind it); reloading an unchanged file is harmless.
				if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) {
					continue
				}
				timer.Reset(debounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				logger.Warn("rules watch: watcher error", "path", abs, "err", err)
			case <-timer.C:
				err := rules.LoadFile(abs)
				if err != nil {
					logger.Error("rules reload failed; keeping the current rules", "path", abs, "err", err)
				} else {
					logger.Info("rules reloaded", "path", abs, "rules", len(rules.Names()))
				}
				if onReload != nil {
					onReload(err)
				}
			}
		}
	}()
	return done, nil
}
