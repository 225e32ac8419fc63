#!/usr/bin/env bash
# third_party/nbio is nbio $VERSION's packages that pushercm builds (tests,
# examples and extensions left out), from the Go module proxy, with
# third_party/nbio.patch applied. See third_party/README.md.
#
#   third_party/nbio.sh         rebuild third_party/nbio
#   third_party/nbio.sh check   fail when third_party/nbio is not that (make test)
#   third_party/nbio.sh patch   write third_party/nbio.patch from third_party/nbio
set -euo pipefail
VERSION=v1.6.8
SUM=h1:GlEUFvpX+lmWCtjmZmMWzTXqIzyDDFDVtjpXXbpAm5o=
PKGS="lmux logging mempool nbhttp nbhttp/websocket taskpool timer"
cd "$(dirname "$0")/.."
info=$(go mod download -json "github.com/lesismal/nbio@$VERSION")
src=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
sum=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p')
if [ ! -d "$src" ] || [ "$sum" != "$SUM" ]; then
	echo "nbio.sh: nbio $VERSION: want $SUM, go mod download gave '$sum' in '$src'" >&2
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/nbio
mkdir "$out"
copy() { for f in "$1"/*.go; do case $f in *_test.go) ;; *) cp "$f" "$2/" ;; esac; done; }
cp "$src/LICENSE" "$src/go.mod" "$src/go.sum" "$out/"
copy "$src" "$out"
for p in $PKGS; do mkdir -p "$out/$p"; copy "$src/$p" "$out/$p"; done
chmod -R u+w "$out"
case "${1:-}" in
patch)
	# git diff exits 1 when the trees differ. The header lines name old/x
	# and new/x; the patch names x (applied with -p0 in the copy).
	(cd "$tmp" && cp -r "$OLDPWD/third_party/nbio" new && mv nbio old &&
		git diff --no-index --no-prefix old new | sed -e '/^diff --git /s# \(old\|new\)/# #g' -e 's#^--- old/#--- #; s#^+++ new/#+++ #') > third_party/nbio.patch || true
	;;
check)
	git apply --unsafe-paths --directory="$out" -p0 third_party/nbio.patch
	if ! diff -r "$out" third_party/nbio; then
		echo "third_party/nbio is not nbio $VERSION with third_party/nbio.patch: run third_party/nbio.sh" >&2
		exit 1
	fi
	;;
"")
	git apply --unsafe-paths --directory="$out" -p0 third_party/nbio.patch
	rm -rf third_party/nbio
	cp -r "$out" third_party/nbio
	;;
*)
	echo "usage: $0 [check|patch]" >&2
	exit 2
	;;
esac
