//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

// TestSendEventRequestsDecode: the binary data ghz gets reads back as n
// count-delimited SendEvent requests, each with its own id and the channels
// round-robin.
func TestSendEventRequestsDecode(t *testing.T) {
	seq := 0
	next := func() string { seq++; return "id-" + strconv.Itoa(seq) }
	b, err := sendEventRequests(5, []string{"c0", "c1"}, next, "load x")
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(bytes.NewReader(b))
	for i := range 5 {
		var req pushercmv1.SendEventRequest
		if err := protodelim.UnmarshalFrom(r, &req); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		e := req.GetEvent()
		if e.GetId() != "id-"+strconv.Itoa(i+1) || e.GetChannels()[0] != "c"+strconv.Itoa(i%2) || e.GetData() != "load x" || e.GetName() != "load" {
			t.Fatalf("request %d: %v", i, e)
		}
	}
	var extra pushercmv1.SendEventRequest
	if err := protodelim.UnmarshalFrom(r, &extra); !errors.Is(err, io.EOF) {
		t.Fatalf("after 5 requests: %v, want EOF", err)
	}
}

func TestIDsSufficed(t *testing.T) {
	for _, tc := range []struct {
		made             []int
		warmCalls, calls int64
		ok               bool
	}{
		{nil, 500, 900, true},               // a fixed request: nothing to check
		{[]int{100, 1000}, 100, 1000, true}, // exactly enough
		{[]int{100, 1000}, 101, 10, false},  // the warmup ran out
		{[]int{100, 1000}, 10, 1001, false},
		{[]int{1000}, 0, 1000, true}, // no warmup
		{[]int{1000}, 0, 1001, false},
	} {
		if err := idsSufficed(tc.made, tc.warmCalls, tc.calls); (err == nil) != tc.ok {
			t.Errorf("idsSufficed(%v, %d, %d) = %v, want ok %v", tc.made, tc.warmCalls, tc.calls, err, tc.ok)
		}
	}
}

// TestFanOutBudget: the split of SendEvent's CPU per call into Check, the
// RPC work beyond it and the fan-out uses medians of server + tool per call,
// and the ceiling is what the fan-out alone leaves of the 0.8x allowance.
func TestFanOutBudget(t *testing.T) {
	run := func(calls int64, serverUS, toolUS int) phase {
		return phase{calls: calls, serverCPU: time.Duration(serverUS) * time.Duration(calls) * time.Microsecond,
			toolCPU: time.Duration(toolUS) * time.Duration(calls) * time.Microsecond}
	}
	check := []phase{run(1000, 40, 20), run(2000, 35, 25), run(500, 90, 90)} // medians 60
	send0 := []phase{run(1000, 50, 30), run(1000, 45, 30)}                   // 77.5 (server 47.5, tool 30)
	send := []phase{run(1000, 60, 45)}                                       // 105
	b, ok := fanOutBudget(check, send0, send)
	if !ok {
		t.Fatal("no budget")
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("check", b.check, 60)
	near("send0", b.send0, 77.5)
	near("send", b.send, 105)
	near("fanOut", b.fanOut, 27.5)
	near("fanOutServer", b.fanOutServer, 12.5)
	near("fanOutTool", b.fanOutTool, 15)
	near("allowance", b.allowance(), 15) // 60/0.8 - 60
	near("ceiling", b.ceiling(), 60/87.5)

	if _, ok := fanOutBudget(check, nil, send); ok {
		t.Error("budget without send0 runs")
	}
	if _, ok := fanOutBudget(check, []phase{{calls: 10}}, send); ok {
		t.Error("budget from a send0 run without CPU figures")
	}
}
