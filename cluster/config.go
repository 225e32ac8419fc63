package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Config is the cluster's shared engine: where Redis is and how nodes find each
// other. The zero value means no cluster (one node, nothing shared); Enabled says
// which.
type Config struct {
	// URL is the Redis server: redis://[user:password@]host:port[/db] or
	// rediss:// for TLS. PUSHERCM_REDIS_URL.
	URL string `yaml:"url"`
	// ClusterAddrs, when set, are the seed addresses of a Redis Cluster (URL's
	// credentials and TLS still apply). Channels' keys spread over its
	// masters by slot, and so does pub/sub: sharded pub/sub (SPUBLISH,
	// SSUBSCRIBE), each publication reaching only its channel's master.
	ClusterAddrs []string `yaml:"clusterAddrs"`
	// Prefix starts every key and pub/sub channel, so two apps or two
	// environments on one Redis never see each other. Default "pushercm".
	Prefix string `yaml:"prefix"`
	// NodeID names this node; default the host name plus a random suffix, so a
	// restarted process is a new node.
	NodeID string `yaml:"nodeId"`
	// Heartbeat is how often the node refreshes its registration. Default 2s.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// NodeTTL is how long a node that stopped heartbeating still counts as
	// alive. Default 10s; at least twice Heartbeat.
	NodeTTL time.Duration `yaml:"nodeTtl"`
	// HistorySize is how many of a channel's latest publications Redis keeps so
	// that a node that missed some (a reconnect, a burst it could not take) can
	// catch up. Default 1000; each entry costs its payload in Redis memory.
	HistorySize int `yaml:"historySize"`
	// HistoryTTL is how long a channel's history and sequence outlive its last
	// publication. Default 5m.
	HistoryTTL time.Duration `yaml:"historyTtl"`
	// QueueSize bounds the publications received from Redis and waiting for
	// local delivery. Past it, publications are dropped from the queue and caught
	// up from the history (counted as dropped, and as lost when the history no
	// longer has them). Default 65536.
	QueueSize int `yaml:"queueSize"`
}

// Enabled is true when a Redis is configured.
func (c Config) Enabled() bool { return c.URL != "" || len(c.ClusterAddrs) > 0 }

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = "pushercm"
	}
	if c.NodeID == "" {
		c.NodeID = DefaultNodeID()
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 2 * time.Second
	}
	if c.NodeTTL == 0 {
		c.NodeTTL = 10 * time.Second
	}
	if c.HistorySize == 0 {
		c.HistorySize = 1000
	}
	if c.HistoryTTL == 0 {
		c.HistoryTTL = 5 * time.Minute
	}
	if c.QueueSize == 0 {
		c.QueueSize = 65536
	}
	return c
}

// Validate reports the first setting that cannot work, naming its key.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if _, err := c.clientOption(); err != nil {
		return err
	}
	switch {
	case strings.ContainsAny(c.Prefix, "{}:| \t\r\n"):
		return fmt.Errorf("redis.prefix %q: must not contain braces, colons, bars or white space", c.Prefix)
	case strings.ContainsAny(c.NodeID, "{}:| \t\r\n"):
		return fmt.Errorf("cluster.nodeId %q: must not contain braces, colons, bars or white space", c.NodeID)
	case c.Heartbeat <= 0:
		return errors.New("cluster.heartbeat: must be positive")
	case c.NodeTTL < 2*c.Heartbeat:
		return fmt.Errorf("cluster.nodeTtl %s: must be at least twice cluster.heartbeat (%s)", c.NodeTTL, c.Heartbeat)
	case c.HistorySize < 0:
		return errors.New("cluster.historySize: must not be negative")
	case c.HistoryTTL < time.Second:
		return errors.New("cluster.historyTtl: must be at least 1s")
	case c.QueueSize < 0:
		return errors.New("cluster.queueSize: must not be negative")
	}
	return nil
}

// clientOption turns the URL and cluster addresses into rueidis options.
func (c Config) clientOption() (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	if c.URL != "" {
		var err error
		if opt, err = rueidis.ParseURL(c.URL); err != nil {
			return opt, fmt.Errorf("redis.url: %w", err)
		}
	}
	if len(c.ClusterAddrs) > 0 {
		opt.InitAddress = c.ClusterAddrs
		opt.SelectDB = 0
	}
	opt.ClientName = "pushercm-" + c.NodeID
	return opt, nil
}

// DefaultNodeID is the host name plus a random suffix.
func DefaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	host = strings.Map(func(r rune) rune {
		if strings.ContainsRune("{}:| \t\r\n", r) {
			return '-'
		}
		return r
	}, host)
	var b [3]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// Dial connects to the configured Redis. It fails when Redis does not answer;
// a node that must start anyway retries it with backoff (the edge keeps serving
// its local sockets meanwhile and reports the reason in health).
func Dial(cfg Config) (rueidis.Client, error) {
	cfg = cfg.WithDefaults()
	opt, err := cfg.clientOption()
	if err != nil {
		return nil, err
	}
	// Client-side caching is not used: every read here must see the cluster now.
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return c, nil
}
