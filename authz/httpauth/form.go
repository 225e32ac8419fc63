package httpauth

import (
	"net/url"

	"github.com/milequest/pushercm/authz"
)

// authForm is the part of a pusher-js auth request the server reads. Other
// params (pusher-js `params` / `paramsProvider`) are accepted and ignored.
type authForm struct {
	SocketID string
	Channel  string
	UserInfo []byte // raw JSON, nil when absent
}

// maxFormFields bounds the number of key=value pairs; pusher-js sends two
// plus whatever params the page adds.
const maxFormFields = 64

// parseForm reads an application/x-www-form-urlencoded body. socket_id is
// required, channel_name too when needChannel; each of socket_id,
// channel_name and user_info may appear at most once, because two values
// are ambiguous (a proxy and this server could read different ones).
// Errors are *authz.ArgumentError naming the field ("form" for the body
// itself).
func parseForm(body []byte, needChannel bool) (authForm, error) {
	fields := 1
	for _, c := range body {
		if c == '&' {
			fields++
		}
	}
	if fields > maxFormFields {
		return authForm{}, &authz.ArgumentError{Field: "form", Reason: "too many fields"}
	}
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return authForm{}, &authz.ArgumentError{Field: "form", Reason: "not valid application/x-www-form-urlencoded"}
	}
	var f authForm
	var ok bool
	if f.SocketID, ok, err = single(vals, "socket_id"); err != nil {
		return authForm{}, err
	} else if !ok || f.SocketID == "" {
		return authForm{}, &authz.ArgumentError{Field: "socket_id", Reason: "required"}
	}
	if f.Channel, ok, err = single(vals, "channel_name"); err != nil {
		return authForm{}, err
	} else if needChannel && (!ok || f.Channel == "") {
		return authForm{}, &authz.ArgumentError{Field: "channel_name", Reason: "required"}
	}
	info, ok, err := single(vals, "user_info")
	if err != nil {
		return authForm{}, err
	}
	if ok && info != "" {
		f.UserInfo = []byte(info)
	}
	return f, nil
}

func single(vals url.Values, key string) (string, bool, error) {
	v, ok := vals[key]
	switch {
	case !ok:
		return "", false, nil
	case len(v) > 1:
		return "", false, &authz.ArgumentError{Field: key, Reason: "given more than once"}
	}
	return v[0], true, nil
}
