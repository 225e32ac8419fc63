package app

import (
	"runtime"
	"runtime/debug"
)

// BuildInfo identifies the running binary.
type BuildInfo struct {
	Version, Commit, Date, GoVersion string
}

// Build reports the binary's identity: the -ldflags values of `make build`,
// falling back to the module version `go install` records.
func Build() BuildInfo {
	b := BuildInfo{Version: Version, Commit: Commit, Date: BuildDate, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && b.Commit == "unknown" {
				b.Commit = s.Value
			}
		}
	}
	return b
}
