#!/usr/bin/env bash
# Builds the local control plane's binaries from Go modules at the versions pinned in
# operator/mesoskube/cluster/versions.env, into a per-user cache shared by every clone:
#   ${MESOSKUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mesoskube}/bin/<name>-<version>
# A binary already there is not rebuilt. Only the Go module proxy is used (no release downloads).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC1091
source "$here/operator/mesoskube/cluster/versions.env"
cache=${MESOSKUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mesoskube}
bin="$cache/bin"
mkdir -p "$bin"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '[build-binaries] %s\n' "$*" >&2; }
have() { [ -x "$bin/$1" ]; }

# kubelet and kube-proxy run the real nodes; the others the control plane.
KUBE_COMPONENTS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

# k8s.io/kubernetes replaces its staging modules with local paths, so `go install` cannot build it.
# A wrapper module requires it and points each staging module at its published twin v0.N.P.
build_kubernetes() {
  local v=$KUBERNETES_VERSION staged=${KUBERNETES_VERSION/v1./v0.}
  local missing=()
  for c in $KUBE_COMPONENTS; do
    have "$c-$v" || missing+=("$c")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local work="$cache/src/kubernetes-$v"
  mkdir -p "$work"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module mesoskube.local/kubernetes-build"
    echo
    echo "go 1.24"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    grep -E '=> \./staging/src/' "$gomod" | awk -v sv="$staged" '{print "replace " $1 " => " $1 " " sv}'
  } > "$work/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for c in $KUBE_COMPONENTS; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
    echo ")"
  } > "$work/tools.go"
  local major=${v#v}; major=${major%%.*}
  local minor=${v#v*.}; minor=${minor%%.*}
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version/verflag.programName=kubernetes"
  (cd "$work" && go mod tidy -e >/dev/null 2>&1 || true)
  for c in "${missing[@]}"; do
    log "building $c $v (first build takes several minutes)"
    (cd "$work" && go build -mod=mod -tags selinux,notest -trimpath -ldflags "$ldflags" -o "$bin/$c-$v.tmp" "k8s.io/kubernetes/cmd/$c")
    mv "$bin/$c-$v.tmp" "$bin/$c-$v"
  done
}

# etcd's own go.mod replaces its sibling modules locally; the same wrapper trick applies.
build_etcd() {
  local v=$ETCD_VERSION
  have "etcd-$v" && return 0
  local work="$cache/src/etcd-$v"
  mkdir -p "$work"
  printf 'module mesoskube.local/etcd-build\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$v" > "$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$work/tools.go"
  (cd "$work" && go mod tidy -e >/dev/null 2>&1 || true)
  log "building etcd $v"
  (cd "$work" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$bin/etcd-$v.tmp" go.etcd.io/etcd/server/v3)
  mv "$bin/etcd-$v.tmp" "$bin/etcd-$v"
}

# CoreDNS with only the plugins the local cluster's Corefile uses: the full build compiles every
# cloud provider's SDK (about 1,400 packages, ten minutes on 2 cores). CoreDNS documents this way of
# choosing plugins: a main package that imports them and sets the directive order.
build_coredns() {
  local v=$COREDNS_VERSION
  have "coredns-$v" && return 0
  local work="$cache/src/coredns-$v"
  mkdir -p "$work"
  printf 'module mesoskube.local/coredns-build\n\ngo 1.24\n\nrequire github.com/coredns/coredns %s\n' "$v" > "$work/go.mod"
  local plugins="bind errors health kubernetes forward cache loop log"
  {
    echo "package main"
    echo
    echo "import ("
    echo "	\"github.com/coredns/coredns/core/dnsserver\""
    echo "	\"github.com/coredns/coredns/coremain\""
    for p in $plugins; do echo "	_ \"github.com/coredns/coredns/plugin/$p\""; done
    echo ")"
    echo
    printf 'func init() { dnsserver.Directives = []string{'
    for p in $plugins; do printf '"%s", ' "$p"; done
    printf '} }\n\nfunc main() { coremain.Run() }\n'
  } > "$work/main.go"
  (cd "$work" && go mod tidy >/dev/null 2>&1 || true)
  log "building coredns $v (plugins: $plugins)"
  (cd "$work" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$bin/coredns-$v.tmp" .)
  mv "$bin/coredns-$v.tmp" "$bin/coredns-$v"
}

# Modules without local replaces install directly.
go_install() {
  local name=$1 pkg=$2 v=$3 ldflags=${4:-}
  have "$name-$v" && return 0
  log "building $name $v"
  local gobin="$cache/gobin-$name-$v"
  GOBIN="$gobin" go install -trimpath -ldflags "-s -w $ldflags" "$pkg@$v"
  mv "$gobin/$name" "$bin/$name-$v"
  rmdir "$gobin"
}

want=${*:-etcd kubernetes kwok helm actionlint coredns}
for w in $want; do
  case $w in
    etcd) build_etcd ;;
    kubernetes) build_kubernetes ;;
    kwok) go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION" ;;
    helm) go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" ;;
    actionlint) go_install actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION" ;;
    coredns) build_coredns ;;
    *) log "unknown binary $w"; exit 2 ;;
  esac
done
log "binaries in $bin"
