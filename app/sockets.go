package app

import (
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/lifecycle"
	"github.com/milequest/pushercm/server"
)

// edgeSockets gives ConnectionService the embedded edge's sockets in the
// server's own terms, so that server does not import edge.
type edgeSockets struct{ *edge.Server }

func (s edgeSockets) Connections(f server.ConnectionFilter) ([]server.ConnectionInfo, string) {
	list, next := s.Server.Connections(edge.ConnectionFilter{UserID: f.UserID, Channel: f.Channel, After: f.After, Limit: f.Limit})
	out := make([]server.ConnectionInfo, len(list))
	for i, ci := range list {
		out[i] = connectionInfo(ci)
	}
	return out, next
}

func (s edgeSockets) Connection(socketID string) (server.ConnectionInfo, error) {
	ci, err := s.Server.Connection(socketID)
	if err != nil {
		return server.ConnectionInfo{}, err
	}
	return connectionInfo(ci), nil
}

func connectionInfo(ci edge.ConnectionInfo) server.ConnectionInfo {
	return server.ConnectionInfo{
		SocketID: ci.SocketID, UserID: ci.UserID, RemoteAddr: ci.RemoteAddr, UserAgent: ci.UserAgent,
		ConnectedAt: ci.ConnectedAt, LastActivity: ci.LastActivity, Channels: ci.Channels,
		MessagesIn: ci.MessagesIn, MessagesOut: ci.MessagesOut,
	}
}

// eventSource is a lifecycle event source: *edge.Server or the pusher
// driver's *webhookin.Receiver.
type eventSource interface {
	Watch(buffer int) *lifecycle.Watcher
	WatchMessages(buffer int) *lifecycle.Watcher
}

// watchFunc adapts src to server.Connection.Watch.
func watchFunc(src eventSource) func(buffer int, messages bool) server.EventWatcher {
	return func(buffer int, messages bool) server.EventWatcher {
		if messages {
			return src.WatchMessages(buffer)
		}
		return src.Watch(buffer)
	}
}
