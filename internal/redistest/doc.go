// Package redistest gives tests a real Redis server, never a mock.
//
// Addr answers with 127.0.0.1:6379 when a Redis answers PING there (these
// machines start one), and otherwise with a redis-server that it starts on a
// free loopback port for the test binary, installing Debian's redis-server
// package first when the command is missing. Start gives a test a server of
// its own that it may stop and start again (for fault tests), on a port no
// other test uses; RefuseWrites puts such a server in MISCONF (a failed
// snapshot: writes and PING refused) and AllowWrites ends it. StartCluster
// starts a three-master Redis Cluster, StartClusterWithReplicas one with a
// replica per master whose nodes a test may kill (failover tests;
// SlotOwner says which master owns a slot). CommandCalls reads a server's INFO
// commandstats, for tests that count what reached Redis.
//
// Guarantees: every server this package starts listens on 127.0.0.1 only and
// keeps nothing on disk (RefuseWrites only makes its snapshot fail). On Linux
// it dies with the test process (Pdeathsig), so no run leaves a Redis behind;
// elsewhere, which has no parent-death signal, a server of Start stops at its
// test's cleanup and the shared one is left running. Prefix gives each test its
// own key prefix and deletes every key under it when the test ends, so tests
// that share one Redis never see each other's keys. Nothing outside _test.go
// files may import this package.
package redistest
