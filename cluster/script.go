package cluster

import (
	"context"
	"crypto/sha1" //nolint:gosec // EVALSHA names a script by its SHA-1; not a security use
	"encoding/hex"

	"github.com/redis/rueidis"
)

// script is a Lua script run with EVALSHA, and with EVAL when Redis does not
// have it yet (NOSCRIPT: a new or restarted Redis), as rueidis.Lua runs one, but
// with pinned commands, like every command this package builds (see the
// package comment): rueidis.Lua's own are put back in rueidis' pool.
type script struct{ body, sha string }

func newScript(body string) *script {
	sum := sha1.Sum([]byte(body)) //nolint:gosec // see the import
	return &script{body: body, sha: hex.EncodeToString(sum[:])}
}

// Exec runs the script with keys and args on c.
func (s *script) Exec(ctx context.Context, c rueidis.Client, keys, args []string) rueidis.RedisResult {
	res := c.Do(ctx, c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build().Pin())
	if err, ok := rueidis.IsRedisErr(res.Error()); ok && err.IsNoScript() {
		res = c.Do(ctx, c.B().Eval().Script(s.body).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build().Pin())
	}
	return res
}
