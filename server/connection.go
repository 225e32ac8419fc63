package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/milequest/pushercm/delivery"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/health"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/lifecycle"
	"github.com/milequest/pushercm/metrics"
	"github.com/milequest/pushercm/protocol"
	"github.com/milequest/pushercm/ratelimit"
)

// Page sizes of the list calls.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
	// MaxCloseReasonBytes is the most a WebSocket close reason can carry
	// (125 bytes of control frame payload minus the 2-byte code).
	MaxCloseReasonBytes = 123
	// DefaultWatchBuffer is the per-watcher event buffer.
	DefaultWatchBuffer = 1024
	// healthNodesTimeout bounds GetHealthStatus's look at the node registry.
	healthNodesTimeout = time.Second
)

// ChannelState answers every channel and presence read of
// ConnectionService. The delivery drivers implement it (delivery/embedded
// from the edge's live state, delivery/pusher through Pusher's HTTP API),
// and so will a cluster engine. Implementations never show the internal
// #server-to-user- channels (delivery.Hidden).
type ChannelState interface {
	// Channels lists occupied channels whose name starts with prefix, sorted by name.
	Channels(ctx context.Context, prefix string) ([]delivery.ChannelInfo, error)
	// Channel describes one channel; unoccupied is Occupied false, not an error.
	Channel(ctx context.Context, name string) (delivery.ChannelInfo, error)
	// PresenceMembers lists a presence channel's members.
	PresenceMembers(ctx context.Context, channel string) ([]delivery.Member, error)
}

// Sockets steers individual connections. Only a driver that holds the
// sockets has one (the embedded edge, through the app's adapter).
type Sockets interface {
	// Connections lists sockets in socket id order; next is the cursor of
	// the following page, empty on the last one.
	Connections(f ConnectionFilter) (list []ConnectionInfo, next string)
	// Connection describes one socket.
	Connection(socketID string) (ConnectionInfo, error)
	// Disconnect closes a socket with a close code and reason.
	Disconnect(socketID string, code int, reason string) error
	// TerminateUser closes every connection signed in as userID and says how many.
	// In a cluster it reaches every node; an error means it was not sent.
	TerminateUser(ctx context.Context, userID string) (int, error)
	// Subscribe joins a socket to a channel on the server's authority.
	Subscribe(socketID, channel string) error
	// Unsubscribe removes a socket from a channel.
	Unsubscribe(socketID, channel string) error
}

// ConnectionFilter selects connections; empty fields match everything.
type ConnectionFilter struct {
	// UserID matches the signed-in user or a presence user id of the socket.
	UserID string
	// Channel matches sockets subscribed to it.
	Channel string
	// After is a cursor: only socket ids sorting after it are returned.
	After string
	// Limit bounds the page.
	Limit int
}

// ConnectionInfo describes one socket.
type ConnectionInfo struct {
	SocketID string
	// UserID is the signed-in user, empty otherwise.
	UserID       string
	RemoteAddr   string
	UserAgent    string
	ConnectedAt  time.Time
	LastActivity time.Time
	// Channels are the subscribed channels, sorted.
	Channels []string
	// MessagesIn and MessagesOut count frames received and written.
	MessagesIn, MessagesOut uint64
}

// NodeInfo describes one node of a cluster (or the only node).
type NodeInfo struct {
	ID, Version                 string
	GRPCAddr, HTTPAddr, OpsAddr string
	Connections                 int64
	StartedAt, LastHeartbeat    time.Time
}

// RedisStatus is a node's view of the cluster's Redis.
type RedisStatus struct {
	Up bool
	// Err says why Redis is not usable, empty when it is.
	Err string
}

// Cluster is what ConnectionService knows of the other nodes (nil on one
// node). Socket-level calls reach them through Sockets; these are the reads
// that name a node.
type Cluster interface {
	// Self is this node's id.
	Self() string
	// Nodes lists the live nodes, sorted by id.
	Nodes(ctx context.Context) ([]NodeInfo, error)
	// Redis is this node's view of Redis.
	Redis() RedisStatus
	// Remote runs op ("metrics": LocalMetrics, "health": LocalHealth) on
	// the node named and fills resp with its answer. NOT_FOUND for a node
	// that is not alive.
	Remote(ctx context.Context, node, op string, resp proto.Message) error
}

// EventWatcher is a lifecycle event subscription; *lifecycle.Watcher
// implements it.
type EventWatcher interface {
	C() <-chan lifecycle.Event
	Err() error
	Close()
}

// Connection implements pushercm.v1.ConnectionService.
//
// Channel and presence reads all go through State, whatever the driver.
// Socket-level calls go through Sockets and fail with FAILED_PRECONDITION
// without one (the pusher driver: Pusher does not expose individual
// sockets). Lifecycle events come from Watch.
type Connection struct {
	pushercmv1.UnimplementedConnectionServiceServer

	// Sockets steers individual connections; nil on the pusher driver.
	Sockets Sockets
	// State answers channel and presence reads (the delivery driver).
	State ChannelState
	// Watch subscribes to lifecycle events, and to message events too when
	// messages is set (nil: the call fails with FAILED_PRECONDITION).
	Watch func(buffer int, messages bool) EventWatcher
	// WatchBuffer is each watcher's buffer; zero means DefaultWatchBuffer.
	WatchBuffer int
	// Limits are the rate limiters GetRateLimitStatus peeks at.
	Limits *ratelimit.Set
	// Health evaluates health (health.Server.Refresh, so that a call also
	// updates grpc.health.v1).
	Health func(ctx context.Context) health.Report
	// Metrics reads the counters for GetMetrics.
	Metrics func() metrics.Reading
	// DriverName is "embedded" or "pusher".
	DriverName string
	// Started is when the process started (for uptime).
	Started func() time.Time
	// Cluster reaches the other nodes; nil on one node.
	Cluster Cluster
	// Node describes this node for ListNodes without a cluster.
	Node func() NodeInfo
	// Stopping, when closed, ends every WatchConnectionEvents stream with
	// UNAVAILABLE, so that a graceful stop does not wait for streams that
	// never end on their own.
	Stopping <-chan struct{}
}

var errSocketLevel = fmt.Errorf("%w: the pusher driver cannot answer socket-level calls: Pusher does not expose individual connections (use the embedded driver)", interceptors.ErrFailedPrecondition)

func (c *Connection) socketsOrPrecondition() (Sockets, error) {
	if c.Sockets == nil {
		return nil, errSocketLevel
	}
	return c.Sockets, nil
}

var errNoState = fmt.Errorf("%w: no delivery driver to ask", interceptors.ErrFailedPrecondition)

func (c *Connection) state() (ChannelState, error) {
	if c.State == nil {
		return nil, errNoState
	}
	return c.State, nil
}

func pageSize(n int32) int {
	switch {
	case n <= 0:
		return DefaultPageSize
	case n > MaxPageSize:
		return MaxPageSize
	}
	return int(n)
}

// Page tokens are opaque to callers: base64url of a kind prefix and the
// last item's key, so a token of one list cannot be replayed on another.
const (
	tokenConnections = "c:"
	tokenChannels    = "ch:"
)

func encodeToken(kind, key string) string {
	if key == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(kind + key))
}

func decodeToken(kind, tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || !strings.HasPrefix(string(b), kind) || len(b) == len(kind) {
		return "", interceptors.InvalidField("page_token", "is not a token of this list")
	}
	return string(b[len(kind):]), nil
}

func requireSocketID(id string) error {
	if id == "" {
		return interceptors.InvalidField("socket_id", "is required")
	}
	if !protocol.ValidSocketID(id) {
		return interceptors.InvalidField("socket_id", "must look like 123.456")
	}
	return nil
}

func connectionPB(ci ConnectionInfo) *pushercmv1.Connection {
	return &pushercmv1.Connection{
		SocketId:         ci.SocketID,
		UserId:           ci.UserID,
		RemoteAddr:       ci.RemoteAddr,
		UserAgent:        ci.UserAgent,
		ConnectedAt:      timestamppb.New(ci.ConnectedAt),
		LastActivityAt:   timestamppb.New(ci.LastActivity),
		Channels:         ci.Channels,
		MessagesReceived: int64(ci.MessagesIn),
		MessagesSent:     int64(ci.MessagesOut),
	}
}

// ListConnections implements ConnectionService.ListConnections.
func (c *Connection) ListConnections(_ context.Context, req *pushercmv1.ListConnectionsRequest) (*pushercmv1.ListConnectionsResponse, error) {
	e, err := c.socketsOrPrecondition()
	if err != nil {
		return nil, err
	}
	after, err := decodeToken(tokenConnections, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	list, next := e.Connections(ConnectionFilter{
		UserID: req.GetUserId(), Channel: req.GetChannel(), After: after, Limit: pageSize(req.GetPageSize()),
	})
	resp := &pushercmv1.ListConnectionsResponse{
		Connections:   make([]*pushercmv1.Connection, 0, len(list)),
		NextPageToken: encodeToken(tokenConnections, next),
	}
	for _, ci := range list {
		resp.Connections = append(resp.Connections, connectionPB(ci))
	}
	return resp, nil
}

// GetConnection implements ConnectionService.GetConnection.
func (c *Connection) GetConnection(_ context.Context, req *pushercmv1.GetConnectionRequest) (*pushercmv1.GetConnectionResponse, error) {
	e, err := c.socketsOrPrecondition()
	if err != nil {
		return nil, err
	}
	if err := requireSocketID(req.GetSocketId()); err != nil {
		return nil, err
	}
	ci, err := e.Connection(req.GetSocketId())
	if err != nil {
		return nil, err
	}
	return &pushercmv1.GetConnectionResponse{Connection: connectionPB(ci)}, nil
}

// DisconnectConnection implements ConnectionService.DisconnectConnection.
func (c *Connection) DisconnectConnection(_ context.Context, req *pushercmv1.DisconnectConnectionRequest) (*pushercmv1.DisconnectConnectionResponse, error) {
	e, err := c.socketsOrPrecondition()
	if err != nil {
		return nil, err
	}
	if err := requireSocketID(req.GetSocketId()); err != nil {
		return nil, err
	}
	code := int(req.GetCode())
	if code == 0 {
		code = protocol.CodeUnauthorized // 4009: pusher-js does not reconnect
	}
	if code < 4000 || code > 4999 {
		return nil, interceptors.InvalidField("code", "must be a Pusher close code, 4000-4999 (0 means 4009)")
	}
	if len(req.GetReason()) > MaxCloseReasonBytes {
		return nil, interceptors.InvalidField("reason", fmt.Sprintf("must be at most %d bytes", MaxCloseReasonBytes))
	}
	if err := e.Disconnect(req.GetSocketId(), code, req.GetReason()); err != nil {
		return nil, err
	}
	return &pushercmv1.DisconnectConnectionResponse{}, nil
}

// TerminateUserConnections implements ConnectionService.TerminateUserConnections.
func (c *Connection) TerminateUserConnections(ctx context.Context, req *pushercmv1.TerminateUserConnectionsRequest) (*pushercmv1.TerminateUserConnectionsResponse, error) {
	e, err := c.socketsOrPrecondition()
	if err != nil {
		return nil, err
	}
	if req.GetUserId() == "" {
		return nil, interceptors.InvalidField("user_id", "is required")
	}
	n, err := e.TerminateUser(ctx, req.GetUserId())
	if err != nil {
		return nil, err
	}
	return &pushercmv1.TerminateUserConnectionsResponse{ClosedConnections: int32(n)}, nil
}

func requireChannel(field, name string) error {
	if name == "" {
		return interceptors.InvalidField(field, "is required")
	}
	return nil
}

// Subscribe implements ConnectionService.Subscribe.
func (c *Connection) Subscribe(_ context.Context, req *pushercmv1.SubscribeRequest) (*pushercmv1.SubscribeResponse, error) {
	if err := c.socketChannel(req.GetSocketId(), req.GetChannel(), Sockets.Subscribe); err != nil {
		return nil, err
	}
	return &pushercmv1.SubscribeResponse{}, nil
}

// Unsubscribe implements ConnectionService.Unsubscribe.
func (c *Connection) Unsubscribe(_ context.Context, req *pushercmv1.UnsubscribeRequest) (*pushercmv1.UnsubscribeResponse, error) {
	if err := c.socketChannel(req.GetSocketId(), req.GetChannel(), Sockets.Unsubscribe); err != nil {
		return nil, err
	}
	return &pushercmv1.UnsubscribeResponse{}, nil
}

// socketChannel validates a (socket, channel) request and applies op to the
// sockets; the pusher driver has no sockets to steer.
func (c *Connection) socketChannel(socketID, channel string, op func(Sockets, string, string) error) error {
	e, err := c.socketsOrPrecondition()
	if err != nil {
		return err
	}
	if err := requireSocketID(socketID); err != nil {
		return err
	}
	if err := requireChannel("channel", channel); err != nil {
		return err
	}
	return op(e, socketID, channel)
}

func (c *Connection) channels(ctx context.Context, prefix string) ([]*pushercmv1.Channel, error) {
	st, err := c.state()
	if err != nil {
		return nil, err
	}
	list, err := st.Channels(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]*pushercmv1.Channel, len(list))
	for i, ch := range list {
		out[i] = channelPB(ch)
	}
	return out, nil
}

func channelPB(ch delivery.ChannelInfo) *pushercmv1.Channel {
	return &pushercmv1.Channel{Name: ch.Name, Occupied: ch.Occupied, SubscriptionCount: int32(ch.SubscriptionCount), UserCount: int32(ch.UserCount)}
}

// ListChannels implements ConnectionService.ListChannels.
func (c *Connection) ListChannels(ctx context.Context, req *pushercmv1.ListChannelsRequest) (*pushercmv1.ListChannelsResponse, error) {
	after, err := decodeToken(tokenChannels, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	all, err := c.channels(ctx, req.GetPrefix())
	if err != nil {
		return nil, err
	}
	// The list is sorted by name; the page starts after the token's name
	// whether or not that channel still exists.
	i := 0
	if after != "" {
		for i < len(all) && all[i].GetName() <= after {
			i++
		}
	}
	limit := pageSize(req.GetPageSize())
	end := min(i+limit, len(all))
	resp := &pushercmv1.ListChannelsResponse{Channels: all[i:end]}
	if end < len(all) {
		resp.NextPageToken = encodeToken(tokenChannels, all[end-1].GetName())
	}
	return resp, nil
}

// GetChannel implements ConnectionService.GetChannel.
func (c *Connection) GetChannel(ctx context.Context, req *pushercmv1.GetChannelRequest) (*pushercmv1.GetChannelResponse, error) {
	if err := requireChannel("name", req.GetName()); err != nil {
		return nil, err
	}
	st, err := c.state()
	if err != nil {
		return nil, err
	}
	ch, err := st.Channel(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &pushercmv1.GetChannelResponse{Channel: channelPB(ch)}, nil
}

// ListPresenceMembers implements ConnectionService.ListPresenceMembers.
func (c *Connection) ListPresenceMembers(ctx context.Context, req *pushercmv1.ListPresenceMembersRequest) (*pushercmv1.ListPresenceMembersResponse, error) {
	if err := requireChannel("channel", req.GetChannel()); err != nil {
		return nil, err
	}
	st, err := c.state()
	if err != nil {
		return nil, err
	}
	members, err := st.PresenceMembers(ctx, req.GetChannel())
	if err != nil {
		return nil, err
	}
	resp := &pushercmv1.ListPresenceMembersResponse{Members: make([]*pushercmv1.PresenceMember, 0, len(members))}
	for _, m := range members {
		resp.Members = append(resp.Members, &pushercmv1.PresenceMember{UserId: m.UserID, UserInfo: jsonValue(m.UserInfo)})
	}
	resp.Count = int32(len(resp.Members))
	return resp, nil
}

// jsonValue converts raw JSON to a protobuf Value; nil when empty or not JSON.
func jsonValue(raw json.RawMessage) *structpb.Value {
	if len(raw) == 0 {
		return nil
	}
	v := &structpb.Value{}
	if err := protojson.Unmarshal(raw, v); err != nil {
		return nil
	}
	return v
}

// GetRateLimitStatus implements ConnectionService.GetRateLimitStatus: the
// user's state in the user and principal limiters, without consuming.
func (c *Connection) GetRateLimitStatus(ctx context.Context, req *pushercmv1.GetRateLimitStatusRequest) (*pushercmv1.GetRateLimitStatusResponse, error) {
	if req.GetUserId() == "" {
		return nil, interceptors.InvalidField("user_id", "is required")
	}
	resp := &pushercmv1.GetRateLimitStatusResponse{UserId: req.GetUserId()}
	if c.Limits == nil {
		return resp, nil
	}
	for _, name := range []string{ratelimit.LimiterUser, ratelimit.LimiterPrincipal} {
		l := c.Limits.Limiter(name)
		rule := l.Rule(req.GetUserId())
		if rule == nil {
			continue // no limiter of that name, or the key is unlimited
		}
		d, err := l.Peek(ctx, req.GetUserId())
		if err != nil {
			return nil, err
		}
		lim := rule.Limits()
		b := &pushercmv1.RateLimitBucket{
			Limiter:           name,
			Limit:             int32(d.Limit),
			Remaining:         int32(d.Remaining),
			RetryAfter:        durationpb.New(d.RetryAfter),
			MessagesPerSecond: lim.MessagesPerSecond,
			MessagesPerMinute: int32(lim.MessagesPerMinute),
		}
		if !d.ResetTime.IsZero() {
			b.ResetTime = timestamppb.New(d.ResetTime)
		}
		resp.Buckets = append(resp.Buckets, b)
	}
	return resp, nil
}

// remoteNode says whether id names another node than this one (and there is
// a cluster to reach it through).
func (c *Connection) remoteNode(id string) (bool, error) {
	if id == "" {
		return false, nil
	}
	if c.Cluster == nil {
		if c.Node != nil && c.Node().ID == id {
			return false, nil
		}
		return false, fmt.Errorf("%w: no node %q: this node runs alone (no Redis)", interceptors.ErrNotFound, id)
	}
	return id != c.Cluster.Self(), nil
}

// GetHealthStatus implements ConnectionService.GetHealthStatus: the verdict
// of the node named (default this one), with Redis and the nodes it sees.
func (c *Connection) GetHealthStatus(ctx context.Context, req *pushercmv1.GetHealthStatusRequest) (*pushercmv1.GetHealthStatusResponse, error) {
	remote, err := c.remoteNode(req.GetNodeId())
	if err != nil {
		return nil, err
	}
	if remote {
		resp := &pushercmv1.GetHealthStatusResponse{}
		if err := c.Cluster.Remote(ctx, req.GetNodeId(), "health", resp); err != nil {
			return nil, err
		}
		return resp, nil
	}
	return c.LocalHealth(ctx), nil
}

// LocalHealth is this node's GetHealthStatus answer.
func (c *Connection) LocalHealth(ctx context.Context) *pushercmv1.GetHealthStatusResponse {
	var rep health.Report
	if c.Health != nil {
		rep = c.Health(ctx)
	}
	resp := &pushercmv1.GetHealthStatusResponse{
		Status:  healthStatusPB(rep.Status),
		Reasons: rep.Reasons,
		Driver:  c.DriverName,
	}
	checked := rep.CheckedAt
	if checked.IsZero() {
		checked = time.Now()
	}
	resp.CheckedAt = timestamppb.New(checked)
	if c.Started != nil {
		if s := c.Started(); !s.IsZero() {
			resp.Uptime = durationpb.New(checked.Sub(s))
		}
	}
	if f := rep.Figures; f != nil {
		resp.Connections = &pushercmv1.ConnectionFigures{
			Active: f.ConnectionsActive, Total: f.ConnectionsTotal, Max: f.ConnectionsMax,
			Utilization: f.Utilization, Refused: f.ConnectionsRefused,
		}
		resp.Performance = &pushercmv1.PerformanceFigures{
			MessagesPerSecond: f.MessagesPerSecond,
			AverageLatency:    durationpb.New(f.AvgLatency),
			P99Latency:        durationpb.New(f.P99Latency),
		}
		resp.Errors = &pushercmv1.ErrorFigures{ErrorRate: f.ErrorRate, ErrorsTotal: f.ErrorsTotal, ByReason: f.ErrorsByReason}
		resp.BreakerState = f.BreakerState
		resp.WebhookBacklog = f.WebhookBacklog
		if f.Driver != "" {
			resp.Driver = f.Driver
		}
	}
	if c.Cluster != nil {
		resp.NodeId = c.Cluster.Self()
		rs := c.Cluster.Redis()
		resp.Redis = &pushercmv1.RedisStatus{Configured: true, Up: rs.Up, Error: rs.Err}
		// Nodes seen: none while Redis is down, which the redis field says.
		// Bounded: a health call must answer while Redis does not.
		nctx, cancel := context.WithTimeout(ctx, healthNodesTimeout)
		nodes, _ := c.Cluster.Nodes(nctx)
		cancel()
		for _, n := range nodes {
			resp.Nodes = append(resp.Nodes, nodePB(n))
		}
	} else if c.Node != nil {
		resp.NodeId = c.Node().ID
		resp.Nodes = []*pushercmv1.Node{nodePB(c.Node())}
	}
	return resp
}

func nodePB(n NodeInfo) *pushercmv1.Node {
	pb := &pushercmv1.Node{
		Id: n.ID, Version: n.Version, GrpcAddr: n.GRPCAddr, HttpAddr: n.HTTPAddr, OpsAddr: n.OpsAddr,
		Connections: n.Connections,
	}
	if !n.StartedAt.IsZero() {
		pb.StartedAt = timestamppb.New(n.StartedAt)
	}
	if !n.LastHeartbeat.IsZero() {
		pb.LastHeartbeatAt = timestamppb.New(n.LastHeartbeat)
	}
	return pb
}

// ListNodes implements ConnectionService.ListNodes.
func (c *Connection) ListNodes(ctx context.Context, _ *pushercmv1.ListNodesRequest) (*pushercmv1.ListNodesResponse, error) {
	resp := &pushercmv1.ListNodesResponse{}
	if c.Cluster == nil {
		if c.Node != nil {
			n := c.Node()
			resp.Self = n.ID
			resp.Nodes = []*pushercmv1.Node{nodePB(n)}
		}
		return resp, nil
	}
	resp.Self = c.Cluster.Self()
	nodes, err := c.Cluster.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		resp.Nodes = append(resp.Nodes, nodePB(n))
	}
	return resp, nil
}

func healthStatusPB(s health.Status) pushercmv1.HealthStatus {
	switch s {
	case health.Healthy:
		return pushercmv1.HealthStatus_HEALTH_STATUS_HEALTHY
	case health.Degraded:
		return pushercmv1.HealthStatus_HEALTH_STATUS_DEGRADED
	case health.Unhealthy:
		return pushercmv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
	}
	return pushercmv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED
}

// GetMetrics implements ConnectionService.GetMetrics: one node's counters,
// or (no node_id) the sum over the live nodes.
func (c *Connection) GetMetrics(ctx context.Context, req *pushercmv1.GetMetricsRequest) (*pushercmv1.GetMetricsResponse, error) {
	remote, err := c.remoteNode(req.GetNodeId())
	if err != nil {
		return nil, err
	}
	switch {
	case remote:
		resp := &pushercmv1.GetMetricsResponse{}
		if err := c.Cluster.Remote(ctx, req.GetNodeId(), "metrics", resp); err != nil {
			return nil, err
		}
		return resp, nil
	case req.GetNodeId() != "" || c.Cluster == nil:
		return c.LocalMetrics(ctx), nil
	}
	return c.clusterMetrics(ctx)
}

// clusterMetrics sums every live node's counters. Occupied channels and
// presence members are not sums (a channel with subscribers on two nodes is
// one channel): they come from the cluster's shared state.
func (c *Connection) clusterMetrics(ctx context.Context) (*pushercmv1.GetMetricsResponse, error) {
	nodes, err := c.Cluster.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	sum := c.LocalMetrics(ctx)
	sum.NodeId = ""
	self := c.Cluster.Self()
	parts := make([]*pushercmv1.GetMetricsResponse, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		if n.ID == self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[i] = &pushercmv1.GetMetricsResponse{}
			errs[i] = c.Cluster.Remote(ctx, n.ID, "metrics", parts[i])
		}()
	}
	wg.Wait()
	for i, p := range parts {
		if p == nil {
			continue
		}
		if errs[i] != nil {
			return nil, errs[i]
		}
		sum.Nodes++
		sum.ActiveConnections += p.GetActiveConnections()
		sum.TotalConnections += p.GetTotalConnections()
		for k, v := range p.GetRefusedConnections() {
			sum.RefusedConnections[k] += v
		}
		sum.Subscriptions += p.GetSubscriptions()
		sum.MessagesPublished += p.GetMessagesPublished()
		sum.MessagesDelivered += p.GetMessagesDelivered()
		sum.ClientEvents += p.GetClientEvents()
		sum.SlowConsumersClosed += p.GetSlowConsumersClosed()
		sum.WebhooksSent += p.GetWebhooksSent()
		sum.WebhooksFailed += p.GetWebhooksFailed()
		sum.WebhooksDropped += p.GetWebhooksDropped()
		sum.RateLimited += p.GetRateLimited()
	}
	if st, err := c.state(); err == nil {
		if list, err := st.Channels(ctx, ""); err == nil {
			sum.OccupiedChannels, sum.PresenceMembers = int64(len(list)), 0
			for _, ch := range list {
				sum.PresenceMembers += int64(ch.UserCount)
			}
		}
	}
	return sum, nil
}

// LocalMetrics is this node's GetMetrics answer.
func (c *Connection) LocalMetrics(context.Context) *pushercmv1.GetMetricsResponse {
	var r metrics.Reading
	if c.Metrics != nil {
		r = c.Metrics()
	}
	resp := &pushercmv1.GetMetricsResponse{
		ActiveConnections:   r.ConnectionsActive,
		TotalConnections:    int64(r.ConnectionsTotal),
		RefusedConnections:  make(map[string]int64, len(r.ConnectionsRefused)),
		Subscriptions:       r.Subscriptions,
		OccupiedChannels:    r.OccupiedChannels,
		PresenceMembers:     r.PresenceMembers,
		MessagesPublished:   int64(r.Published),
		MessagesDelivered:   int64(r.Delivered),
		ClientEvents:        int64(r.ClientEvents),
		SlowConsumersClosed: int64(r.SlowConsumersClosed),
		WebhooksSent:        int64(r.WebhooksSent),
		WebhooksFailed:      int64(r.WebhooksFailed),
		WebhooksDropped:     int64(r.WebhooksDropped),
		TakenAt:             timestamppb.Now(),
	}
	for k, v := range r.ConnectionsRefused {
		resp.RefusedConnections[k] = int64(v)
	}
	for _, v := range r.RateLimited {
		resp.RateLimited += int64(v)
	}
	resp.Nodes = 1
	switch {
	case c.Cluster != nil:
		resp.NodeId = c.Cluster.Self()
	case c.Node != nil:
		resp.NodeId = c.Node().ID
	}
	return resp
}

// WatchConnectionEvents implements ConnectionService.WatchConnectionEvents.
// The stream's headers are sent once the watcher is registered, so a
// client that waits for them (stream.Header()) sees every later event.
// When the client cannot keep up, the watcher's buffer fills and the stream
// ends with lifecycle.ErrLagged (RESOURCE_EXHAUSTED,
// WATCHER_LAGGED); other watchers are unaffected.
func (c *Connection) WatchConnectionEvents(req *pushercmv1.WatchConnectionEventsRequest, stream pushercmv1.ConnectionService_WatchConnectionEventsServer) error {
	f, err := newEventFilter(req)
	if err != nil {
		return err
	}
	buffer := c.WatchBuffer
	if buffer <= 0 {
		buffer = DefaultWatchBuffer
	}
	if c.Watch == nil {
		return fmt.Errorf("%w: no lifecycle event source on this driver (configure Pusher webhooks to POST /pusher/webhooks)", interceptors.ErrFailedPrecondition)
	}
	w := c.Watch(buffer, f.messages)
	defer w.Close()
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			// The caller went away; there is nobody to tell.
			return nil
		case <-c.Stopping:
			return interceptors.ErrShuttingDown
		case e, ok := <-w.C():
			if !ok {
				if err := w.Err(); err != nil {
					return err
				}
				return interceptors.ErrShuttingDown
			}
			if !f.match(e) {
				continue
			}
			if err := stream.Send(&pushercmv1.WatchConnectionEventsResponse{Event: c.eventPB(e)}); err != nil {
				return err
			}
		}
	}
}

type eventFilter struct {
	types                    map[lifecycle.EventType]bool
	messages                 bool // some of types are message events
	prefix, userID, socketID string
}

func newEventFilter(req *pushercmv1.WatchConnectionEventsRequest) (eventFilter, error) {
	f := eventFilter{prefix: req.GetChannelPrefix(), userID: req.GetUserId(), socketID: req.GetSocketId()}
	if len(req.GetTypes()) > 0 {
		f.types = make(map[lifecycle.EventType]bool, len(req.GetTypes()))
		for _, t := range req.GetTypes() {
			et, ok := eventTypeFromPB[t]
			if !ok {
				return f, interceptors.InvalidField("types", fmt.Sprintf("unknown event type %v", t))
			}
			f.types[et] = true
			f.messages = f.messages || et.IsMessage()
		}
	}
	return f, nil
}

func (f eventFilter) match(e lifecycle.Event) bool {
	if f.types != nil && !f.types[e.Type] || f.types == nil && e.Type.IsMessage() {
		return false
	}
	if f.prefix != "" && (e.Channel == "" || !strings.HasPrefix(e.Channel, f.prefix)) {
		return false
	}
	if f.userID != "" && e.UserID != f.userID {
		return false
	}
	if f.socketID != "" && e.SocketID != f.socketID {
		return false
	}
	return true
}

var eventTypeToPB = map[lifecycle.EventType]pushercmv1.ConnectionEventType{
	lifecycle.Connected:       pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_CONNECTED,
	lifecycle.Disconnected:    pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_DISCONNECTED,
	lifecycle.Subscribed:      pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_SUBSCRIBED,
	lifecycle.Unsubscribed:    pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_UNSUBSCRIBED,
	lifecycle.MemberAdded:     pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_MEMBER_ADDED,
	lifecycle.MemberRemoved:   pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_MEMBER_REMOVED,
	lifecycle.ChannelOccupied: pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_CHANNEL_OCCUPIED,
	lifecycle.ChannelVacated:  pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_CHANNEL_VACATED,
	lifecycle.Published:       pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_PUBLISHED,
	lifecycle.ClientEvent:     pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_CLIENT_EVENT,
	lifecycle.Webhook:         pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_WEBHOOK,
}

var eventTypeFromPB = func() map[pushercmv1.ConnectionEventType]lifecycle.EventType {
	m := make(map[pushercmv1.ConnectionEventType]lifecycle.EventType, len(eventTypeToPB))
	for k, v := range eventTypeToPB {
		m[v] = k
	}
	return m
}()

func (c *Connection) eventPB(e lifecycle.Event) *pushercmv1.ConnectionEvent {
	ev := &pushercmv1.ConnectionEvent{
		Type:        eventTypeToPB[e.Type],
		Time:        timestamppb.New(e.Time),
		SocketId:    e.SocketID,
		UserId:      e.UserID,
		Channel:     e.Channel,
		Code:        int32(e.Code),
		Reason:      e.Reason,
		EventName:   e.Name,
		DeliveredTo: int32(e.Delivered),
		NodeId:      e.Node,
	}
	if e.Type == lifecycle.MemberAdded {
		// The event carries user_info as the member joined; the member may
		// have left by the time the watcher sends it.
		ev.UserInfo = jsonValue(e.UserInfo).GetStructValue()
	}
	return ev
}
