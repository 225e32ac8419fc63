package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"testing"

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
