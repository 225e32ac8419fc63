package httpapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// slowTrigger is what the handler did before fastTrigger: encoding/json,
// then decodeData on the data.
func slowTrigger(body []byte) (tb triggerBody, data string, err error) {
	if err := json.Unmarshal(body, &tb); err != nil {
		return tb, "", err
	}
	if tb.Data != nil {
		d, aerr := decodeData(tb.Data)
		if aerr != nil {
			return tb, "", aerr
		}
		data = d
	}
	return tb, data, nil
}

// sameTrigger fails t unless fast (from the fast path) says what slow and
// its data say.
func sameTrigger(t *testing.T, body []byte, fast, slow triggerBody, slowData string) {
	t.Helper()
	if fast.Name != slow.Name || fast.Channel != slow.Channel || fast.SocketID != slow.SocketID ||
		fast.Info != slow.Info || !reflect.DeepEqual(fast.Channels, slow.Channels) {
		t.Fatalf("%q:\nfast %+v\nslow %+v", body, fast, slow)
	}
	switch {
	case fast.dataSet && (slow.Data == nil || fast.dataString != slowData):
		t.Fatalf("%q: fast data %q, slow %q (raw %q)", body, fast.dataString, slowData, slow.Data)
	case !fast.dataSet && slow.Data != nil:
		t.Fatalf("%q: fast has no data, slow %q", body, slow.Data)
	}
	if fast.Data != nil {
		t.Fatalf("%q: fast path filled Data", body)
	}
}

var triggerSeeds = []string{
	`{"name":"ev","channels":["a","b"],"data":"{\"x\":1}"}`,
	`{"name":"ev","channel":"a","data":"plain","socket_id":"1.2","info":"user_count"}`,
	` { "data" : "\u00e9\ud83d\ude00\n\t\\\/\"" , "name" : "n\u0041" , "channels" : [ "private-x" ] } `,
	`{"name":"ev","channels":["a"]}`,
	`{"name":"ev","channels":["a"],"data":{"x":1}}`,
	`{"name":"ev","channels":["a"],"data":null}`,
	`{"Name":"ev","channels":["a"],"data":"x"}`,
	`{"name":"ev","name":"ev2","channels":["a"],"data":"x"}`,
	`{"name":"ev","channels":[],"channel":"a","data":"x"}`,
	`{"name":"ev","channels":["a"],"data":"\ud800"}`,
	`{"name":"ev","channels":["a"],"data":"\udc00\ud800"}`,
	`{"name":"ev","channels":["a"],"data":"\ud800\u0041"}`,
	"{\"name\":\"ev\",\"channels\":[\"a\"],\"data\":\"\xff\"}",
	"{\"name\":\"ev\",\"channels\":[\"a\"],\"data\":\"a\x01\"}",
	`{"name":"ev","channels":["a"],"data":"x"} x`,
	`{"name":"ev","channels":["a"],"data":"x",}`,
	`{"name":5,"channels":["a"],"data":"x"}`,
	`{"name":"ev","other":1,"channels":["a"],"data":"x"}`,
	`null`, `[]`, `{}`, ``, `"x"`,
}

// TestFastTrigger: on the seeds, the fast path either declines or agrees
// with encoding/json; and it takes the common shapes.
func TestFastTrigger(t *testing.T) {
	for _, s := range triggerSeeds {
		checkFastTrigger(t, []byte(s))
	}
	for _, s := range triggerSeeds[:4] {
		if _, ok := fastTrigger([]byte(s)); !ok {
			t.Errorf("%s: not taken by the fast path", s)
		}
	}
	for _, s := range triggerSeeds[4:] {
		if _, ok := fastTrigger([]byte(s)); ok {
			t.Errorf("%s: taken by the fast path, want encoding/json", s)
		}
	}
}

func checkFastTrigger(t *testing.T, body []byte) {
	t.Helper()
	fast, ok := fastTrigger(body)
	if !ok {
		return
	}
	slow, data, err := slowTrigger(body)
	if err != nil {
		t.Fatalf("%q: fast path took what encoding/json refuses: %v", body, err)
	}
	sameTrigger(t, body, fast, slow, data)
}

// FuzzFastTrigger: whatever fastTrigger takes, encoding/json (with
// decodeData) decodes to the same event.
//
//	go test -fuzz=FuzzFastTrigger ./edge/httpapi
func FuzzFastTrigger(f *testing.F) {
	for _, s := range triggerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkFastTrigger)
}

// FuzzFastBatch: the same for batch_events bodies, with the batch limit.
//
//	go test -fuzz=FuzzFastBatch ./edge/httpapi
func FuzzFastBatch(f *testing.F) {
	f.Add([]byte(`{"batch":[`+triggerSeeds[0]+`,`+triggerSeeds[1]+`]}`), 2)
	f.Add([]byte(`{"batch":[`+triggerSeeds[0]+`,`+triggerSeeds[1]+`]}`), 1)
	f.Add([]byte(`{"batch":[]}`), 10)
	f.Add([]byte(`{"batch":[null]}`), 10)
	f.Add([]byte(`{"batch":[`+triggerSeeds[2]+`],"x":1}`), 10)
	f.Fuzz(func(t *testing.T, body []byte, limit int) {
		if limit < 1 || limit > 100 {
			return
		}
		fast, ok := fastBatch(body, limit)
		if !ok {
			return
		}
		var slow struct {
			Batch []json.RawMessage `json:"batch"`
		}
		if err := json.Unmarshal(body, &slow); err != nil {
			t.Fatalf("%q: fast path took what encoding/json refuses: %v", body, err)
		}
		if len(fast) != len(slow.Batch) || len(fast) > limit || len(fast) == 0 {
			t.Fatalf("%q: %d events fast, %d slow (limit %d)", body, len(fast), len(slow.Batch), limit)
		}
		for i := range fast {
			stb, data, err := slowTrigger(slow.Batch[i])
			if err != nil {
				t.Fatalf("%q: event %d: %v", body, i, err)
			}
			sameTrigger(t, body, fast[i], stb, data)
		}
	})
}

// TestFastBatchLimit: a batch over the limit is left to encoding/json, so
// that the handler words the error as before.
func TestFastBatchLimit(t *testing.T) {
	body := []byte(`{"batch":[` + strings.Repeat(triggerSeeds[0]+",", 2) + triggerSeeds[0] + `]}`)
	if got, ok := fastBatch(body, 3); !ok || len(got) != 3 {
		t.Fatalf("3 events, limit 3: %d, %v", len(got), ok)
	}
	if _, ok := fastBatch(body, 2); ok {
		t.Fatal("3 events, limit 2: taken by the fast path")
	}
}
