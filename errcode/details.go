package errcode

import "time"

// Details an error may offer besides its code. Transports find them in the
// error's chain, so they need not import the package that made the error.
type (
	// Fielded names the request fields an error is about
	// (google.rpc.BadRequest).
	Fielded interface{ FieldViolations() []Violation }
	// Delayed says how long a caller should wait before retrying
	// (google.rpc.RetryInfo); zero means no hint.
	Delayed interface{ RetryDelay() time.Duration }
	// Described adds entries to google.rpc.ErrorInfo.metadata.
	Described interface{ ErrorMetadata() map[string]string }
)

// Violation is one invalid request field, with a path in the request's
// terms ("event.channels[2]") and a description for people.
type Violation struct {
	Field       string
	Description string
}

// Violations collects the violations of every Fielded error in err's tree,
// in the order errors.As would visit them.
func Violations(err error) []Violation {
	var out []Violation
	walk(err, func(e error) {
		if f, ok := e.(Fielded); ok {
			out = append(out, f.FieldViolations()...)
		}
	})
	return out
}

// Metadata merges the metadata of every *Error and Described error in err's
// tree; outer errors win.
func Metadata(err error) map[string]string {
	out := map[string]string{}
	walk(err, func(e error) {
		var md map[string]string
		switch e := e.(type) { //nolint:errorlint // walk visits each link itself
		case *Error:
			md = e.Metadata
		case Described:
			md = e.ErrorMetadata()
		}
		for k, v := range md {
			if _, ok := out[k]; !ok {
				out[k] = v
			}
		}
	})
	return out
}

func walk(err error, visit func(error)) {
	if err == nil {
		return
	}
	visit(err)
	switch u := err.(type) { //nolint:errorlint // this is the walk over the chain
	case interface{ Unwrap() error }:
		walk(u.Unwrap(), visit)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walk(e, visit)
		}
	}
}
